//! Twill's BGP speaker: the protocol core.
//!
//! * [`packet`] — the BGP-4 wire format over `netgauze-bgp-pkt`: framing,
//!   typed decoding, RFC 4271 §6 NOTIFICATIONs for every decode error, RFC 7606
//!   UPDATE error handling, and encoders for every message Twill sends.
//! * [`fsm`] — the RFC 4271 §8 state machine of one connection, sans I/O: events
//!   in, actions out; timers are named and sized by the FSM, run by the caller.
//!
//! * [`speaker`] — the tokio runner: one task owns every peer's FSM, socket
//!   and timer tasks exchange typed messages with it, and the RIB (not in this
//!   crate yet) receives session and UPDATE messages; it never touches the kernel:
//!
//! ```text
//!   socket reader (per connection) --PeerMsg::Received(Message)--+
//!   socket writer (per connection) <--bytes------------------+    |
//!                                                            |    v
//!   timers (tokio::time) --PeerMsg::Timer(Timer)------> +-----------------+
//!   listener --PeerMsg::Accepted(TcpStream)-----------> | session task:   |
//!   config watcher --PeerMsg::Start/Stop--------------> | Session per peer|
//!                                                       | fsm_event()     |
//!                                                       +-----------------+
//!                                                          | SessionUp/Down, Deliver
//!                                                          v
//!                                                       RIB task --> routes --> kernel
//! ```
//!
//! FSM states (see [`fsm`] for the transitions):
//!
//! ```text
//!   Idle -> Connect/Active -> OpenSent -> OpenConfirm -> Established
//!     ^__________________________|____________|_____________|  (errors)
//! ```

pub mod fsm;
pub mod packet;
pub mod speaker;
