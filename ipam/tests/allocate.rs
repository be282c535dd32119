//! Allocation and release, as specifications.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Fixture, labels};
use twill_api::ipam::BlockAffinityState;
use twill_api::ippool::{AssignmentMode, IPPoolAllowedUse};
use twill_ipam::{AllocateRequest, AssignIpRequest, IpamError, affinity};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn one(f: &Fixture, handle: &str, node: &str) -> Result<IpAddr, IpamError> {
    let got = f.ipam().allocate(&AllocateRequest::ipv4(handle, node))?;
    assert_eq!(got.len(), 1);
    Ok(got[0].ip)
}

#[test]
fn a_node_takes_addresses_from_its_own_confirmed_block_in_order() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let ipam = f.ipam();
    let a = ipam.allocate(&AllocateRequest::ipv4("h1", "n1")).unwrap();
    let b = ipam.allocate(&AllocateRequest::ipv4("h2", "n1")).unwrap();
    assert_eq!(a[0].block, b[0].block, "both from the node's one block");
    assert!(!a[0].borrowed);
    let block_start: ipnet::IpNet = a[0].block.parse().unwrap();
    assert_eq!(a[0].ip, block_start.network());
    let affinities = affinity::all(&*f.store).unwrap();
    assert_eq!(affinities.len(), 1);
    assert_eq!(
        affinities[0].object.spec.state,
        BlockAffinityState::Confirmed
    );
    assert_eq!(affinities[0].object.spec.node, "n1");
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn different_nodes_claim_different_blocks() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26)
        .node("n1", &[])
        .node("n2", &[]);
    let ipam = f.ipam();
    let a = ipam.allocate(&AllocateRequest::ipv4("h1", "n1")).unwrap();
    let b = ipam.allocate(&AllocateRequest::ipv4("h2", "n2")).unwrap();
    assert_ne!(a[0].block, b[0].block);
    assert_eq!(f.blocks().len(), 2);
}

#[test]
fn a_full_block_leads_to_a_new_claim_and_then_to_borrowing() {
    let f = Fixture::new();
    // Two /30 blocks of four addresses.
    f.pool("p", "10.0.0.0/29", 30)
        .node("n1", &[])
        .node("n2", &[]);
    for i in 0..4 {
        one(&f, &format!("a{i}"), "n1").unwrap();
    }
    // n2 claims the other block, fills it, then borrows nothing: n1's is full.
    for i in 0..4 {
        one(&f, &format!("b{i}"), "n2").unwrap();
    }
    let err = one(&f, "c", "n2").unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    // Free one of n1's; n2 borrows it once the cooldown has passed.
    let freed = f.ipam().release_handle("a0").unwrap();
    f.clock.advance(Duration::from_secs(30));
    let got = f
        .ipam()
        .allocate(&AllocateRequest::ipv4("c", "n2"))
        .unwrap();
    assert_eq!(got[0].ip, freed[0]);
    assert!(got[0].borrowed);
}

#[test]
fn strict_affinity_refuses_to_borrow() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/30", 30)
        .node("n1", &[])
        .node("n2", &[])
        .config(|c| c.strict_affinity = true);
    one(&f, "a", "n1").unwrap();
    let before = f.revision();
    let err = one(&f, "b", "n2").unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("strictAffinity"), "{err}");
    assert_eq!(f.revision(), before, "nothing written");
}

#[test]
fn the_per_host_block_limit_is_enforced_with_nothing_written() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 30).node("n1", &[]).config(|c| {
        c.strict_affinity = true;
        c.max_blocks_per_host = Some(1);
    });
    for i in 0..4 {
        one(&f, &format!("h{i}"), "n1").unwrap();
    }
    let before = f.revision();
    let err = one(&f, "h4", "n1").unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::BlockLimit {
                held: 1,
                limit: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("node n1"), "{err}");
    assert_eq!(f.revision(), before);
}

#[test]
fn an_exhausted_pool_is_refused_naming_the_pool_with_nothing_written() {
    let f = Fixture::new();
    f.pool("tiny", "10.9.0.0/30", 30).node("n1", &[]);
    for i in 0..4 {
        one(&f, &format!("h{i}"), "n1").unwrap();
    }
    let before = f.revision();
    let err = one(&f, "h4", "n1").unwrap_err();
    assert!(err.to_string().contains("tiny"), "{err}");
    assert!(err.is_refusal());
    assert_eq!(f.revision(), before);
    assert!(f.handle("h4").is_none());
}

/// (case, pools as (name, cidr, block size), words the error must contain)
type BadPoolCase = (
    &'static str,
    &'static [(&'static str, &'static str, i32)],
    &'static [&'static str],
);

#[test]
fn bad_pools_are_refused_naming_pool_and_field_with_nothing_written() {
    let cases: [BadPoolCase; 2] = [
        (
            "overlap",
            &[("a", "10.0.0.0/16", 26), ("b", "10.0.128.0/17", 26)],
            &["ip pool a (10.0.0.0/16) overlaps ip pool b (10.0.128.0/17)"],
        ),
        (
            "block too big",
            &[("small", "10.0.0.0/28", 26)],
            &["ip pool small", "spec.blockSize", "does not fit"],
        ),
    ];
    for (case, pools, words) in cases {
        let f = Fixture::new();
        f.node("n1", &[]);
        for (name, cidr, size) in pools {
            f.pool(name, cidr, *size);
        }
        let before = f.revision();
        let err = one(&f, "h", "n1").unwrap_err();
        for w in words {
            assert!(err.to_string().contains(w), "{case}: {err}");
        }
        assert_eq!(f.revision(), before, "{case}: nothing written");
    }
}

#[test]
fn a_specific_address_outside_every_pool_is_refused() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let err = f
        .ipam()
        .assign_ip(&AssignIpRequest {
            ip: ip("192.168.1.1"),
            handle: "h".into(),
            node: "n1".into(),
            usage: IPPoolAllowedUse::Workload,
            attributes: Default::default(),
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "ip 192.168.1.1 is not in any ip pool");
}

#[test]
fn a_specific_address_is_assigned_once_and_cools_down_after_release() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let request = |handle: &str| AssignIpRequest {
        ip: ip("10.0.0.70"),
        handle: handle.into(),
        node: "n1".into(),
        usage: IPPoolAllowedUse::Workload,
        attributes: Default::default(),
    };
    let got = f.ipam().assign_ip(&request("h1")).unwrap();
    assert_eq!(got.block, "10.0.0.64/26");
    let err = f.ipam().assign_ip(&request("h2")).unwrap_err();
    assert!(
        matches!(err, IpamError::InUse { ref handle, .. } if handle == "h1"),
        "{err}"
    );
    f.ipam()
        .release_ip(ip("10.0.0.70"), Some("h1"), None)
        .unwrap();
    let err = f.ipam().assign_ip(&request("h2")).unwrap_err();
    assert!(matches!(err, IpamError::CoolingDown { .. }), "{err}");
    f.clock.advance(Duration::from_secs(30));
    f.ipam().assign_ip(&request("h2")).unwrap();
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn reserved_addresses_are_never_handed_out() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26)
        .node("n1", &[])
        .reserve("gateways", &["10.0.0.0/31", "10.0.0.64/26"]);
    let first = one(&f, "h", "n1").unwrap();
    assert!(![ip("10.0.0.0"), ip("10.0.0.1")].contains(&first));
    let err = f
        .ipam()
        .assign_ip(&AssignIpRequest {
            ip: ip("10.0.0.1"),
            handle: "h2".into(),
            node: "n1".into(),
            usage: IPPoolAllowedUse::Workload,
            attributes: Default::default(),
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ip 10.0.0.1 is reserved by ipreservation gateways"
    );
    // The fully reserved block is never claimed.
    assert!(f.blocks().iter().all(|b| b.cidr != "10.0.0.64/26"));
}

#[test]
fn a_released_address_is_not_reused_before_the_cooldown_and_free_ones_go_first() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/30", 30).node("n1", &[]);
    let a = one(&f, "a", "n1").unwrap();
    f.ipam().release_handle("a").unwrap();
    // FIFO: the three never-used addresses come before the released one...
    let next: Vec<IpAddr> = (0..3)
        .map(|i| one(&f, &format!("b{i}"), "n1").unwrap())
        .collect();
    assert!(!next.contains(&a));
    // ...and the released one is not handed out while it cools down.
    assert!(matches!(
        one(&f, "c", "n1"),
        Err(IpamError::Exhausted { .. })
    ));
    f.clock.advance(Duration::from_secs(29));
    assert!(one(&f, "c", "n1").is_err());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(one(&f, "c", "n1").unwrap(), a);
}

#[test]
fn the_cooldown_is_configurable_down_to_zero() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/32", 32)
        .node("n1", &[])
        .config(|c| c.ip_cooldown_seconds = Some(0));
    let a = one(&f, "a", "n1").unwrap();
    f.ipam().release_handle("a").unwrap();
    assert_eq!(one(&f, "b", "n1").unwrap(), a);
}

#[test]
fn a_stale_release_cannot_free_a_reused_address() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/32", 32)
        .node("n1", &[])
        .config(|c| c.ip_cooldown_seconds = Some(0));
    let first = f
        .ipam()
        .allocate(&AllocateRequest::ipv4("a", "n1"))
        .unwrap();
    f.ipam().release_handle("a").unwrap();
    let second = f
        .ipam()
        .allocate(&AllocateRequest::ipv4("a", "n1"))
        .unwrap();
    assert_eq!(first[0].ip, second[0].ip);
    let err = f
        .ipam()
        .release_ip(first[0].ip, Some("a"), Some(first[0].sequence))
        .unwrap_err();
    assert!(matches!(err, IpamError::BadSequenceNumber { .. }), "{err}");
    assert_eq!(f.handle("a").unwrap().total(), 1, "still held");
    f.ipam()
        .release_ip(second[0].ip, Some("a"), Some(second[0].sequence))
        .unwrap();
    assert!(f.handle("a").is_none());
}

#[test]
fn releasing_twice_or_with_the_wrong_handle_frees_nothing_more() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let a = one(&f, "a", "n1").unwrap();
    let err = f.ipam().release_ip(a, Some("b"), None).unwrap_err();
    assert!(matches!(err, IpamError::WrongHandle { .. }), "{err}");
    assert_eq!(
        f.ipam().release_ip(a, None, None).unwrap(),
        Some("a".into())
    );
    assert_eq!(f.ipam().release_ip(a, None, None).unwrap(), None);
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn dual_stack_requests_get_one_address_per_family() {
    let f = Fixture::new();
    f.pool("v4", "10.0.0.0/24", 26)
        .pool("v6", "fd00::/120", 122)
        .node("n1", &[]);
    let mut request = AllocateRequest::ipv4("h", "n1");
    request.ipv6 = 1;
    let got = f.ipam().allocate(&request).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].ip.is_ipv4() && got[1].ip.is_ipv6());
    assert_eq!(got[1].pool, "v6");
    assert_eq!(f.handle("h").unwrap().total(), 2);
}

#[test]
fn a_dual_stack_half_success_is_undone() {
    let f = Fixture::new();
    f.pool("v4", "10.0.0.0/24", 26)
        .pool("v6", "fd00::/128", 128)
        .node("n1", &[]);
    let mut request = AllocateRequest::ipv4("first", "n1");
    request.ipv4 = 0;
    request.ipv6 = 1;
    f.ipam().allocate(&request).unwrap();
    let mut both = AllocateRequest::ipv4("h", "n1");
    both.ipv6 = 1;
    let err = f.ipam().allocate(&both).unwrap_err();
    assert!(
        matches!(err, IpamError::Exhausted { family: "IPv6", .. }),
        "{err}"
    );
    assert!(f.handle("h").is_none(), "the IPv4 address was given back");
    assert!(f.problems().is_empty(), "{:?}", f.problems());
}

#[test]
fn pools_are_chosen_by_node_and_namespace_selectors_use_and_mode() {
    let f = Fixture::new();
    f.pool_with("rack-a", "10.1.0.0/24", 26, |p| {
        p.node_selector = Some("rack == 'a'".into())
    })
    .pool_with("tenant", "10.2.0.0/24", 26, |p| {
        p.namespace_selector = Some("tenant == 'x'".into())
    })
    .pool_with("manual", "10.3.0.0/24", 26, |p| {
        p.assignment_mode = Some(AssignmentMode::Manual)
    })
    .pool_with("off", "10.4.0.0/24", 26, |p| p.disabled = true)
    .pool_with("lb", "10.5.0.0/24", 26, |p| {
        p.allowed_uses = vec![IPPoolAllowedUse::LoadBalancer]
    })
    .node("in-a", &[("rack", "a")])
    .node("in-b", &[("rack", "b")]);
    let pool_for = |node: &str, ns: Option<&[(&str, &str)]>| {
        let mut r = AllocateRequest::ipv4(format!("h-{node}-{ns:?}"), node);
        r.namespace_labels = ns.map(labels);
        f.ipam().allocate(&r).map(|got| got[0].pool.clone())
    };
    assert_eq!(
        pool_for("in-a", Some(&[("tenant", "y")])).unwrap(),
        "rack-a"
    );
    assert_eq!(
        pool_for("in-b", Some(&[("tenant", "x")])).unwrap(),
        "tenant"
    );
    let err = pool_for("in-b", Some(&[("tenant", "y")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no IPv4 ip pool is usable by node in-b for Workload"
    );
}

#[test]
fn requested_pools_by_name_or_cidr_are_used_or_refused() {
    let f = Fixture::new();
    f.pool("a", "10.1.0.0/24", 26)
        .pool_with("manual", "10.3.0.0/24", 26, |p| {
            p.assignment_mode = Some(AssignmentMode::Manual)
        })
        .pool_with("off", "10.4.0.0/24", 26, |p| p.disabled = true)
        .node("n1", &[]);
    let with = |pools: &[&str]| {
        let mut r = AllocateRequest::ipv4(format!("h-{}", pools[0].replace('/', "-")), "n1");
        r.ipv4_pools = pools.iter().map(|p| p.to_string()).collect();
        f.ipam().allocate(&r)
    };
    assert_eq!(with(&["manual"]).unwrap()[0].pool, "manual");
    assert_eq!(with(&["10.1.0.0/24"]).unwrap()[0].pool, "a");
    assert_eq!(
        with(&["nope"]).unwrap_err().to_string(),
        "ip pool nope: no such ip pool (by name or cidr)"
    );
    assert_eq!(
        with(&["off"]).unwrap_err().to_string(),
        "ip pool off: the pool is disabled"
    );
}

#[test]
fn ipv6_blocks_work_like_ipv4_ones() {
    let f = Fixture::new();
    f.pool("v6", "fd00:1::/120", 122).node("n1", &[]);
    let mut r = AllocateRequest::ipv4("h", "n1");
    r.ipv4 = 0;
    r.ipv6 = 3;
    let got = f.ipam().allocate(&r).unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|g| g.block.ends_with("/122")));
    assert_eq!(f.ipam().release_handle("h").unwrap().len(), 3);
}

#[test]
fn malformed_requests_are_refused() {
    let f = Fixture::new();
    f.pool("p", "10.0.0.0/24", 26).node("n1", &[]);
    let cases = [
        (AllocateRequest::ipv4("", "n1"), "field handle"),
        (AllocateRequest::ipv4("a/b", "n1"), "field handle"),
        (AllocateRequest::ipv4("h", ""), "field node"),
        (
            AllocateRequest {
                ipv4: 0,
                ..AllocateRequest::ipv4("h", "n1")
            },
            "asks for no address",
        ),
    ];
    for (request, words) in cases {
        let err = f.ipam().allocate(&request).unwrap_err();
        assert!(err.to_string().contains(words), "{request:?}: {err}");
    }
}

/// What the store holds before a claim of 10.0.0.0/26 by n1.
enum BeforeClaim {
    /// Neither the affinity nor the block.
    Nothing,
    /// n1's pending affinity, left by a claim that stopped half way.
    PendingAffinityOfTheClaimer,
    /// The block, affine to n2 (without an affinity document).
    BlockOfAnotherNode,
}

#[test]
fn a_claim_writes_affinity_and_block_in_one_transaction_and_recovers_half_done_claims() {
    use twill_api::Object;
    use twill_api::ipam::{BlockAffinitySpec, IPAMBlockSpec};
    use twill_ipam::{block::new_block, store};

    let net: ipnet::IpNet = "10.0.0.0/26".parse().unwrap();
    let name = store::affinity_name("n1", "10.0.0.0/26");
    let now = std::time::SystemTime::UNIX_EPOCH;
    // (case, whether n1 gets the block, revisions the claim writes: the
    // loser writes its pending affinity and deletes it)
    let cases = [
        (BeforeClaim::Nothing, true, 2),
        (BeforeClaim::PendingAffinityOfTheClaimer, true, 2),
        (BeforeClaim::BlockOfAnotherNode, false, 2),
    ];
    for (case, claimed, writes) in cases {
        let f = Fixture::new();
        f.pool("p", "10.0.0.0/24", 26)
            .node("n1", &[])
            .node("n2", &[]);
        match case {
            BeforeClaim::Nothing => {}
            BeforeClaim::PendingAffinityOfTheClaimer => {
                let pending = BlockAffinitySpec {
                    state: BlockAffinityState::Pending,
                    node: "n1".into(),
                    cidr: net.to_string(),
                    deleted: "false".into(),
                    type_: Some("host".into()),
                };
                store::create(&*f.store, &Object::new(name.as_str(), None, pending)).unwrap();
            }
            BeforeClaim::BlockOfAnotherNode => {
                let block = new_block(net, Some("n2"), now);
                let object = Object::new(store::cidr_name(&net.to_string()), None, block);
                store::create(&*f.store, &object).unwrap();
            }
        }
        let before = f.revision();
        let claim = affinity::claim(&*f.store, "n1", net, now).unwrap();
        assert_eq!(
            matches!(claim, affinity::Claim::Claimed(_)),
            claimed,
            "{claim:?}"
        );
        assert_eq!(f.revision().0 - before.0, writes, "revisions written");
        let affinity = store::get::<BlockAffinitySpec>(&*f.store, &name).unwrap();
        let block = store::get::<IPAMBlockSpec>(&*f.store, &store::cidr_name(&net.to_string()))
            .unwrap()
            .unwrap();
        if claimed {
            let affinity = affinity.expect("the claimer's affinity");
            assert_eq!(affinity.object.spec.state, BlockAffinityState::Confirmed);
            assert_eq!(block.object.spec.host(), Some("n1"));
        } else {
            assert!(affinity.is_none(), "no affinity is left for the loser");
            assert_eq!(block.object.spec.host(), Some("n2"));
        }
        if matches!(case, BeforeClaim::Nothing) {
            // Created together: consecutive revisions of one transaction, no
            // pending state ever stored.
            let affinity = store::get::<BlockAffinitySpec>(&*f.store, &name)
                .unwrap()
                .unwrap();
            assert_eq!(block.revision.0, affinity.revision.0 + 1);
        }
        assert!(f.problems().is_empty(), "{:?}", f.problems());
    }
}
