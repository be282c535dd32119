//! The only crate in Twill that touches the kernel.
//!
//! # One chokepoint
//!
//! Every kernel operation — namespaces, links, addresses, routes,
//! neighbours, FDB entries, sysctls, nftables — is a [`KernelOp`] value
//! executed through [`Kernel::submit`]. There are two implementations:
//!
//! * [`NetlinkKernel`]: rtnetlink, `/proc/sys` and the `nft` binary.
//! * [`fake::RecordingKernel`]: records every op in order, keeps a small
//!   in-memory model so reads after writes agree, and fails chosen ops on
//!   request (to test rollback in callers).
//!
//! Callers use the typed convenience methods of [`KernelExt`] (`add_route`,
//! `create_veth`, ...), which only build ops and submit them. Many route
//! changes at once go as one [`KernelOp::ApplyRoutes`] (`apply_routes`):
//! the real backend pipelines them over netlink and answers per route (see
//! [`route_batch`]). `submit`
//! returns a [`Pending`] that daemons `.await` and the synchronous CNI
//! plugin `.wait()`s on.
//!
//! ```
//! use twill_kernel::fake::RecordingKernel;
//! use twill_kernel::{KernelExt, NetnsPath, Route, RouteFilter, RouteProto, VethSpec};
//!
//! let kernel = RecordingKernel::new();
//! let pod = NetnsPath::from_path("/var/run/netns/cni-1");
//! kernel.add_netns(&pod); // made by the container runtime
//! kernel.create_veth(VethSpec::new("tw5e1f", "eth0").peer_in(pod.clone())).wait()?;
//! kernel.set_link_up("tw5e1f", true).wait()?;
//! let route = Route::to_device("10.65.0.5/32".parse()?, "tw5e1f").protocol(RouteProto::TWILL_LOCAL);
//! kernel.add_route(route.clone()).wait()?;
//! // CNI DEL is idempotent: a missing interface is `NotFound`, not a failure.
//! kernel.delete_link("tw5e1f").wait()?;
//! assert!(kernel.delete_link("tw5e1f").wait().is_err_and(|e| e.is_not_found()));
//! // The veth's route went with it, as in the kernel.
//! assert!(kernel.list_routes(RouteFilter::protocol(RouteProto::TWILL_LOCAL)).wait()?.is_empty());
//! assert_eq!(kernel.writes()[0].name(), "create_veth");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads and namespaces
//!
//! `setns(2)` moves one thread, so a [`NetlinkKernel`] owns a worker thread
//! that enters its namespace once and then opens its netlink socket there,
//! opens `/proc/sys/net` files there (they show the opener's namespace) and
//! forks `nft` from there (children inherit the thread's namespace). Get a
//! kernel for another namespace with [`Kernel::enter`]. Named namespaces are
//! created like `ip netns add` (see [`netns`]).
//!
//! # Ownership markers
//!
//! Everything Twill puts in the kernel is recognisable as Twill's without
//! remembering it:
//!
//! * route protocols [`RouteProto::TWILL_LOCAL`] (201, pod routes),
//!   [`RouteProto::TWILL_BGP`] (202, BGP-learned) and
//!   [`RouteProto::TWILL_AGGREGATE`] (203, blackholes for owned blocks) —
//!   unused by the kernel, iproute2's `rt_protos`, and Calico (80);
//!   [`route::RT_PROTOS_CONF`] names them for `ip route`;
//! * host-side workload interfaces start with [`WORKLOAD_INTERFACE_PREFIX`]
//!   (`twl`); Twill's own devices start with `twill` ([`VXLAN_INTERFACE`]);
//! * the nftables table is [`NFT_TABLE`] in family `inet`.
//!
//! # Errors
//!
//! [`KernelError`] names the object (interface, route, namespace, table) and
//! carries the errno or nft's stderr. `NotFound` and `AlreadyExists` are
//! variants so idempotent callers can match on them.

pub mod addr;
mod backend;
pub mod conntrack;
pub mod error;
pub mod fake;
mod fake_nft;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod nft;
mod nl;
pub mod op;
pub mod route;
pub mod route_batch;
pub mod sysctl;
pub mod watch;

pub use addr::AddressEntry;
pub use backend::NetlinkKernel;
pub use error::{KernelError, KernelObject};
pub use link::{BridgeSpec, LinkInfo, MacAddr, VethSpec, VxlanIdentity, VxlanSpec};
pub use neigh::{FdbEntry, Neighbour};
pub use netns::NetnsPath;
pub use nft::{NftConfig, NftTable, NftTableId};
pub use op::{Kernel, KernelExt, KernelOp, KernelReply, Pending};
pub use route::{NextHop, Route, RouteFilter, RouteKey, RouteKind, RouteProto, RouteScope};
pub use route_batch::{RouteBatchReport, RouteChange, RouteFailure};
pub use sysctl::SysctlKey;

/// Prefix of host-side workload interfaces (`twl` + hex digits, 14
/// characters). Neither Twill's own devices (`twill…`) nor the test
/// harness's links ([`TEST_PREFIX`]) start with it, so a rule matching
/// `twl*` only ever sees workloads.
pub const WORKLOAD_INTERFACE_PREFIX: &str = "twl";

/// Name of Twill's VXLAN device (starts with `twill`, so it is recognisably
/// Twill's, and outside the workload prefix).
pub const VXLAN_INTERFACE: &str = "twill.vxlan";

/// Name of Twill's nftables table (family `inet`).
pub const NFT_TABLE: &str = "twill";

/// Prefix of namespaces and interfaces created by tests; a leak checker
/// looks for leftovers with this prefix.
pub const TEST_PREFIX: &str = "twt";
