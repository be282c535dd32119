//! Notice of changes to a namespace's addresses and interfaces.
//!
//! A daemon that resolves something from the host's addresses (felix-rs:
//! a HostEndpoint with only `expectedIPs` polices whichever interface
//! carries one of them) lists them again when told something changed,
//! rather than on a timer. [`AddressChanges`] tells it: the real backend
//! reads a netlink socket bound to the IPv4 and IPv6 address groups and the
//! link group (a renamed or deleted interface takes its addresses along),
//! on a thread of its own in the kernel's namespace; the fake tells of its
//! own address and link changes.
//!
//! Notices carry nothing: several changes before the receiver looks are
//! one notice, and the receiver lists what is there now. A notice may be a
//! change that matters to no one (a pod's veth coming up); listing is
//! cheap.

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::{KernelError, KernelObject};
use crate::netns::{self, NetnsPath};

/// `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR` and `RTMGRP_IPV6_IFADDR`.
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// How often, in seconds, the reading thread looks whether the receiver is
/// gone, when nothing changes.
const IDLE_CHECK_SECS: i64 = 1;

/// Notices that a namespace's addresses or interfaces changed; see the
/// module docs.
#[derive(Debug)]
pub struct AddressChanges {
    rx: mpsc::Receiver<()>,
}

impl AddressChanges {
    /// A receiver and the sender that notifies it.
    pub(crate) fn channel() -> (Notifier, Self) {
        let (tx, rx) = mpsc::channel(1);
        (Notifier(tx), Self { rx })
    }

    /// Waits for the next change (any number since the last call count as
    /// one); `None` once nothing will be reported any more.
    pub async fn changed(&mut self) -> Option<()> {
        self.rx.recv().await
    }
}

/// The sending side of [`AddressChanges`].
#[derive(Debug, Clone)]
pub(crate) struct Notifier(mpsc::Sender<()>);

impl Notifier {
    /// Tells of a change; `false` once the receiver is gone.
    pub(crate) fn notify(&self) -> bool {
        !matches!(self.0.try_send(()), Err(TrySendError::Closed(())))
    }
}

/// Starts a thread that enters `netns` (the caller's namespace when
/// `None`; `label` names it in errors), subscribes to address and link
/// changes there and reports them until the receiver is dropped.
pub(crate) fn spawn(netns: Option<NetnsPath>, label: &str) -> Result<AddressChanges, KernelError> {
    let object = || KernelObject::Netns(label.to_string());
    let (notifier, changes) = AddressChanges::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), KernelError>>();
    let thread_label = label.to_string();
    std::thread::Builder::new()
        .name("twill-addr-watch".into())
        .spawn(move || match subscribe(netns.as_ref(), &thread_label) {
            Ok(socket) => {
                let _ = ready_tx.send(Ok(()));
                report(&socket, &notifier, &thread_label);
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
            }
        })
        .map_err(|err| KernelError::os(object(), "spawn address watch thread", &err))?;
    ready_rx.recv().map_err(|_| KernelError::WorkerGone {
        netns: label.to_string(),
    })??;
    Ok(changes)
}

/// The subscribed socket, opened in `netns`.
fn subscribe(netns: Option<&NetnsPath>, label: &str) -> Result<Socket, KernelError> {
    let os = |operation, err: &std::io::Error| {
        KernelError::os(KernelObject::Netns(label.to_string()), operation, err)
    };
    if let Some(ns) = netns {
        netns::enter(ns)?;
    }
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| os("open netlink socket", &e))?;
    socket
        .bind(&SocketAddr::new(0, GROUPS))
        .map_err(|e| os("subscribe to address changes", &e))?;
    let timeout = TimeVal::new(IDLE_CHECK_SECS, 0);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)
        .map_err(|errno| os("set receive timeout", &std::io::Error::from(errno)))?;
    Ok(socket)
}

/// Reads notifications until the receiver is gone; what they say does not
/// matter (see the module docs), so they are not decoded. An overrun
/// (`ENOBUFS`: changes were lost) is a change too.
fn report(socket: &Socket, notifier: &Notifier, label: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = &mut buf[..];
        let changed = match socket.recv(&mut space, 0) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                false
            }
            Err(error) => {
                tracing::warn!(netns = %label, %error, "address watch ended");
                return;
            }
        };
        let alive = if changed {
            notifier.notify()
        } else {
            !notifier.0.is_closed()
        };
        if !alive {
            return;
        }
    }
}
