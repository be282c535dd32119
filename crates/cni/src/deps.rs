//! What a verb talks to: the host kernel, the node IPAM service and the
//! datastore — behind seams that unit tests replace.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use twill_ipam::client::{Client, ClientError};
use twill_ipam::{AllocateRequest, AllocatedIp};
use twill_kernel::Kernel;
use twill_store::Datastore;

use crate::error::CniError;

/// The node IPAM service as the plugin uses it.
pub trait IpamService {
    /// Allocates the addresses of `request`.
    ///
    /// # Errors
    ///
    /// [`CniError::Ipam`] or [`CniError::TryAgainLater`].
    fn allocate(&mut self, request: AllocateRequest) -> Result<Vec<AllocatedIp>, CniError>;

    /// Releases everything held under `handle`; an unknown handle releases
    /// nothing and is not an error.
    ///
    /// # Errors
    ///
    /// [`CniError::Ipam`] or [`CniError::TryAgainLater`].
    fn release_handle(&mut self, handle: &str) -> Result<Vec<IpAddr>, CniError>;

    /// Answers when the service is up.
    ///
    /// # Errors
    ///
    /// [`CniError::NotAvailable`].
    fn ping(&mut self) -> Result<(), CniError>;
}

/// [`IpamService`] over the service's unix socket; connects on first use.
#[derive(Debug)]
pub struct SocketIpam {
    socket: PathBuf,
    timeout: Duration,
    client: Option<Client>,
}

impl SocketIpam {
    /// A client of the service at `socket`; each call waits at most
    /// `timeout`.
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self {
            socket,
            timeout,
            client: None,
        }
    }

    fn client(&mut self, operation: &'static str, handle: &str) -> Result<&mut Client, CniError> {
        if self.client.is_none() {
            let client = Client::connect(&self.socket, self.timeout).map_err(|e| {
                CniError::TryAgainLater {
                    reason: format!(
                        "ipam {operation} for {handle:?}: cannot reach the node IPAM service at {}: {e}",
                        self.socket.display()
                    ),
                }
            })?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }
}

fn ipam_err(operation: &'static str, handle: &str, e: ClientError) -> CniError {
    match e {
        ClientError::Io(io) => CniError::TryAgainLater {
            reason: format!("ipam {operation} for {handle:?}: {io}"),
        },
        other => CniError::Ipam {
            operation,
            handle: handle.to_string(),
            reason: other.to_string(),
        },
    }
}

impl IpamService for SocketIpam {
    fn allocate(&mut self, request: AllocateRequest) -> Result<Vec<AllocatedIp>, CniError> {
        let handle = request.handle.clone();
        self.client("allocate", &handle)?
            .allocate(request)
            .map_err(|e| ipam_err("allocate", &handle, e))
    }

    fn release_handle(&mut self, handle: &str) -> Result<Vec<IpAddr>, CniError> {
        self.client("release", handle)?
            .release_handle(handle)
            .map_err(|e| ipam_err("release", handle, e))
    }

    fn ping(&mut self) -> Result<(), CniError> {
        let not_available = |e: CniError| CniError::NotAvailable {
            reason: e.to_string(),
        };
        self.client("status", "")
            .map_err(not_available)?
            .status()
            .map(drop)
            .map_err(|e| not_available(ipam_err("status", "", e)))
    }
}

/// Everything a verb needs besides its input.
pub struct Deps {
    /// The host's network namespace.
    pub host: Arc<dyn Kernel>,
    /// The node IPAM service.
    pub ipam: Box<dyn IpamService>,
    /// The datastore.
    pub store: Arc<dyn Datastore>,
    /// This node's name.
    pub node: String,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}
