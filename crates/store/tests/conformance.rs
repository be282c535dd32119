//! The conformance suite against every backend in this crate.

use twill_store::conformance::Target;
use twill_store::{MemoryStore, Revision, SqliteOptions, SqliteStore};

mod sqlite {
    use super::*;

    /// A fresh SQLite file per case, removed when the case ends.
    struct Sqlite {
        dir: tempfile::TempDir,
    }

    impl Sqlite {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temporary directory"),
            }
        }
    }

    impl Target for Sqlite {
        type Store = SqliteStore;

        fn new_store(&self) -> SqliteStore {
            let options = SqliteOptions {
                bookmark_interval: std::time::Duration::from_millis(200),
                ..SqliteOptions::default()
            };
            SqliteStore::open_with(self.dir.path().join("twill.db"), options).expect("open store")
        }

        fn compact(&self, store: &SqliteStore, through: Revision) {
            store.compact(through).expect("compact");
        }
    }

    twill_store::conformance_tests!(Sqlite::new());
}

mod memory {
    use super::*;

    struct Memory;

    impl Target for Memory {
        type Store = MemoryStore;

        fn new_store(&self) -> MemoryStore {
            MemoryStore::new(std::time::Duration::from_millis(200))
        }

        fn compact(&self, store: &MemoryStore, through: Revision) {
            store.compact(through);
        }
    }

    twill_store::conformance_tests!(Memory);
}
