//! Endpoint status files: the "programmed" half of the fail-closed contract
//! with the CNI plugin (`twill_api::status`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use twill_api::status::{EndpointStatus, endpoint_status_file_name};

use super::DaemonError;

/// A local WorkloadEndpoint as the status writer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalWep {
    /// The datastore revision last seen.
    pub revision: u64,
    /// `spec.containerID`, if set.
    pub container_id: Option<String>,
    /// `spec.interfaceName`.
    pub interface: String,
}

/// The status directory and what this process wrote into it.
#[derive(Debug)]
pub(crate) struct StatusDir {
    dir: PathBuf,
    /// `(namespace, name)` → revision written.
    written: BTreeMap<(String, String), u64>,
    /// Whether files left by an earlier run have been swept.
    swept: bool,
}

impl StatusDir {
    /// Creates the directory if needed.
    pub(crate) fn open(dir: &Path) -> Result<Self, DaemonError> {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::StatusDir {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            written: BTreeMap::new(),
            swept: false,
        })
    }

    /// Brings the files in line with `programmed` (the local endpoints whose
    /// chains the kernel now has): writes new revisions, removes the files
    /// of endpoints that are gone. The first call also removes files an
    /// earlier run left for endpoints that no longer exist.
    pub(crate) fn sync(
        &mut self,
        programmed: &BTreeMap<(String, String), &LocalWep>,
    ) -> Result<(), DaemonError> {
        if !self.swept {
            self.sweep_foreign(programmed)?;
            self.swept = true;
        }
        let gone: Vec<(String, String)> = self
            .written
            .keys()
            .filter(|k| !programmed.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key.0, &key.1)?;
            self.written.remove(&key);
        }
        for ((namespace, name), wep) in programmed {
            let key = (namespace.clone(), name.clone());
            if self.written.get(&key) == Some(&wep.revision) {
                continue;
            }
            self.write(&EndpointStatus {
                namespace: namespace.clone(),
                name: name.clone(),
                container_id: wep.container_id.clone(),
                revision: wep.revision,
            })?;
            self.written.insert(key, wep.revision);
        }
        Ok(())
    }

    fn sweep_foreign(
        &self,
        programmed: &BTreeMap<(String, String), &LocalWep>,
    ) -> Result<(), DaemonError> {
        let wanted: std::collections::BTreeSet<String> = programmed
            .keys()
            .map(|(ns, name)| endpoint_status_file_name(ns, name))
            .collect();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| self.error(source))?;
        for entry in entries {
            let entry = entry.map_err(|source| self.error(source))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".json") && !wanted.contains(&file) {
                tracing::info!(file, "removing the status of an endpoint that is gone");
                remove_file(&entry.path())?;
            } else if file.starts_with('.') && file.ends_with(".json.tmp") {
                // Half written by an earlier run that was killed.
                remove_file(&entry.path())?;
            }
        }
        Ok(())
    }

    fn write(&self, status: &EndpointStatus) -> Result<(), DaemonError> {
        let file = endpoint_status_file_name(&status.namespace, &status.name);
        let path = self.dir.join(&file);
        // Written under a name the CNI plugin never reads, then renamed: a
        // reader sees the old file or the new one, never half of one. Not
        // synced: the file tells of the kernel's ruleset, which a reboot
        // does not keep either (the directory is on tmpfs under /var/run),
        // and an fsync would stall the owner loop behind the disk.
        let temp = self.dir.join(format!(".{file}.tmp"));
        let body = serde_json::to_vec(status).expect("an endpoint status serializes");
        let result = std::fs::File::create(&temp)
            .and_then(|mut f| f.write_all(&body))
            .and_then(|()| std::fs::rename(&temp, &path));
        result.map_err(|source| DaemonError::StatusFile {
            path: path.display().to_string(),
            source,
        })?;
        tracing::debug!(namespace = %status.namespace, endpoint = %status.name,
            revision = status.revision, "endpoint programmed");
        Ok(())
    }

    fn remove(&self, namespace: &str, name: &str) -> Result<(), DaemonError> {
        remove_file(&self.dir.join(endpoint_status_file_name(namespace, name)))
    }

    fn error(&self, source: std::io::Error) -> DaemonError {
        DaemonError::StatusDir {
            path: self.dir.display().to_string(),
            source,
        }
    }
}

fn remove_file(path: &Path) -> Result<(), DaemonError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DaemonError::StatusFile {
            path: path.display().to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}
