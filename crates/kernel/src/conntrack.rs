//! Connection-tracking entries: deleting the flows of one address when it
//! moves (to another interface or node), so that replies are not matched
//! against a flow that points at the old place.
//!
//! The `conntrack` tool (conntrack-tools) does the work, forked from the
//! namespace's worker thread like `nft`.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::error::{KernelError, KernelObject};

/// The tool, looked up in `PATH`.
pub const CONNTRACK_BINARY: &str = "conntrack";

/// Deletes every flow whose original source or destination is `ip`. No
/// flow to delete is success.
pub(crate) fn delete_flows(ip: IpAddr) -> Result<(), KernelError> {
    let object = KernelObject::Conntrack(ip);
    let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
    let text = ip.to_string();
    for direction in ["--orig-src", "--orig-dst"] {
        let output = Command::new(CONNTRACK_BINARY)
            .args(["-D", "-f", family, direction, &text])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| KernelError::os(object.clone(), "spawn conntrack", &err))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // conntrack exits with 1 and "0 flow entries have been deleted"
        // when nothing matched.
        let nothing_matched = stderr.contains("0 flow entries");
        if !output.status.success() && !nothing_matched {
            return Err(KernelError::Unexpected {
                object,
                reason: format!(
                    "conntrack exited with {}: {}",
                    output.status,
                    stderr.trim_end()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::KernelExt;
    use crate::fake::RecordingKernel;

    #[test]
    fn a_conntrack_deletion_is_a_recorded_write() {
        let kernel = RecordingKernel::new();
        kernel
            .delete_conntrack("10.65.0.5".parse().expect("literal"))
            .wait()
            .expect("the fake accepts it");
        let writes: Vec<&str> = kernel.writes().iter().map(|op| op.name()).collect();
        assert_eq!(writes, ["delete_conntrack"]);
    }
}
