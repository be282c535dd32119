//! Where the datastore is, shared by every command that reads or writes it.

use std::path::PathBuf;

use twill_store::SqliteStore;

use crate::error::CliError;

/// The datastore the command works on.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The embedded datastore file.
    #[arg(
        long,
        env = "TWILL_DATASTORE",
        default_value = "/var/lib/twill/datastore.db"
    )]
    pub datastore: PathBuf,
}

impl StoreArgs {
    /// Opens an existing datastore; a missing file is an error (a typo in
    /// the path must not look like an empty cluster).
    pub fn open(&self) -> Result<SqliteStore, CliError> {
        if !self.datastore.exists() {
            return Err(CliError::NoDatastore {
                path: self.datastore.clone(),
            });
        }
        Ok(SqliteStore::open(&self.datastore)?)
    }

    /// Opens the datastore, creating the file when it does not exist (for
    /// the commands that write resources into a new cluster).
    pub fn open_or_create(&self) -> Result<SqliteStore, CliError> {
        Ok(SqliteStore::open(&self.datastore)?)
    }
}
