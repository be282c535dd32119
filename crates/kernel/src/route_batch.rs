//! Batched route changes: many RTM_NEWROUTE / RTM_DELROUTE requests written
//! into one netlink socket in large sends, answered per route.
//!
//! ```text
//!  changes ──encode──> chunk buffer (≤ CHUNK_BYTES, ≤ chunk_limit requests)
//!                      seq = first, first+1, …; NLM_F_ACK on the last only
//!             send() ──> kernel runs every request in order inside sendmsg,
//!                        queues an NLMSG_ERROR for each failed one
//!             recv() <── NACKs (matched to the change by sequence number)
//!                        … until the ACK of the chunk's last request
//! ```
//!
//! Without `NLM_F_ACK` the kernel still reports every failure, so a chunk
//! costs one `send` and, when nothing fails, one `recv`. The socket caps
//! acknowledgements to the request header (`NETLINK_CAP_ACK`) and a chunk
//! is never larger than its receive buffer can hold NACKs for, so no failure
//! report is dropped; should the kernel still report an overrun (`ENOBUFS`),
//! the chunk's changes are replayed one request at a time with an
//! acknowledgement each (replaces are idempotent; a replayed delete of a
//! route the first pass removed answers `NotFound`).
//!
//! The requests go through a socket of their own, opened in the worker
//! thread's namespace, so their sequence numbers never mix with those of
//! the rtnetlink connection.

use std::collections::BTreeMap;

use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{KernelError, KernelObject};
use crate::nl::Nl;
use crate::route::{self, Route, RouteKey};

/// One change in a batch of routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// Add the route or replace the one with the same key.
    Replace(Route),
    /// Delete the route with this key.
    Delete(RouteKey),
}

impl RouteChange {
    /// The destination of the route the change is about.
    pub fn destination(&self) -> IpNet {
        match self {
            Self::Replace(route) => route.destination,
            Self::Delete(key) => key.destination,
        }
    }

    /// The route the change is about, for errors.
    pub fn object(&self) -> KernelObject {
        match self {
            Self::Replace(route) => route.object(),
            Self::Delete(key) => key.object(),
        }
    }

    /// Classifies the errno the kernel answered to this change.
    pub(crate) fn error(&self, errno: Errno) -> KernelError {
        match self {
            Self::Replace(route) => {
                KernelError::from_errno_create(route.object(), "replace", errno)
            }
            Self::Delete(key) => KernelError::from_errno_existing(key.object(), "delete", errno),
        }
    }
}

/// One change of a batch that the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    /// Position of the change in the batch.
    pub index: usize,
    /// Why it failed; the error names the route.
    pub error: KernelError,
}

/// The outcome of a batch: every change not listed in `failed` was applied.
/// One failure never stops the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteBatchReport {
    /// Changes applied.
    pub applied: usize,
    /// Changes refused, in batch order.
    pub failed: Vec<RouteFailure>,
}

impl RouteBatchReport {
    /// True when every change was applied.
    pub fn all_applied(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A sort key that spreads destinations over the kernel's FIB trie: the
/// address with its bits reversed (then family and prefix length).
///
/// Prefixes counted up one by one (as a BGP table dump delivers them) all
/// land in the same trie node, which the kernel then grows step by step;
/// in this order consecutive prefixes land in different nodes. Measured
/// in a test namespace on Linux 6.18: 100,000 sequential /24s replaced in
/// 0.29 s in counting order, 0.19 s in this order.
pub fn spread_key(destination: IpNet) -> (bool, u128, u8) {
    match destination {
        IpNet::V4(net) => (
            false,
            u128::from(u32::from(net.addr()).reverse_bits()),
            net.prefix_len(),
        ),
        IpNet::V6(net) => (
            true,
            u128::from(net.addr()).reverse_bits(),
            net.prefix_len(),
        ),
    }
}

/// Reorders `changes` by [`spread_key`], which makes the kernel's work for
/// a large batch cheaper. Only for batches in which no two changes touch
/// the same route: a batch is otherwise applied in order.
pub fn spread(changes: &mut [RouteChange]) {
    changes.sort_unstable_by_key(|change| spread_key(change.destination()));
}

/// Flags of a batched replace (acknowledged only when it fails, or when it
/// closes a chunk).
const REPLACE_FLAGS: u16 = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
/// Flags of a batched delete.
const DELETE_FLAGS: u16 = NLM_F_REQUEST;
/// `NLMSG_ERROR`: an acknowledgement (error 0) or a refusal.
const NLMSG_ERROR: u16 = 2;
/// Length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// Offset of `nlmsg_flags` in `struct nlmsghdr`.
const FLAGS_OFFSET: usize = 6;
/// Largest send: well under the default socket send buffer (`wmem_default`
/// 212,992 bytes; `sendmsg` refuses anything larger than it).
const CHUNK_BYTES: usize = 64 * 1024;
/// Most requests per send.
const MAX_CHUNK: usize = 1024;
/// Receive buffer asked for (the kernel caps it at `rmem_max`).
const RCVBUF_WANTED: i32 = 4 * 1024 * 1024;
/// Receive-buffer cost of one queued NACK with a capped payload (an skb's
/// true size), with a margin.
const NACK_COST: usize = 1536;

/// The requests of one send: change `entries[k]` went out with sequence
/// number `first_seq + k`.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) first_seq: u32,
    pub(crate) entries: Vec<usize>,
    pub(crate) buf: Vec<u8>,
    last_offset: usize,
}

impl Chunk {
    fn new(first_seq: u32) -> Self {
        Self {
            first_seq,
            entries: Vec::new(),
            buf: Vec::with_capacity(CHUNK_BYTES),
            last_offset: 0,
        }
    }

    /// Sequence number of the last request.
    pub(crate) fn last_seq(&self) -> u32 {
        self.first_seq
            .wrapping_add(u32::try_from(self.entries.len()).expect("chunks hold ≤ MAX_CHUNK") - 1)
    }

    /// The change a sequence number belongs to, if it is one of this chunk's.
    pub(crate) fn entry(&self, seq: u32) -> Option<usize> {
        let k = usize::try_from(seq.wrapping_sub(self.first_seq)).ok()?;
        self.entries.get(k).copied()
    }

    /// Appends the request for change `index`.
    fn push(&mut self, index: usize, mut message: NetlinkMessage<RouteNetlinkMessage>) {
        let seq = self
            .first_seq
            .wrapping_add(u32::try_from(self.entries.len()).expect("chunks hold ≤ MAX_CHUNK"));
        message.header.sequence_number = seq;
        message.finalize();
        let len = message.buffer_len();
        let at = self.buf.len();
        self.buf.resize(at + len, 0);
        message.serialize(&mut self.buf[at..]);
        self.last_offset = at;
        self.entries.push(index);
    }

    /// Asks for an acknowledgement of the last request, so that its ACK
    /// marks the end of the chunk's answers.
    fn ack_last(&mut self) {
        let at = self.last_offset + FLAGS_OFFSET;
        let flags = u16::from_ne_bytes([self.buf[at], self.buf[at + 1]]) | NLM_F_ACK;
        self.buf[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
    }
}

/// Builds the request for `change` with its batch flags (no sequence
/// number yet, no acknowledgement asked for).
pub(crate) fn request(
    change: &RouteChange,
    devices: &BTreeMap<String, u32>,
) -> Result<NetlinkMessage<RouteNetlinkMessage>, KernelError> {
    let (payload, flags) = match change {
        RouteChange::Replace(route) => (
            RouteNetlinkMessage::NewRoute(route::encode(route, devices)?),
            REPLACE_FLAGS,
        ),
        RouteChange::Delete(key) => (
            RouteNetlinkMessage::DelRoute(route::delete_message(key)),
            DELETE_FLAGS,
        ),
    };
    let mut message = NetlinkMessage::from(payload);
    message.header.flags = flags;
    Ok(message)
}

/// One `NLMSG_ERROR` answer: the sequence number it answers and its errno
/// (`None`: an acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) seq: u32,
    pub(crate) errno: Option<Errno>,
}

/// The `NLMSG_ERROR` answers in one datagram; other messages are skipped.
/// A truncated message ends the walk.
pub(crate) fn answers(datagram: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut at = 0;
    while datagram.len() >= at + HEADER_LEN {
        let word = |o: usize| {
            u32::from_ne_bytes(
                datagram[at + o..at + o + 4]
                    .try_into()
                    .expect("four bytes in range"),
            )
        };
        let len = usize::try_from(word(0)).expect("u32 fits in usize");
        if len < HEADER_LEN || at + len > datagram.len() {
            break;
        }
        let kind = u16::from_ne_bytes([datagram[at + 4], datagram[at + 5]]);
        if kind == NLMSG_ERROR && len >= HEADER_LEN + 4 {
            let code = i32::from_ne_bytes(
                datagram[at + HEADER_LEN..at + HEADER_LEN + 4]
                    .try_into()
                    .expect("four bytes in range"),
            );
            out.push(Answer {
                seq: word(8),
                errno: (code != 0).then(|| Errno::from_raw(code.saturating_abs())),
            });
        }
        // Messages are aligned to four bytes.
        at += (len + 3) & !3;
    }
    out
}

/// Records the answers of `chunk`; true once the answer to its last
/// request has arrived.
pub(crate) fn settle(
    chunk: &Chunk,
    answers: &[Answer],
    changes: &[RouteChange],
    failed: &mut Vec<RouteFailure>,
) -> bool {
    let mut done = false;
    for answer in answers {
        let Some(index) = chunk.entry(answer.seq) else {
            continue;
        };
        if let Some(errno) = answer.errno {
            failed.push(RouteFailure {
                index,
                error: changes[index].error(errno),
            });
        }
        done |= answer.seq == chunk.last_seq();
    }
    done
}

/// A netlink socket for batched route changes.
pub(crate) struct BatchSocket {
    socket: Socket,
    next_seq: u32,
    chunk_limit: usize,
    rx: Vec<u8>,
}

impl BatchSocket {
    /// Opens the socket in the calling thread's namespace, `netns` (named
    /// in errors).
    pub(crate) fn open(netns: &str) -> Result<Self, KernelError> {
        let os = |operation, err: &std::io::Error| {
            KernelError::os(KernelObject::Netns(netns.to_string()), operation, err)
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| os("open netlink socket", &e))?;
        socket
            .bind_auto()
            .map_err(|e| os("bind netlink socket", &e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| os("connect netlink socket", &e))?;
        // Both are optimisations: without them chunks are only smaller.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_rx_buf_sz(RCVBUF_WANTED);
        let rcvbuf = socket.get_rx_buf_sz().unwrap_or(212_992);
        Ok(Self {
            socket,
            next_seq: 1,
            chunk_limit: (rcvbuf / NACK_COST).clamp(16, MAX_CHUNK),
            rx: vec![0; 64 * 1024],
        })
    }

    /// Applies `changes`; `devices` maps the names the routes use to
    /// interface indices (a missing name fails only its routes).
    pub(crate) fn apply(
        &mut self,
        changes: &[RouteChange],
        devices: &BTreeMap<String, Result<u32, KernelError>>,
    ) -> RouteBatchReport {
        let known: BTreeMap<String, u32> = devices
            .iter()
            .filter_map(|(name, index)| Some((name.clone(), *index.as_ref().ok()?)))
            .collect();
        let mut failed = Vec::new();
        let mut chunk = Chunk::new(self.next_seq);
        for (index, change) in changes.iter().enumerate() {
            if let RouteChange::Replace(route) = change
                && let Some(error) = route
                    .next_hops
                    .iter()
                    .filter_map(|hop| hop.device.as_ref())
                    .find_map(|name| devices.get(name).and_then(|d| d.as_ref().err()))
            {
                failed.push(RouteFailure {
                    index,
                    error: error.clone(),
                });
                continue;
            }
            match request(change, &known) {
                Ok(message) => {
                    if chunk.entries.len() >= self.chunk_limit
                        || chunk.buf.len() + message.buffer_len() > CHUNK_BYTES
                    {
                        let full = std::mem::take(&mut chunk);
                        self.flush(full, changes, &known, &mut failed);
                        chunk = Chunk::new(self.next_seq);
                    }
                    chunk.push(index, message);
                }
                Err(error) => failed.push(RouteFailure { index, error }),
            }
        }
        if !chunk.entries.is_empty() {
            self.flush(chunk, changes, &known, &mut failed);
        }
        failed.sort_by_key(|f| f.index);
        RouteBatchReport {
            applied: changes.len() - failed.len(),
            failed,
        }
    }

    fn flush(
        &mut self,
        mut chunk: Chunk,
        changes: &[RouteChange],
        devices: &BTreeMap<String, u32>,
        failed: &mut Vec<RouteFailure>,
    ) {
        self.next_seq = chunk.last_seq().wrapping_add(1);
        chunk.ack_last();
        let mut chunk_failed = Vec::new();
        let outcome = self
            .socket
            .send(&chunk.buf, 0)
            .and_then(|_| self.receive(&chunk, changes, &mut chunk_failed));
        match outcome {
            Ok(()) => failed.append(&mut chunk_failed),
            Err(err) => {
                tracing::debug!(error = %err, requests = chunk.entries.len(),
                    "batched route answers lost; replaying the chunk one request at a time");
                for &index in &chunk.entries {
                    if let Err(error) = self.one(&changes[index], devices) {
                        failed.push(RouteFailure { index, error });
                    }
                }
            }
        }
    }

    /// Reads answers until the chunk's last request is answered.
    fn receive(
        &mut self,
        chunk: &Chunk,
        changes: &[RouteChange],
        failed: &mut Vec<RouteFailure>,
    ) -> std::io::Result<()> {
        loop {
            let mut space = &mut self.rx[..];
            let len = self.socket.recv(&mut space, 0)?;
            let len = len.min(self.rx.len());
            if settle(chunk, &answers(&self.rx[..len]), changes, failed) {
                return Ok(());
            }
        }
    }

    /// Applies one change with an acknowledgement (the overrun fallback).
    fn one(
        &mut self,
        change: &RouteChange,
        devices: &BTreeMap<String, u32>,
    ) -> Result<(), KernelError> {
        let object = change.object();
        let mut message = request(change, devices)?;
        message.header.flags |= NLM_F_ACK;
        let mut chunk = Chunk::new(self.next_seq);
        chunk.push(0, message);
        self.next_seq = self.next_seq.wrapping_add(1);
        let lost = |err: std::io::Error| KernelError::Netlink {
            object: object.clone(),
            operation: "batch",
            errno: Errno::from_raw(err.raw_os_error().unwrap_or(Errno::EIO as i32)),
        };
        self.socket.send(&chunk.buf, 0).map_err(lost)?;
        let mut failed = Vec::new();
        self.receive(&chunk, std::slice::from_ref(change), &mut failed)
            .map_err(lost)?;
        failed.pop().map_or(Ok(()), |f| Err(f.error))
    }
}

/// Interface indices of every device the replaced routes name.
pub(crate) async fn resolve_devices(
    nl: &Nl,
    changes: &[RouteChange],
) -> BTreeMap<String, Result<u32, KernelError>> {
    let mut out = BTreeMap::new();
    for change in changes {
        let RouteChange::Replace(route) = change else {
            continue;
        };
        for name in route.next_hops.iter().filter_map(|h| h.device.as_ref()) {
            if !out.contains_key(name) {
                out.insert(name.clone(), nl.link_index(name).await);
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "route_batch_tests.rs"]
mod tests;
