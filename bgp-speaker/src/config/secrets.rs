//! Where BGP passwords come from: `password.secretKeyRef` names a Secret and
//! a key; Twill reads `<dir>/<name>/<key>` (a Secret mounted as a volume).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A source of secret values.
pub trait Secrets: Send + Sync {
    /// The value of `key` in the secret `name`, if both exist.
    fn get(&self, name: &str, key: &str) -> Option<String>;
}

/// Secrets read from files: `<dir>/<name>/<key>`, trailing newlines dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSecrets {
    dir: Option<PathBuf>,
}

impl DirSecrets {
    /// Secrets under `dir`; with `None`, no secret exists.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }
}

/// Whether `part` is safe as one path component (no traversal).
fn plain_component(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains('/')
}

impl Secrets for DirSecrets {
    fn get(&self, name: &str, key: &str) -> Option<String> {
        if !plain_component(name) || !plain_component(key) {
            return None;
        }
        let path = self.dir.as_ref()?.join(name).join(key);
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// Secrets held in memory, keyed by `(name, key)`; for tests and embedding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapSecrets(pub BTreeMap<(String, String), String>);

impl MapSecrets {
    /// Adds one value.
    pub fn with(mut self, name: &str, key: &str, value: &str) -> Self {
        self.0
            .insert((name.to_string(), key.to_string()), value.to_string());
        self
    }
}

impl Secrets for MapSecrets {
    fn get(&self, name: &str, key: &str) -> Option<String> {
        self.0.get(&(name.to_string(), key.to_string())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_secret_is_read_from_name_slash_key_without_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("bgp-secrets")).expect("mkdir");
        std::fs::write(dir.path().join("bgp-secrets/rr-password"), "s3cret\n").expect("write");
        let secrets = DirSecrets::new(Some(dir.path().to_path_buf()));
        assert_eq!(
            secrets.get("bgp-secrets", "rr-password").as_deref(),
            Some("s3cret")
        );
        assert_eq!(secrets.get("bgp-secrets", "missing"), None);
        assert_eq!(secrets.get("..", "etc"), None);
        assert_eq!(
            DirSecrets::new(None).get("bgp-secrets", "rr-password"),
            None
        );
    }
}
