//! `twill node status` against a stand-in for the bgp-speaker's status socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Serves one status request on `listener` with `answer`; returns the
/// request line it read.
fn serve_once(listener: UnixListener, answer: String) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("twill connects");
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut request = String::new();
        reader.read_line(&mut request).expect("read the request");
        let mut writer = stream;
        writer
            .write_all(format!("{answer}\n").as_bytes())
            .expect("answer");
        request
    })
}

#[test]
fn node_status_prints_the_speakers_sessions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("bgp.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let status = serde_json::json!({
        "node": "node-1",
        "asn": 64512,
        "routerId": "192.0.2.10",
        "peers": [{
            "address": "192.0.2.1",
            "peerType": "global",
            "state": "Established",
            "since": 0,
            "info": "",
            "prefixesReceived": 3,
            "prefixesAccepted": 2,
            "prefixesAdvertised": 1,
        }],
    });
    // (extra arguments, what stdout must contain)
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["192.0.2.1", "global", "up", "Established"]),
        (
            &["--json"],
            &["\"routerId\": \"192.0.2.10\"", "\"prefixesReceived\": 3"],
        ),
    ];
    let mut listener = Some(listener);
    for (extra, expected) in cases {
        let this = listener.take().expect("listener");
        let again = this.try_clone().expect("clone listener");
        let server = serve_once(this, status.to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_twill"))
            .args(["node", "status", "--socket"])
            .arg(&socket)
            .args(*extra)
            .output()
            .expect("twill runs");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(server.join().expect("server").trim(), "status");
        let stdout = text(&out.stdout);
        for want in *expected {
            assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
        }
        listener = Some(again);
    }
}

#[test]
fn node_status_without_a_speaker_names_the_socket_and_exits_5() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("absent.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(["node", "status", "--socket"])
        .arg(&socket)
        .output()
        .expect("twill runs");
    assert_eq!(out.status.code(), Some(5));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("absent.sock"), "{stderr}");
    assert!(stderr.contains("bgp-speaker running"), "{stderr}");
}
