//! A small blocking client of the node IPAM service, for the CNI plugin
//! (a short-lived process that needs no async runtime).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::allocate::{AllocateRequest, AllocatedIp, AssignIpRequest};
use crate::service::protocol::{ErrorReply, MAX_LINE, Op, Reply, Request, Response, Status};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (service down, timeout).
    #[error("ipam service socket: {0}")]
    Io(#[from] io::Error),
    /// The service answered something this client does not understand.
    #[error("ipam service protocol error: {0}")]
    Protocol(String),
    /// The service answered with an error.
    #[error("ipam service: {} ({})", .0.message, .0.kind)]
    Service(ErrorReply),
}

/// A connection to the service. Calls are answered in order.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects; every call then waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// The socket cannot be reached.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_id: 1,
        })
    }

    fn call(&mut self, op: Op) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Request { id, op })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut answer)?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "the service closed the connection".into(),
            ));
        }
        let response: Response = serde_json::from_str(answer.trim_end())
            .map_err(|e| ClientError::Protocol(format!("unreadable response: {e}")))?;
        if response.id != id {
            return Err(ClientError::Protocol(format!(
                "response to request {} while waiting for {id}",
                response.id
            )));
        }
        match (response.result, response.error) {
            (_, Some(error)) => Err(ClientError::Service(error)),
            (Some(result), None) => Ok(result),
            (None, None) => Err(ClientError::Protocol("empty response".into())),
        }
    }

    /// Allocates addresses (CNI ADD).
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn allocate(&mut self, request: AllocateRequest) -> Result<Vec<AllocatedIp>, ClientError> {
        match self.call(Op::Allocate { request })? {
            Reply::Allocated { ips } => Ok(ips),
            other => Err(unexpected(&other)),
        }
    }

    /// Assigns one given address.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn assign_ip(&mut self, request: AssignIpRequest) -> Result<AllocatedIp, ClientError> {
        match self.call(Op::AssignIp { request })? {
            Reply::Allocated { mut ips } if ips.len() == 1 => Ok(ips.remove(0)),
            other => Err(unexpected(&other)),
        }
    }

    /// Releases every address of a handle (CNI DEL). Returns them.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn release_handle(&mut self, handle: &str) -> Result<Vec<IpAddr>, ClientError> {
        match self.call(Op::ReleaseHandle {
            handle: handle.to_string(),
        })? {
            Reply::Released { released } => Ok(released),
            other => Err(unexpected(&other)),
        }
    }

    /// Releases one address; `true` when it was held.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn release_ip(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        sequence: Option<u64>,
    ) -> Result<bool, ClientError> {
        match self.call(Op::ReleaseIp {
            ip,
            handle: handle.map(str::to_string),
            sequence,
        })? {
            Reply::Released { released } => Ok(!released.is_empty()),
            other => Err(unexpected(&other)),
        }
    }

    /// The service's state.
    ///
    /// # Errors
    ///
    /// See [`ClientError`].
    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.call(Op::Status)? {
            Reply::Status(status) => Ok(status),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}
