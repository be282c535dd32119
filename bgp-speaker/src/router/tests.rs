//! Specification of the router's owner task, sans I/O: session messages in,
//! commands for the sessions and kernel jobs out. Covers the selection
//! deferral after a restart (RFC 4724 §4.1) and import-policy changes.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;

use super::kernel::KernelJob;
use super::*;
use crate::config::MatchOperator;
use crate::fsm::{Negotiated, PeerGracefulRestart};
use crate::packet::{DecodeOptions, Message, decode};
use crate::rib::wire::encode_announce;
use crate::speaker::Credit;

const OUR_AS: u32 = 64512;
const PEER_AS: u32 = 65001;
const OWN_BLOCK: &str = "10.65.0.0/26";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// An owner task's state with recorders for its outputs.
struct Harness {
    owner: Owner,
    commands: mpsc::UnboundedReceiver<Command>,
    kernel: mpsc::UnboundedReceiver<KernelJob>,
    // Timers send here; kept so that their sends do not fail.
    _timers: mpsc::UnboundedReceiver<RouterMsg>,
    _router: mpsc::UnboundedSender<RouterMsg>,
}

/// What the owner asked the sessions to send to one peer, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Announce(IpNet),
    Withdraw(IpNet),
    EndOfRib(Family),
}

/// Kernel route changes: prefix with next hops (none: removed).
type KernelChanges = Vec<(IpNet, Vec<IpAddr>)>;

/// What the owner did, in order.
#[derive(Debug, Default)]
struct Output {
    sent: Vec<(IpAddr, Sent)>,
    kernel: KernelChanges,
    /// Start-up sweeps, with the prefixes they keep.
    sweeps: Vec<BTreeSet<IpNet>>,
    /// Sessions started or stopped.
    session_commands: Vec<String>,
}

impl Output {
    fn to(&self, peer: &str) -> Vec<Sent> {
        self.sent
            .iter()
            .filter(|(p, _)| *p == ip(peer))
            .map(|(_, s)| s.clone())
            .collect()
    }
}

fn decode_all(mut bytes: &[u8]) -> Vec<Sent> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (message, used) = decode(bytes, &DecodeOptions::default())
            .expect("the router encodes valid messages")
            .expect("the router sends whole messages");
        bytes = &bytes[used..];
        let Message::Update(update) = message else {
            panic!("only UPDATEs are sent through SendUpdate: {message:?}");
        };
        if let Some(family) = update.end_of_rib() {
            out.push(Sent::EndOfRib(family));
            continue;
        }
        out.extend(
            update
                .withdrawn_v4()
                .into_iter()
                .map(|p| Sent::Withdraw(p.into())),
        );
        out.extend(
            update
                .announced_v4()
                .into_iter()
                .map(|p| Sent::Announce(p.into())),
        );
    }
    out
}

impl Harness {
    fn new(graceful_restart: bool) -> Self {
        let (router, timers) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (kernel_tx, kernel) = mpsc::unbounded_channel();
        let config = RouterConfig {
            asn: OUR_AS,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            cluster_id: None,
            kernel: None,
            graceful_restart_time: graceful_restart.then_some(Duration::from_secs(120)),
            stale_sweep_after: Duration::from_secs(120),
        };
        let mut owner = Owner::new(
            config,
            SpeakerLink::Recorder(commands_tx),
            router.downgrade(),
            Some(kernel_tx),
        );
        owner.handle(RouterMsg::SetOriginated(vec![Originated {
            prefix: net(OWN_BLOCK),
            communities: Vec::new(),
            large_communities: Vec::new(),
        }]));
        owner.process();
        Self {
            owner,
            commands,
            kernel,
            _timers: timers,
            _router: router,
        }
    }

    /// A message from the sessions, followed by the decision run the owner
    /// task makes after every batch.
    fn session(&mut self, msg: RibMsg) {
        self.owner.session(msg);
        self.owner.process();
    }

    fn handle(&mut self, msg: RouterMsg) {
        assert!(self.owner.handle(msg).is_none(), "the router does not stop");
        self.owner.process();
    }

    fn set_neighbors(&mut self, neighbors: Vec<Neighbor>) {
        self.handle(RouterMsg::SetNeighbors(neighbors));
    }

    fn up(&mut self, peer: &str, graceful_restart: Option<bool>) {
        let negotiated = Negotiated {
            peer_as: PEER_AS,
            peer_id: match ip(peer) {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::new(192, 0, 2, 99),
            },
            hold_time: Duration::from_secs(90),
            keepalive: Duration::from_secs(30),
            four_octet_as: true,
            families: [Family::Ipv4Unicast].into(),
            route_refresh: true,
            graceful_restart: graceful_restart.map(|restarting| PeerGracefulRestart {
                restarting,
                restart_time: Duration::from_secs(120),
                forwarding_preserved: [Family::Ipv4Unicast].into(),
                families: [Family::Ipv4Unicast].into(),
            }),
        };
        self.session(RibMsg::Up {
            peer: ip(peer),
            negotiated: Box::new(negotiated),
            local: Some(SocketAddr::new(ip("192.0.2.1"), 179)),
        });
    }

    fn announce(&mut self, peer: &str, prefix: &str) {
        let mut attrs = Attrs::local(Vec::new(), Vec::new());
        attrs.as_path = vec![PEER_AS];
        attrs.as_path_len = 1;
        attrs.next_hop = Some(ip(peer));
        let mut messages = Vec::new();
        encode_announce(
            Family::Ipv4Unicast,
            &attrs,
            &[net(prefix)],
            true,
            &mut messages,
        );
        for bytes in messages {
            self.receive(peer, &bytes);
        }
    }

    fn end_of_rib(&mut self, peer: &str) {
        let bytes = encode_end_of_rib(Family::Ipv4Unicast).unwrap();
        self.receive(peer, &bytes);
    }

    fn receive(&mut self, peer: &str, bytes: &[u8]) {
        let (message, _) = decode(bytes, &DecodeOptions::default()).unwrap().unwrap();
        let Message::Update(update) = message else {
            panic!("not an UPDATE");
        };
        self.session(RibMsg::Update {
            peer: ip(peer),
            update: Box::new(update),
        });
    }

    /// Everything the owner did since the last call.
    fn output(&mut self) -> Output {
        let mut out = Output::default();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::SendUpdate { peer, message } => {
                    out.sent
                        .extend(decode_all(&message).into_iter().map(|s| (peer, s)));
                }
                Command::AddPeer(spec) => {
                    out.session_commands.push(format!("add {}", spec.address))
                }
                Command::RemovePeer(peer) => out.session_commands.push(format!("remove {peer}")),
                Command::SetPassword { .. } | Command::Status(_) | Command::Details(_) => {}
            }
        }
        while let Ok(job) = self.kernel.try_recv() {
            match job {
                KernelJob::Changes(changes) => out
                    .kernel
                    .extend(changes.into_iter().map(|c| (c.prefix, c.next_hops))),
                KernelJob::Sweep(wanted) => out.sweeps.push(wanted.into_iter().collect()),
            }
        }
        out
    }
}

fn neighbor(address: &str) -> Neighbor {
    let mut n = Neighbor::new(ip(address), PEER_AS);
    n.local_address = Some(ip("192.0.2.1"));
    n
}

fn announce(prefix: &str) -> Sent {
    Sent::Announce(net(prefix))
}

const EOR: Sent = Sent::EndOfRib(Family::Ipv4Unicast);

#[tokio::test]
async fn deferred_selection_sends_and_installs_nothing_before_the_last_end_of_rib() {
    let mut h = Harness::new(true);
    h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.2")]);
    h.output();

    h.up("198.51.100.1", Some(false));
    h.announce("198.51.100.1", "10.70.0.0/24");
    h.end_of_rib("198.51.100.1");
    h.up("198.51.100.2", Some(false));
    h.announce("198.51.100.2", "10.80.0.0/24");
    let before = h.output();
    assert!(
        before.sent.is_empty(),
        "no UPDATE while deferring: {before:?}"
    );
    assert!(
        before.kernel.is_empty(),
        "no kernel write while deferring: {before:?}"
    );
    assert!(
        before.sweeps.is_empty(),
        "no sweep while deferring: {before:?}"
    );
    assert!(h.owner.stats.selection_deferred);

    h.end_of_rib("198.51.100.2");
    let after = h.output();
    assert!(!h.owner.stats.selection_deferred);
    let mut kernel = after.kernel.clone();
    kernel.sort();
    assert_eq!(
        kernel,
        vec![
            (net("10.70.0.0/24"), vec![ip("198.51.100.1")]),
            (net("10.80.0.0/24"), vec![ip("198.51.100.2")]),
        ]
    );
    assert_eq!(
        after.sweeps,
        vec![[net("10.70.0.0/24"), net("10.80.0.0/24")].into()],
        "the start-up sweep keeps what the first pass installed"
    );
    for (peer, learned_elsewhere) in [
        ("198.51.100.1", "10.80.0.0/24"),
        ("198.51.100.2", "10.70.0.0/24"),
    ] {
        let sent = h_sorted(after.to(peer));
        assert_eq!(
            sent,
            vec![announce(OWN_BLOCK), announce(learned_elsewhere), EOR],
            "{peer} gets the whole table, then End-of-RIB"
        );
    }
}

/// Announcements sorted, End-of-RIB kept last (it must be last).
fn h_sorted(mut sent: Vec<Sent>) -> Vec<Sent> {
    let eor_at = sent.iter().position(|s| matches!(s, Sent::EndOfRib(_)));
    if let Some(at) = eor_at {
        assert_eq!(at, sent.len() - 1, "End-of-RIB comes last: {sent:?}");
    }
    let tail = eor_at.map(|at| sent.split_off(at)).unwrap_or_default();
    sent.sort_by_key(|s| format!("{s:?}"));
    sent.extend(tail);
    sent
}

#[tokio::test]
async fn deferral_timer_ends_the_wait_for_a_peer_that_never_comes_up() {
    let mut h = Harness::new(true);
    h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.9")]);
    h.up("198.51.100.1", Some(false));
    h.announce("198.51.100.1", "10.70.0.0/24");
    h.end_of_rib("198.51.100.1");
    let before = h.output();
    assert!(
        before.sent.is_empty() && before.kernel.is_empty(),
        "{before:?}"
    );

    h.handle(RouterMsg::SweepTimer);
    let after = h.output();
    assert_eq!(
        after.kernel,
        vec![(net("10.70.0.0/24"), vec![ip("198.51.100.1")])]
    );
    assert_eq!(after.sweeps.len(), 1, "the timer also runs the sweep");
    assert_eq!(
        h_sorted(after.to("198.51.100.1")),
        vec![announce(OWN_BLOCK), EOR]
    );
    assert!(after.to("198.51.100.9").is_empty());

    // A peer that comes up afterwards gets the table at once.
    h.up("198.51.100.9", Some(false));
    assert_eq!(
        h_sorted(h.output().to("198.51.100.9")),
        vec![announce(OWN_BLOCK), announce("10.70.0.0/24"), EOR]
    );
}

#[tokio::test]
async fn peers_without_graceful_restart_or_restarting_themselves_are_not_waited_for() {
    // (peer A's capability, peer B's capability): None = not announced,
    // Some(true) = Restart State bit set.
    let cases = [(None, None), (None, Some(true)), (Some(true), Some(true))];
    for (a, b) in cases {
        let mut h = Harness::new(true);
        h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.2")]);
        h.up("198.51.100.1", a);
        assert!(
            h.output().sent.is_empty(),
            "{a:?}/{b:?}: one peer still down"
        );
        h.up("198.51.100.2", b);
        let out = h.output();
        assert_eq!(
            h_sorted(out.to("198.51.100.1")),
            vec![announce(OWN_BLOCK), EOR],
            "{a:?}/{b:?}"
        );
        assert_eq!(
            h_sorted(out.to("198.51.100.2")),
            vec![announce(OWN_BLOCK), EOR],
            "{a:?}/{b:?}"
        );
    }
}

#[tokio::test]
async fn a_graceful_restart_peer_is_waited_for_even_when_another_is_not() {
    let mut h = Harness::new(true);
    h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.2")]);
    h.up("198.51.100.1", None);
    h.up("198.51.100.2", Some(false));
    assert!(
        h.output().sent.is_empty(),
        "198.51.100.2 has not sent End-of-RIB"
    );
    h.end_of_rib("198.51.100.2");
    assert_eq!(
        h_sorted(h.output().to("198.51.100.1")),
        vec![announce(OWN_BLOCK), EOR]
    );
}

#[tokio::test]
async fn route_refresh_while_deferring_is_answered_by_the_table_at_the_end() {
    let mut h = Harness::new(true);
    h.set_neighbors(vec![neighbor("198.51.100.1")]);
    h.up("198.51.100.1", Some(false));
    h.session(RibMsg::RouteRefresh {
        peer: ip("198.51.100.1"),
        family: Family::Ipv4Unicast,
    });
    assert!(h.output().sent.is_empty());
    h.end_of_rib("198.51.100.1");
    assert_eq!(
        h_sorted(h.output().to("198.51.100.1")),
        vec![announce(OWN_BLOCK), EOR],
        "the table goes out once"
    );
}

#[tokio::test]
async fn without_graceful_restart_each_session_gets_the_table_at_once() {
    let mut h = Harness::new(false);
    h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.2")]);
    h.up("198.51.100.1", Some(false));
    assert!(!h.owner.stats.selection_deferred);
    assert_eq!(
        h_sorted(h.output().to("198.51.100.1")),
        vec![announce(OWN_BLOCK), EOR]
    );
    h.announce("198.51.100.1", "10.70.0.0/24");
    let out = h.output();
    assert_eq!(
        out.kernel,
        vec![(net("10.70.0.0/24"), vec![ip("198.51.100.1")])]
    );
    assert!(out.sweeps.is_empty(), "198.51.100.2 is not up yet");
}

/// The decoded UPDATEs announcing `prefixes` from `peer`, then the
/// withdrawal of the first, then End-of-RIB.
fn feed(peer: &str, prefixes: &[&str]) -> Vec<Update> {
    let mut attrs = Attrs::local(Vec::new(), Vec::new());
    attrs.as_path = vec![PEER_AS];
    attrs.as_path_len = 1;
    attrs.next_hop = Some(ip(peer));
    let nets: Vec<IpNet> = prefixes.iter().map(|p| net(p)).collect();
    let mut messages = Vec::new();
    for prefix in &nets {
        encode_announce(Family::Ipv4Unicast, &attrs, &[*prefix], true, &mut messages);
    }
    crate::rib::wire::encode_withdraw(Family::Ipv4Unicast, &nets[..1], &mut messages);
    messages.push(encode_end_of_rib(Family::Ipv4Unicast).unwrap());
    messages
        .iter()
        .map(
            |bytes| match decode(bytes, &DecodeOptions::default()).unwrap() {
                Some((Message::Update(update), _)) => update,
                other => panic!("not an UPDATE: {other:?}"),
            },
        )
        .collect()
}

#[tokio::test]
async fn a_batch_of_updates_is_applied_like_the_same_updates_one_at_a_time() {
    let peer = "198.51.100.1";
    let prefixes = ["10.70.0.0/24", "10.70.1.0/24", "10.70.2.0/24"];
    let mut one_by_one = Harness::new(false);
    let mut batched = Harness::new(false);
    for h in [&mut one_by_one, &mut batched] {
        h.set_neighbors(vec![neighbor(peer)]);
        h.up(peer, Some(false));
        h.output();
    }
    for update in feed(peer, &prefixes) {
        one_by_one.session(RibMsg::Update {
            peer: ip(peer),
            update: Box::new(update),
        });
    }
    batched.session(RibMsg::Updates {
        peer: ip(peer),
        updates: feed(peer, &prefixes),
        credit: Credit::default(),
    });

    // One decision run for the batch instead of one per UPDATE: the same
    // end state, without the short-lived announcement of 10.70.0.0/24.
    let installed = |h: &mut Harness| {
        let mut fib = BTreeMap::new();
        for (prefix, hops) in h.output().kernel {
            fib.insert(prefix, hops);
        }
        fib.retain(|_, hops| !hops.is_empty());
        fib
    };
    let expected = installed(&mut one_by_one);
    assert_eq!(installed(&mut batched), expected);
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        vec![net("10.70.1.0/24"), net("10.70.2.0/24")]
    );
    assert_eq!(batched.owner.loc_rib(), one_by_one.owner.loc_rib());
    assert_eq!(batched.owner.stats.updates_in, 5);
    assert_eq!(
        batched.owner.stats.updates_in,
        one_by_one.owner.stats.updates_in
    );
    let received = &batched.owner.peers[&ip(peer)].end_of_rib;
    assert!(received.contains(&Family::Ipv4Unicast));
}

fn reject(prefix: &str) -> Filter {
    let mut rule = FilterRule::new(true, FilterAction::Reject);
    rule.cidr = Some((net(prefix), MatchOperator::Equal));
    Filter { rules: vec![rule] }
}

#[tokio::test]
async fn an_import_filter_change_refilters_kept_routes_without_touching_the_session() {
    let mut h = Harness::new(false);
    h.set_neighbors(vec![neighbor("198.51.100.1"), neighbor("198.51.100.2")]);
    h.up("198.51.100.1", None);
    h.up("198.51.100.2", None);
    h.announce("198.51.100.1", "10.70.0.0/24");
    h.announce("198.51.100.1", "10.71.0.0/24");
    h.output();

    // (import filter of 198.51.100.1, kernel changes, what 198.51.100.2 is sent)
    let steps: [(Filter, KernelChanges, Vec<Sent>); 3] = [
        (
            reject("10.70.0.0/24"),
            vec![(net("10.70.0.0/24"), vec![])],
            vec![Sent::Withdraw(net("10.70.0.0/24"))],
        ),
        (
            reject("10.71.0.0/24"),
            vec![
                (net("10.70.0.0/24"), vec![ip("198.51.100.1")]),
                (net("10.71.0.0/24"), vec![]),
            ],
            vec![
                Sent::Withdraw(net("10.71.0.0/24")),
                announce("10.70.0.0/24"),
            ],
        ),
        (
            Filter::default(),
            vec![(net("10.71.0.0/24"), vec![ip("198.51.100.1")])],
            vec![announce("10.71.0.0/24")],
        ),
    ];
    for (import, kernel, sent) in steps {
        let mut changed = neighbor("198.51.100.1");
        changed.import = import.clone();
        h.set_neighbors(vec![changed, neighbor("198.51.100.2")]);
        let mut out = h.output();
        assert!(
            out.session_commands.is_empty(),
            "an import change keeps the session: {:?}",
            out.session_commands
        );
        out.kernel.sort();
        assert_eq!(out.kernel, kernel, "{import:?}");
        assert_eq!(out.to("198.51.100.2"), sent, "{import:?}");
        assert!(out.to("198.51.100.1").is_empty(), "{import:?}");
    }
}

#[tokio::test]
async fn a_session_setting_change_restarts_the_session() {
    let mut h = Harness::new(false);
    h.set_neighbors(vec![neighbor("198.51.100.1")]);
    h.output();
    let mut changed = neighbor("198.51.100.1");
    changed.hold = Duration::from_secs(30);
    h.set_neighbors(vec![changed]);
    assert_eq!(
        h.output().session_commands,
        vec![
            "remove 198.51.100.1".to_string(),
            "add 198.51.100.1".to_string()
        ]
    );
}

#[test]
fn output_decoding_reads_back_what_the_rib_encodes() {
    let mut attrs = Attrs::local(Vec::new(), Vec::new());
    attrs.next_hop = Some(ip("192.0.2.1"));
    let mut messages = Vec::new();
    encode_announce(
        Family::Ipv4Unicast,
        &attrs,
        &[net("10.1.0.0/24")],
        true,
        &mut messages,
    );
    messages.push(encode_end_of_rib(Family::Ipv4Unicast).unwrap());
    let bytes: Vec<u8> = messages.concat();
    assert_eq!(decode_all(&bytes), vec![announce("10.1.0.0/24"), EOR]);
}
