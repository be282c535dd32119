//! The real backend: rtnetlink, `/proc/sys` and the `nft` binary, driven
//! from one worker thread per network namespace.
//!
//! ```text
//!  caller (any thread, sync or async)
//!     | submit(op) ----------------------> mpsc ---> worker thread "twill-kernel"
//!     |                                                 setns(netns) once, then:
//!     | <---- oneshot (Pending: .await / .wait()) ---    current-thread tokio runtime
//!                                                        rtnetlink socket (opened here)
//!                                                        /proc/sys files (opened here)
//!                                                        nft child processes (forked here)
//! ```
//!
//! Ops on one `NetlinkKernel` run one at a time in submission order; the
//! worker exits when the last clone of the kernel is dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::KernelError;
use crate::netns::{self, NetnsPath};
use crate::nft::{self, NftConfig};
use crate::nl::Nl;
use crate::op::{Kernel, KernelOp, KernelReply, Pending};
use crate::route_batch::{self, BatchSocket};
use crate::{addr, link, neigh, route, sysctl};

type Request = (KernelOp, oneshot::Sender<Result<KernelReply, KernelError>>);

/// The real [`Kernel`], bound to one network namespace.
#[derive(Clone)]
pub struct NetlinkKernel {
    tx: mpsc::UnboundedSender<Request>,
    netns: Option<NetnsPath>,
    label: Arc<str>,
    nft: Arc<NftConfig>,
}

impl std::fmt::Debug for NetlinkKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkKernel")
            .field("netns", &self.label)
            .finish_non_exhaustive()
    }
}

impl NetlinkKernel {
    /// A kernel for the namespace of the calling thread (the host's, for a
    /// daemon started in it).
    pub fn current(nft: NftConfig) -> Result<Self, KernelError> {
        Self::spawn(None, nft)
    }

    /// A kernel for the namespace at `netns`.
    ///
    /// Starts the worker thread and waits until it has entered the namespace
    /// and opened its netlink socket (well under a millisecond), so that a
    /// bad path fails here, as `NotFound`. Keep the kernel: each call starts
    /// a new thread.
    pub fn open(netns: &NetnsPath, nft: NftConfig) -> Result<Self, KernelError> {
        Self::spawn(Some(netns.clone()), nft)
    }

    fn spawn(netns: Option<NetnsPath>, nft: NftConfig) -> Result<Self, KernelError> {
        let label: Arc<str> = netns
            .as_ref()
            .map_or_else(|| "host".to_string(), ToString::to_string)
            .into();
        let object = || crate::error::KernelObject::Netns(label.to_string());
        let nft = Arc::new(nft);
        let (tx, rx) = mpsc::unbounded_channel::<Request>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), KernelError>>();
        let worker_nft = Arc::clone(&nft);
        let worker_netns = netns.clone();
        std::thread::Builder::new()
            .name("twill-kernel".into())
            .spawn(move || worker(worker_netns, worker_nft, rx, ready_tx))
            .map_err(|err| KernelError::os(object(), "spawn worker thread", &err))?;
        ready_rx.recv().map_err(|_| KernelError::WorkerGone {
            netns: label.to_string(),
        })??;
        Ok(Self {
            tx,
            netns,
            label,
            nft,
        })
    }

    /// The nft configuration.
    pub fn nft_config(&self) -> &NftConfig {
        &self.nft
    }
}

impl Kernel for NetlinkKernel {
    fn submit(&self, op: KernelOp) -> Pending<KernelReply> {
        let (reply, pending) = Pending::channel(self.label.to_string());
        tracing::debug!(netns = %self.label, op = op.name(), "kernel op");
        // If the worker is gone the reply sender is dropped with the request
        // and the Pending resolves to WorkerGone.
        let _ = self.tx.send((op, reply));
        pending
    }

    fn enter(&self, netns: &NetnsPath) -> Result<Arc<dyn Kernel>, KernelError> {
        Ok(Arc::new(Self::open(netns, (*self.nft).clone())?))
    }

    fn watch_addresses(&self) -> Result<crate::watch::AddressChanges, KernelError> {
        crate::watch::spawn(self.netns.clone(), &self.label)
    }
}

fn worker(
    netns: Option<NetnsPath>,
    nft: Arc<NftConfig>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    ready: std::sync::mpsc::Sender<Result<(), KernelError>>,
) {
    let label = netns
        .as_ref()
        .map_or_else(|| "host".to_string(), ToString::to_string);
    let object = || crate::error::KernelObject::Netns(label.clone());
    let setup = || -> Result<tokio::runtime::Runtime, KernelError> {
        if let Some(ns) = &netns {
            netns::enter(ns)?;
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| KernelError::os(object(), "build runtime", &err))
    };
    let runtime = match setup() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    runtime.block_on(async {
        // Opened after setns: the socket belongs to this thread's namespace.
        let (connection, handle, _) = match rtnetlink::new_connection() {
            Ok(parts) => parts,
            Err(err) => {
                let _ = ready.send(Err(KernelError::os(object(), "open netlink socket", &err)));
                return;
            }
        };
        tokio::spawn(connection);
        let _ = ready.send(Ok(()));
        let nl = Nl::new(handle);
        let label = label.clone();
        // Opened on the first batch, in this thread's namespace.
        let mut batch: Option<BatchSocket> = None;
        while let Some((op, reply)) = rx.recv().await {
            let result = execute(&nl, &nft, &mut batch, op, &label).await;
            if let Err(err) = &result {
                tracing::debug!(netns = %label, error = %err, "kernel op failed");
            }
            let _ = reply.send(result);
        }
    });
}

async fn apply_routes(
    nl: &Nl,
    batch: &mut Option<BatchSocket>,
    changes: &[route_batch::RouteChange],
    netns: &str,
) -> Result<KernelReply, KernelError> {
    let devices = route_batch::resolve_devices(nl, changes).await;
    let socket = match batch {
        Some(socket) => socket,
        None => batch.insert(BatchSocket::open(netns)?),
    };
    Ok(KernelReply::RouteBatch(socket.apply(changes, &devices)))
}

async fn execute(
    nl: &Nl,
    nft_config: &NftConfig,
    batch: &mut Option<BatchSocket>,
    op: KernelOp,
    netns: &str,
) -> Result<KernelReply, KernelError> {
    use KernelOp as Op;
    use KernelReply as R;
    let done = |r: Result<(), KernelError>| r.map(|()| R::Done);
    match op {
        Op::CreateNetns { name } => netns::create_named(&name).map(|_| R::Done),
        Op::DeleteNetns { name } => done(netns::delete_named(&name)),
        Op::CreateVeth(spec) => done(link::create_veth(nl, &spec).await),
        Op::CreateBridge(spec) => done(link::create_bridge(nl, &spec).await),
        Op::CreateVxlan(spec) => done(link::create_vxlan(nl, &spec).await),
        Op::MoveLink { name, netns } => done(link::move_to_netns(nl, &name, &netns).await),
        Op::RenameLink { name, new_name } => done(link::rename(nl, &name, &new_name).await),
        Op::SetLinkUp { name, up } => done(link::set_up(nl, &name, up).await),
        Op::SetLinkMtu { name, mtu } => done(link::set_mtu(nl, &name, mtu).await),
        Op::SetLinkMac { name, mac } => done(link::set_mac(nl, &name, mac).await),
        Op::SetLinkController { name, controller } => {
            done(link::set_controller(nl, &name, controller.as_deref()).await)
        }
        Op::DeleteLink { name } => done(link::delete(nl, &name).await),
        Op::GetLink { name } => link::get(nl, &name).await.map(R::Link),
        Op::ListLinks { prefix } => link::list(nl, prefix.as_deref()).await.map(R::Links),
        Op::AddAddress(entry) => done(addr::add(nl, &entry.link, entry.addr).await),
        Op::DeleteAddress(entry) => done(addr::delete(nl, &entry.link, entry.addr).await),
        Op::ListAddresses { link } => addr::list(nl, link.as_deref()).await.map(R::Addresses),
        Op::AddRoute(r) => done(route::add(nl, &r, false).await),
        Op::ReplaceRoute(r) => done(route::add(nl, &r, true).await),
        Op::DeleteRoute(key) => done(route::delete(nl, &key).await),
        Op::ApplyRoutes(changes) => apply_routes(nl, batch, &changes, netns).await,
        Op::ListRoutes(filter) => route::list(nl, &filter).await.map(R::Routes),
        Op::AddNeighbour(entry) => done(neigh::add_neighbour(nl, &entry).await),
        Op::DeleteNeighbour { link, ip } => done(neigh::delete_neighbour(nl, &link, ip).await),
        Op::ListNeighbours { link } => neigh::list_neighbours(nl, link.as_deref())
            .await
            .map(R::Neighbours),
        Op::AddFdb(entry) => done(neigh::add_fdb(nl, &entry).await),
        Op::DeleteFdb(entry) => done(neigh::delete_fdb(nl, &entry).await),
        Op::ListFdb { link } => neigh::list_fdb(nl, link.as_deref()).await.map(R::Fdb),
        Op::ReadSysctl(key) => sysctl::read(&key).map(R::Sysctl),
        Op::WriteSysctl { key, value } => done(sysctl::write(&key, &value)),
        // nft runs as a child of this thread and so inherits its namespace.
        Op::NftApply { script } => done(nft::apply(nft_config, &script)),
        Op::NftReadTable(id) => nft::read_table(nft_config, &id).map(R::NftTable),
        Op::NftDeleteTable(id) => done(nft::delete_table(nft_config, &id)),
        Op::NftListTables => nft::list_tables(nft_config).map(R::NftTables),
        Op::DeleteConntrack { ip } => done(crate::conntrack::delete_flows(ip)),
    }
}
