//! Specification of batch encoding and of matching the kernel's answers to
//! the changes of a batch.

use super::*;
use crate::route::{RouteProto, TABLE_MAIN};
use ipnet::IpNet;
use rtnetlink::packet_core::NetlinkPayload;

fn net(s: &str) -> IpNet {
    s.parse().expect("valid prefix")
}

fn replace(dest: &str) -> RouteChange {
    RouteChange::Replace(
        Route::via(net(dest), "10.0.0.2".parse().expect("ip")).protocol(RouteProto::TWILL_BGP),
    )
}

fn delete(dest: &str) -> RouteChange {
    RouteChange::Delete(RouteKey {
        destination: net(dest),
        table: TABLE_MAIN,
        metric: None,
        protocol: Some(RouteProto::TWILL_BGP),
    })
}

fn chunk_of(changes: &[RouteChange], first_seq: u32) -> Chunk {
    let mut chunk = Chunk::new(first_seq);
    for (index, change) in changes.iter().enumerate() {
        chunk.push(
            index,
            request(change, &BTreeMap::new()).expect("encodable change"),
        );
    }
    chunk.ack_last();
    chunk
}

/// The requests in a chunk buffer, decoded back.
fn decode_all(buf: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let message =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..]).expect("decodes");
        at += message.header.length as usize;
        out.push(message);
    }
    out
}

/// An NLMSG_ERROR answer as the kernel writes it (payload capped).
fn answer(seq: u32, errno: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&36u32.to_ne_bytes());
    out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&4242u32.to_ne_bytes());
    out.extend_from_slice(&(-errno).to_ne_bytes());
    // The original request's header (capped acknowledgement).
    out.extend_from_slice(&[0u8; 16]);
    out
}

#[test]
fn chunk_numbers_requests_in_order_and_asks_an_ack_only_of_the_last() {
    let changes = [
        replace("10.1.0.0/24"),
        delete("10.2.0.0/24"),
        replace("10.3.0.0/24"),
    ];
    let chunk = chunk_of(&changes, 41);
    let messages = decode_all(&chunk.buf);
    assert_eq!(messages.len(), 3);
    let seqs: Vec<u32> = messages.iter().map(|m| m.header.sequence_number).collect();
    assert_eq!(seqs, [41, 42, 43]);
    let acked: Vec<bool> = messages
        .iter()
        .map(|m| m.header.flags & NLM_F_ACK != 0)
        .collect();
    assert_eq!(acked, [false, false, true]);
    assert!(matches!(
        messages[0].payload,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(_))
    ));
    assert_eq!(messages[0].header.flags & REPLACE_FLAGS, REPLACE_FLAGS);
    assert!(matches!(
        messages[1].payload,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(_))
    ));
    assert_eq!(messages[1].header.flags, DELETE_FLAGS);
    assert_eq!(chunk.last_seq(), 43);
}

#[test]
fn sequence_numbers_wrap_around_within_a_chunk() {
    let changes = [replace("10.1.0.0/24"), replace("10.2.0.0/24")];
    let chunk = chunk_of(&changes, u32::MAX);
    assert_eq!(chunk.entry(u32::MAX), Some(0));
    assert_eq!(chunk.entry(0), Some(1));
    assert_eq!(chunk.entry(1), None);
    assert_eq!(chunk.last_seq(), 0);
}

#[test]
fn answers_are_read_from_a_datagram_of_several_messages() {
    let mut datagram = answer(7, 0);
    datagram.extend(answer(8, libc_enetunreach()));
    // A truncated trailing message is ignored.
    datagram.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        answers(&datagram),
        [
            Answer {
                seq: 7,
                errno: None
            },
            Answer {
                seq: 8,
                errno: Some(Errno::ENETUNREACH)
            }
        ]
    );
}

fn libc_enetunreach() -> i32 {
    Errno::ENETUNREACH as i32
}

#[test]
fn refusals_are_matched_to_their_change_and_typed_by_operation() {
    let changes = [
        replace("10.1.0.0/24"),
        delete("10.2.0.0/24"),
        replace("10.3.0.0/24"),
        delete("10.4.0.0/24"),
    ];
    let chunk = chunk_of(&changes, 100);
    let mut failed = Vec::new();
    // NACKs for the first replace and the last delete, then the last ACK
    // (its error) ends the chunk; an answer of an earlier chunk is ignored.
    let stale = answers(&answer(99, Errno::EEXIST as i32));
    assert!(!settle(&chunk, &stale, &changes, &mut failed));
    let first = answers(&answer(100, Errno::ENETUNREACH as i32));
    assert!(!settle(&chunk, &first, &changes, &mut failed));
    let last = answers(&answer(103, Errno::ESRCH as i32));
    assert!(settle(&chunk, &last, &changes, &mut failed));
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].index, 0);
    assert_eq!(
        failed[0].error.to_string(),
        "route 10.1.0.0/24 table 254: netlink replace failed: ENETUNREACH: Network is unreachable"
    );
    assert_eq!(failed[1].index, 3);
    assert!(failed[1].error.is_not_found(), "{}", failed[1].error);
}

#[test]
fn acknowledgement_of_the_last_request_ends_a_chunk_without_failures() {
    let changes = [replace("10.1.0.0/24"), replace("10.2.0.0/24")];
    let chunk = chunk_of(&changes, 5);
    let mut failed = Vec::new();
    assert!(!settle(
        &chunk,
        &answers(&answer(5, 0)),
        &changes,
        &mut failed
    ));
    assert!(settle(
        &chunk,
        &answers(&answer(6, 0)),
        &changes,
        &mut failed
    ));
    assert!(failed.is_empty());
}

#[test]
fn a_route_that_cannot_be_encoded_fails_alone_before_anything_is_sent() {
    let bad = RouteChange::Replace(Route {
        next_hops: Vec::new(),
        ..Route::via(net("10.9.0.0/24"), "10.0.0.2".parse().expect("ip"))
    });
    let err = request(&bad, &BTreeMap::new()).expect_err("unicast without next hop");
    assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
    let missing = RouteChange::Replace(Route::to_device(net("10.9.0.0/24"), "nosuchdev"));
    let err = request(&missing, &BTreeMap::new()).expect_err("unknown device");
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn spreading_keeps_every_change_and_separates_counting_neighbours() {
    let mut changes: Vec<RouteChange> = (0..8u32)
        .map(|i| replace(&format!("10.1.{i}.0/24")))
        .chain([delete("fd00:1::/64"), delete("10.0.0.0/8")])
        .collect();
    let before = changes.clone();
    spread(&mut changes);
    let order: Vec<String> = changes
        .iter()
        .map(|c| c.destination().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "10.0.0.0/8",
            "10.1.0.0/24",
            "10.1.4.0/24",
            "10.1.2.0/24",
            "10.1.6.0/24",
            "10.1.1.0/24",
            "10.1.5.0/24",
            "10.1.3.0/24",
            "10.1.7.0/24",
            "fd00:1::/64",
        ]
    );
    for change in &before {
        assert!(changes.contains(change), "{change:?} kept");
    }
}
