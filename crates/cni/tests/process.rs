//! The binary's process contract without root: VERSION and bad input.

#![allow(clippy::unwrap_used)] // Test setup failures should panic loudly.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(vars: &[(&str, &str)], stdin: &str) -> (Value, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twill-cni"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        out.status.success(),
    )
}

#[test]
fn version_lists_the_supported_versions() {
    let (out, ok) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
    assert!(ok);
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(out["supportedVersions"].as_array().unwrap().len(), 5);
}

/// (what, environment, stdin, expected code)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u64);

#[test]
fn bad_input_exits_nonzero_with_the_spec_error_object() {
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    let cases: &[Case] = &[
        ("malformed stdin", &add, "{", 6),
        (
            "unsupported version",
            &add,
            r#"{"cniVersion":"9.9.9","name":"n","type":"twill-cni"}"#,
            1,
        ),
        (
            "unknown field",
            &add,
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni","x":1}"#,
            6,
        ),
        (
            "missing CNI_COMMAND",
            &[],
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni"}"#,
            4,
        ),
        (
            "missing CNI_NETNS",
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
            ],
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni"}"#,
            4,
        ),
    ];
    for (what, vars, stdin, code) in cases {
        let (out, ok) = run(vars, stdin);
        assert!(!ok, "{what}");
        assert_eq!(out["code"], *code, "{what}: {out}");
        assert!(out["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }
}
