//! The host MTU (Calico's rule: the smallest MTU among the host interfaces
//! whose names match `mtuIfacePattern`) and the file that publishes the
//! pod MTU to twill-cni.

use std::io::Write as _;
use std::path::Path;

use regex::Regex;
use twill_kernel::LinkInfo;

/// Calico's default `mtuIfacePattern`.
pub const DEFAULT_MTU_IFACE_PATTERN: &str = "^((en|wl|ww|sl|ib)[Pcox].*|(eth|wlan|wwan).*)";

/// The MTU assumed when no interface matches.
pub const FALLBACK_MTU: u32 = 1500;

/// Errors of MTU detection and publication.
#[derive(Debug, thiserror::Error)]
pub enum MtuError {
    /// `mtuIfacePattern` is not a regular expression.
    #[error("invalid mtuIfacePattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The MTU file cannot be written.
    #[error("cannot write mtu file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The smallest MTU of the links matching `pattern` (the default pattern
/// when `None`); [`FALLBACK_MTU`] when none matches.
///
/// # Errors
///
/// [`MtuError::Pattern`] when the pattern does not compile.
pub fn host_mtu(links: &[LinkInfo], pattern: Option<&str>) -> Result<u32, MtuError> {
    let pattern = pattern.unwrap_or(DEFAULT_MTU_IFACE_PATTERN);
    let regex = Regex::new(pattern).map_err(|e| MtuError::Pattern {
        pattern: pattern.into(),
        reason: e.to_string(),
    })?;
    Ok(links
        .iter()
        .filter(|l| regex.is_match(&l.name) && l.mtu > 0)
        .map(|l| l.mtu)
        .min()
        .unwrap_or(FALLBACK_MTU))
}

/// Writes `mtu` to `path` (decimal and a newline) unless it already holds
/// it; atomically (temporary file, then rename), creating the directory.
/// Returns whether the file changed.
///
/// # Errors
///
/// [`MtuError::File`] on any I/O failure.
pub fn publish(path: &Path, mtu: u32) -> Result<bool, MtuError> {
    let text = format!("{mtu}\n");
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(false);
    }
    let fail = |source| MtuError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(true)
}
