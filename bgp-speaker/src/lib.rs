//! Twill's BGP speaker: a native BGP daemon configured from the datastore.
//!
//! * [`packet`] — the BGP-4 wire format over `netgauze-bgp-pkt`: framing,
//!   typed decoding, RFC 4271 §6 NOTIFICATIONs for every decode error, RFC 7606
//!   UPDATE error handling, and encoders for every message Twill sends.
//! * [`fsm`] — the RFC 4271 §8 state machine of one connection, sans I/O: events
//!   in, actions out; timers are named and sized by the FSM, run by the caller.
//! * [`speaker`] — the tokio runner: one task owns every peer's FSM; socket
//!   and timer tasks exchange typed messages with it; session and UPDATE
//!   events go to the RIB as [`speaker::RibMsg`].
//! * [`rib`] — pure Adj-RIB-In / Loc-RIB / Adj-RIB-Out: the RFC 4271 §9.1
//!   decision process, iBGP/eBGP export rules, route reflection (RFC 4456),
//!   ECMP, graceful-restart stale paths, import/export filters.
//! * [`router`] — the tokio glue of one address family: a speaker plus a RIB,
//!   learned routes installed in the kernel (route protocol 202), start-up
//!   sweep of stale routes, graceful restart (RFC 4724), route refresh.
//! * [`config`] — pure: Calico's BGPConfiguration, BGPPeer, Node, BGPFilter,
//!   IPPool and IPAM block affinities → the neighbours and prefixes of this
//!   node, with Calico's semantics (mesh, route reflectors, peer selectors,
//!   what is and is not exported).
//! * [`daemon`] — list-watches → one owner task → the IPv4 and IPv6 routers
//!   and the blackhole routes of this node's blocks (protocol 203); health
//!   and Prometheus metrics.
//! * [`status`] — `twill node status` over a unix socket; [`sockopt`] — TCP MD5
//!   (RFC 2385) keys and the GTSM minimum TTL (RFC 5082) on sockets.
//!
//! ```text
//!   datastore list-watches --> daemon owner task --config::desired()--+
//!                                                                     v
//!   peers <--TCP--> speaker (FSM per peer) <--RibMsg / Command--> router (RIB)
//!                                                                     |
//!                                             learned routes (202) -> kernel
//! ```
//!
//! FSM states (see [`fsm`] for the transitions):
//!
//! ```text
//!   Idle -> Connect/Active -> OpenSent -> OpenConfirm -> Established
//!     ^__________________________|____________|_____________|  (errors)
//! ```

pub mod config;
pub mod daemon;
pub mod fsm;
pub mod packet;
pub mod rib;
pub mod router;
pub mod sockopt;
pub mod speaker;
pub mod status;
