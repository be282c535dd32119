//! The chokepoint: every kernel operation is a [`KernelOp`] value executed
//! through [`Kernel::submit`]. Convenience methods in [`KernelExt`] only
//! build ops.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ipnet::IpNet;
use tokio::sync::oneshot;

use crate::addr::AddressEntry;
use crate::error::KernelError;
use crate::link::{BridgeSpec, LinkInfo, MacAddr, VethSpec, VxlanSpec};
use crate::neigh::{FdbEntry, Neighbour};
use crate::netns::NetnsPath;
use crate::nft::{NftTable, NftTableId};
use crate::route::{Route, RouteFilter, RouteKey};
use crate::route_batch::{RouteBatchReport, RouteChange};
use crate::sysctl::SysctlKey;

/// One kernel operation. Each runs in the namespace of the [`Kernel`] it is
/// submitted to (namespace creation and deletion are path operations and
/// work from any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOp {
    /// `ip netns add NAME`.
    CreateNetns {
        /// Namespace name under `/run/netns`.
        name: String,
    },
    /// `ip netns del NAME`.
    DeleteNetns {
        /// Namespace name under `/run/netns`.
        name: String,
    },
    /// Create a veth pair.
    CreateVeth(VethSpec),
    /// Create a bridge (down).
    CreateBridge(BridgeSpec),
    /// Create a VXLAN device (down, learning off).
    CreateVxlan(VxlanSpec),
    /// Move an interface into another namespace.
    MoveLink {
        /// Interface name.
        name: String,
        /// Target namespace.
        netns: NetnsPath,
    },
    /// Rename an interface (the kernel may require it to be down).
    RenameLink {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Set an interface up or down.
    SetLinkUp {
        /// Interface name.
        name: String,
        /// Up when true.
        up: bool,
    },
    /// Set an interface's MTU.
    SetLinkMtu {
        /// Interface name.
        name: String,
        /// MTU in bytes.
        mtu: u32,
    },
    /// Set an interface's MAC address.
    SetLinkMac {
        /// Interface name.
        name: String,
        /// New address.
        mac: MacAddr,
    },
    /// Attach an interface to a bridge, or detach it (`None`).
    SetLinkController {
        /// Interface name.
        name: String,
        /// Bridge name.
        controller: Option<String>,
    },
    /// Delete an interface (a veth takes its peer with it).
    DeleteLink {
        /// Interface name.
        name: String,
    },
    /// Read one interface.
    GetLink {
        /// Interface name.
        name: String,
    },
    /// List interfaces, sorted by name.
    ListLinks {
        /// Only names starting with this.
        prefix: Option<String>,
    },
    /// Add an address.
    AddAddress(AddressEntry),
    /// Delete an address.
    DeleteAddress(AddressEntry),
    /// List addresses.
    ListAddresses {
        /// Only this interface.
        link: Option<String>,
    },
    /// Add a route; fails with `AlreadyExists` if its key is taken.
    AddRoute(Route),
    /// Add a route or replace the one with the same key.
    ReplaceRoute(Route),
    /// Delete a route.
    DeleteRoute(RouteKey),
    /// Replace and delete many routes at once, in order. Each change
    /// succeeds or fails on its own; the reply
    /// ([`KernelReply::RouteBatch`]) lists the failures.
    ApplyRoutes(Vec<RouteChange>),
    /// List routes.
    ListRoutes(RouteFilter),
    /// Create or replace a permanent neighbour entry.
    AddNeighbour(Neighbour),
    /// Delete a neighbour entry.
    DeleteNeighbour {
        /// Interface name.
        link: String,
        /// Neighbour address.
        ip: IpAddr,
    },
    /// List permanent neighbour entries.
    ListNeighbours {
        /// Only this interface.
        link: Option<String>,
    },
    /// Create or replace a permanent `self` FDB entry.
    AddFdb(FdbEntry),
    /// Delete an FDB entry.
    DeleteFdb(FdbEntry),
    /// List permanent `self` FDB entries.
    ListFdb {
        /// Only this interface.
        link: Option<String>,
    },
    /// Read a sysctl.
    ReadSysctl(SysctlKey),
    /// Write a sysctl.
    WriteSysctl {
        /// Key.
        key: SysctlKey,
        /// Value (written as is).
        value: String,
    },
    /// Apply an nft script as one atomic transaction (`nft -f -`).
    NftApply {
        /// The script.
        script: String,
    },
    /// Read back one table.
    NftReadTable(NftTableId),
    /// Delete one table.
    NftDeleteTable(NftTableId),
    /// List all tables.
    NftListTables,
    /// Delete every connection-tracking flow from or to an address
    /// (`conntrack -D`); none to delete is success.
    DeleteConntrack {
        /// The address.
        ip: IpAddr,
    },
}

impl KernelOp {
    /// A short, stable name of the operation, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateNetns { .. } => "create_netns",
            Self::DeleteNetns { .. } => "delete_netns",
            Self::CreateVeth(_) => "create_veth",
            Self::CreateBridge(_) => "create_bridge",
            Self::CreateVxlan(_) => "create_vxlan",
            Self::MoveLink { .. } => "move_link",
            Self::RenameLink { .. } => "rename_link",
            Self::SetLinkUp { .. } => "set_link_up",
            Self::SetLinkMtu { .. } => "set_link_mtu",
            Self::SetLinkMac { .. } => "set_link_mac",
            Self::SetLinkController { .. } => "set_link_controller",
            Self::DeleteLink { .. } => "delete_link",
            Self::GetLink { .. } => "get_link",
            Self::ListLinks { .. } => "list_links",
            Self::AddAddress(_) => "add_address",
            Self::DeleteAddress(_) => "delete_address",
            Self::ListAddresses { .. } => "list_addresses",
            Self::AddRoute(_) => "add_route",
            Self::ReplaceRoute(_) => "replace_route",
            Self::DeleteRoute(_) => "delete_route",
            Self::ApplyRoutes(_) => "apply_routes",
            Self::ListRoutes(_) => "list_routes",
            Self::AddNeighbour(_) => "add_neighbour",
            Self::DeleteNeighbour { .. } => "delete_neighbour",
            Self::ListNeighbours { .. } => "list_neighbours",
            Self::AddFdb(_) => "add_fdb",
            Self::DeleteFdb(_) => "delete_fdb",
            Self::ListFdb { .. } => "list_fdb",
            Self::ReadSysctl(_) => "read_sysctl",
            Self::WriteSysctl { .. } => "write_sysctl",
            Self::NftApply { .. } => "nft_apply",
            Self::NftReadTable(_) => "nft_read_table",
            Self::NftDeleteTable(_) => "nft_delete_table",
            Self::NftListTables => "nft_list_tables",
            Self::DeleteConntrack { .. } => "delete_conntrack",
        }
    }

    /// True for operations that only read.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::GetLink { .. }
                | Self::ListLinks { .. }
                | Self::ListAddresses { .. }
                | Self::ListRoutes(_)
                | Self::ListNeighbours { .. }
                | Self::ListFdb { .. }
                | Self::ReadSysctl(_)
                | Self::NftReadTable(_)
                | Self::NftListTables
        )
    }
}

/// The answer to a [`KernelOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelReply {
    /// A change was made.
    Done,
    /// One interface.
    Link(LinkInfo),
    /// Interfaces.
    Links(Vec<LinkInfo>),
    /// Addresses.
    Addresses(Vec<AddressEntry>),
    /// Routes.
    Routes(Vec<Route>),
    /// Neighbour entries.
    Neighbours(Vec<Neighbour>),
    /// FDB entries.
    Fdb(Vec<FdbEntry>),
    /// A sysctl value.
    Sysctl(String),
    /// One nft table.
    NftTable(NftTable),
    /// nft table ids.
    NftTables(Vec<NftTableId>),
    /// The outcome of [`KernelOp::ApplyRoutes`].
    RouteBatch(RouteBatchReport),
}

type Convert<T> = fn(KernelReply) -> Result<T, KernelError>;

/// An operation in flight. Await it in async code, or call
/// [`Pending::wait`] in synchronous code (outside any tokio runtime).
#[must_use = "an operation's result must be awaited or waited for"]
pub struct Pending<T> {
    rx: oneshot::Receiver<Result<KernelReply, KernelError>>,
    convert: Convert<T>,
    netns: String,
}

impl Pending<KernelReply> {
    /// A pending result fed by `tx`; `netns` names the worker for errors.
    pub fn channel(
        netns: impl Into<String>,
    ) -> (oneshot::Sender<Result<KernelReply, KernelError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (
            tx,
            Self {
                rx,
                convert: Ok,
                netns: netns.into(),
            },
        )
    }

    /// An already finished operation (for fakes and early errors).
    pub fn ready(result: Result<KernelReply, KernelError>) -> Self {
        let (tx, pending) = Self::channel("ready");
        // The receiver is alive in `pending`, so the send cannot fail.
        let _ = tx.send(result);
        pending
    }

    /// Converts the reply into `U` when it arrives.
    pub fn map<U>(self, convert: Convert<U>) -> Pending<U> {
        Pending {
            rx: self.rx,
            convert,
            netns: self.netns,
        }
    }
}

type Received = Result<Result<KernelReply, KernelError>, oneshot::error::RecvError>;

fn finish<T>(received: Received, convert: Convert<T>, netns: &str) -> Result<T, KernelError> {
    match received {
        Ok(result) => result.and_then(convert),
        Err(_) => Err(KernelError::WorkerGone {
            netns: netns.to_string(),
        }),
    }
}

impl<T> Pending<T> {
    /// Blocks the calling thread until the operation is done.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime (use `.await` there).
    pub fn wait(self) -> Result<T, KernelError> {
        let received = self.rx.blocking_recv();
        finish(received, self.convert, &self.netns)
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, KernelError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(received) => Poll::Ready(finish(received, self.convert, &self.netns)),
        }
    }
}

/// Access to one network namespace's kernel state.
///
/// `submit` is the single chokepoint; it never blocks, and its [`Pending`]
/// result serves both worlds: daemons `.await` it on their tokio runtime,
/// the short-lived CNI plugin calls `.wait()` without any runtime. The real
/// backend runs ops on a dedicated thread per namespace (setns is per
/// thread), so an async trait would buy nothing and a blocking one would
/// stall daemon tasks.
pub trait Kernel: Send + Sync {
    /// Starts `op`; ops submitted to one `Kernel` run in submission order.
    fn submit(&self, op: KernelOp) -> Pending<KernelReply>;

    /// A `Kernel` for the namespace at `netns`, sharing this one's
    /// configuration (and, for the fake, its model and log). For the real
    /// backend this starts a worker thread: keep the result rather than
    /// entering per op.
    fn enter(&self, netns: &NetnsPath) -> Result<Arc<dyn Kernel>, KernelError>;

    /// Notices of address and interface changes in this kernel's namespace
    /// (see [`crate::watch`]). Each call starts a watch of its own; for the
    /// real backend, a thread.
    ///
    /// # Errors
    ///
    /// When the subscription cannot be made, naming the namespace.
    fn watch_addresses(&self) -> Result<crate::watch::AddressChanges, KernelError>;
}

fn unexpected<T>(reply: KernelReply) -> Result<T, KernelError> {
    Err(KernelError::ReplyMismatch {
        operation: std::any::type_name::<T>(),
        reply: format!("{reply:?}"),
    })
}

fn done(reply: KernelReply) -> Result<(), KernelError> {
    match reply {
        KernelReply::Done => Ok(()),
        other => unexpected(other),
    }
}

macro_rules! reply_fn {
    ($fn_name:ident, $variant:ident, $ty:ty) => {
        fn $fn_name(reply: KernelReply) -> Result<$ty, KernelError> {
            match reply {
                KernelReply::$variant(value) => Ok(value),
                other => unexpected(other),
            }
        }
    };
}

reply_fn!(link_reply, Link, LinkInfo);
reply_fn!(links_reply, Links, Vec<LinkInfo>);
reply_fn!(addresses_reply, Addresses, Vec<AddressEntry>);
reply_fn!(routes_reply, Routes, Vec<Route>);
reply_fn!(neighbours_reply, Neighbours, Vec<Neighbour>);
reply_fn!(fdb_reply, Fdb, Vec<FdbEntry>);
reply_fn!(sysctl_reply, Sysctl, String);
reply_fn!(table_reply, NftTable, NftTable);
reply_fn!(tables_reply, NftTables, Vec<NftTableId>);
reply_fn!(route_batch_reply, RouteBatch, RouteBatchReport);

/// Typed convenience methods; each builds one [`KernelOp`] and submits it.
pub trait KernelExt: Kernel {
    /// See [`KernelOp::CreateNetns`].
    fn create_netns(&self, name: &str) -> Pending<()> {
        self.submit(KernelOp::CreateNetns { name: name.into() })
            .map(done)
    }
    /// See [`KernelOp::DeleteNetns`].
    fn delete_netns(&self, name: &str) -> Pending<()> {
        self.submit(KernelOp::DeleteNetns { name: name.into() })
            .map(done)
    }
    /// See [`KernelOp::CreateVeth`].
    fn create_veth(&self, spec: VethSpec) -> Pending<()> {
        self.submit(KernelOp::CreateVeth(spec)).map(done)
    }
    /// See [`KernelOp::CreateBridge`].
    fn create_bridge(&self, spec: BridgeSpec) -> Pending<()> {
        self.submit(KernelOp::CreateBridge(spec)).map(done)
    }
    /// See [`KernelOp::CreateVxlan`].
    fn create_vxlan(&self, spec: VxlanSpec) -> Pending<()> {
        self.submit(KernelOp::CreateVxlan(spec)).map(done)
    }
    /// See [`KernelOp::MoveLink`].
    fn move_link(&self, name: &str, netns: &NetnsPath) -> Pending<()> {
        self.submit(KernelOp::MoveLink {
            name: name.into(),
            netns: netns.clone(),
        })
        .map(done)
    }
    /// See [`KernelOp::RenameLink`].
    fn rename_link(&self, name: &str, new_name: &str) -> Pending<()> {
        self.submit(KernelOp::RenameLink {
            name: name.into(),
            new_name: new_name.into(),
        })
        .map(done)
    }
    /// See [`KernelOp::SetLinkUp`].
    fn set_link_up(&self, name: &str, up: bool) -> Pending<()> {
        self.submit(KernelOp::SetLinkUp {
            name: name.into(),
            up,
        })
        .map(done)
    }
    /// See [`KernelOp::SetLinkMtu`].
    fn set_link_mtu(&self, name: &str, mtu: u32) -> Pending<()> {
        self.submit(KernelOp::SetLinkMtu {
            name: name.into(),
            mtu,
        })
        .map(done)
    }
    /// See [`KernelOp::SetLinkMac`].
    fn set_link_mac(&self, name: &str, mac: MacAddr) -> Pending<()> {
        self.submit(KernelOp::SetLinkMac {
            name: name.into(),
            mac,
        })
        .map(done)
    }
    /// See [`KernelOp::SetLinkController`].
    fn set_link_controller(&self, name: &str, controller: Option<&str>) -> Pending<()> {
        self.submit(KernelOp::SetLinkController {
            name: name.into(),
            controller: controller.map(Into::into),
        })
        .map(done)
    }
    /// See [`KernelOp::DeleteLink`].
    fn delete_link(&self, name: &str) -> Pending<()> {
        self.submit(KernelOp::DeleteLink { name: name.into() })
            .map(done)
    }
    /// See [`KernelOp::GetLink`].
    fn get_link(&self, name: &str) -> Pending<LinkInfo> {
        self.submit(KernelOp::GetLink { name: name.into() })
            .map(link_reply)
    }
    /// See [`KernelOp::ListLinks`].
    fn list_links(&self, prefix: Option<&str>) -> Pending<Vec<LinkInfo>> {
        self.submit(KernelOp::ListLinks {
            prefix: prefix.map(Into::into),
        })
        .map(links_reply)
    }
    /// See [`KernelOp::AddAddress`].
    fn add_address(&self, link: &str, addr: IpNet) -> Pending<()> {
        self.submit(KernelOp::AddAddress(AddressEntry {
            link: link.into(),
            addr,
        }))
        .map(done)
    }
    /// See [`KernelOp::DeleteAddress`].
    fn delete_address(&self, link: &str, addr: IpNet) -> Pending<()> {
        self.submit(KernelOp::DeleteAddress(AddressEntry {
            link: link.into(),
            addr,
        }))
        .map(done)
    }
    /// See [`KernelOp::ListAddresses`].
    fn list_addresses(&self, link: Option<&str>) -> Pending<Vec<AddressEntry>> {
        self.submit(KernelOp::ListAddresses {
            link: link.map(Into::into),
        })
        .map(addresses_reply)
    }
    /// See [`KernelOp::AddRoute`].
    fn add_route(&self, route: Route) -> Pending<()> {
        self.submit(KernelOp::AddRoute(route)).map(done)
    }
    /// See [`KernelOp::ReplaceRoute`].
    fn replace_route(&self, route: Route) -> Pending<()> {
        self.submit(KernelOp::ReplaceRoute(route)).map(done)
    }
    /// See [`KernelOp::DeleteRoute`].
    fn delete_route(&self, key: RouteKey) -> Pending<()> {
        self.submit(KernelOp::DeleteRoute(key)).map(done)
    }
    /// See [`KernelOp::ApplyRoutes`].
    fn apply_routes(&self, changes: Vec<RouteChange>) -> Pending<RouteBatchReport> {
        self.submit(KernelOp::ApplyRoutes(changes))
            .map(route_batch_reply)
    }
    /// See [`KernelOp::ListRoutes`].
    fn list_routes(&self, filter: RouteFilter) -> Pending<Vec<Route>> {
        self.submit(KernelOp::ListRoutes(filter)).map(routes_reply)
    }
    /// See [`KernelOp::AddNeighbour`].
    fn add_neighbour(&self, entry: Neighbour) -> Pending<()> {
        self.submit(KernelOp::AddNeighbour(entry)).map(done)
    }
    /// See [`KernelOp::DeleteNeighbour`].
    fn delete_neighbour(&self, link: &str, ip: IpAddr) -> Pending<()> {
        self.submit(KernelOp::DeleteNeighbour {
            link: link.into(),
            ip,
        })
        .map(done)
    }
    /// See [`KernelOp::ListNeighbours`].
    fn list_neighbours(&self, link: Option<&str>) -> Pending<Vec<Neighbour>> {
        self.submit(KernelOp::ListNeighbours {
            link: link.map(Into::into),
        })
        .map(neighbours_reply)
    }
    /// See [`KernelOp::AddFdb`].
    fn add_fdb(&self, entry: FdbEntry) -> Pending<()> {
        self.submit(KernelOp::AddFdb(entry)).map(done)
    }
    /// See [`KernelOp::DeleteFdb`].
    fn delete_fdb(&self, entry: FdbEntry) -> Pending<()> {
        self.submit(KernelOp::DeleteFdb(entry)).map(done)
    }
    /// See [`KernelOp::ListFdb`].
    fn list_fdb(&self, link: Option<&str>) -> Pending<Vec<FdbEntry>> {
        self.submit(KernelOp::ListFdb {
            link: link.map(Into::into),
        })
        .map(fdb_reply)
    }
    /// See [`KernelOp::ReadSysctl`].
    fn read_sysctl(&self, key: &SysctlKey) -> Pending<String> {
        self.submit(KernelOp::ReadSysctl(key.clone()))
            .map(sysctl_reply)
    }
    /// See [`KernelOp::WriteSysctl`].
    fn write_sysctl(&self, key: &SysctlKey, value: &str) -> Pending<()> {
        self.submit(KernelOp::WriteSysctl {
            key: key.clone(),
            value: value.into(),
        })
        .map(done)
    }
    /// See [`KernelOp::NftApply`].
    fn nft_apply(&self, script: &str) -> Pending<()> {
        self.submit(KernelOp::NftApply {
            script: script.into(),
        })
        .map(done)
    }
    /// See [`KernelOp::NftReadTable`].
    fn nft_read_table(&self, family: &str, name: &str) -> Pending<NftTable> {
        self.submit(KernelOp::NftReadTable(NftTableId::new(family, name)))
            .map(table_reply)
    }
    /// See [`KernelOp::NftDeleteTable`].
    fn nft_delete_table(&self, family: &str, name: &str) -> Pending<()> {
        self.submit(KernelOp::NftDeleteTable(NftTableId::new(family, name)))
            .map(done)
    }
    /// See [`KernelOp::DeleteConntrack`].
    fn delete_conntrack(&self, ip: IpAddr) -> Pending<()> {
        self.submit(KernelOp::DeleteConntrack { ip }).map(done)
    }
    /// See [`KernelOp::NftListTables`].
    fn nft_list_tables(&self) -> Pending<Vec<NftTableId>> {
        self.submit(KernelOp::NftListTables).map(tables_reply)
    }
}

impl<K: Kernel + ?Sized> KernelExt for K {}
