//! `twill` as a user runs it: the binary, its output and its exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn twill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(args)
        .output()
        .expect("twill runs")
}

fn twill_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("twill runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts the manifest");
    child.wait_with_output().expect("twill finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    root.join(path).display().to_string()
}

#[test]
fn validate_prints_ok_for_every_resource_of_valid_files() {
    let pool = example("manifests/00-pool-and-bgp.yaml");
    let policy = example("manifests/10-three-tier-policy.yaml");
    let out = twill(&["validate", "-f", &pool, &policy]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "ok IPPool/default-ipv4-ippool",
        "ok BGPConfiguration/default",
        "ok BGPPeer/rack1-tor",
        "ok GlobalNetworkPolicy/default-deny-app-namespaces",
        "ok NetworkPolicy/frontend-to-backend (namespace frontend)",
        "ok NetworkPolicy.networking.k8s.io/backend-from-frontend (namespace backend)",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.lines().count(),
        7,
        "one line per resource:\n{stdout}"
    );
}

#[test]
fn validate_names_the_field_and_reason_of_each_invalid_resource_and_exits_1() {
    let out = twill(&["validate", "-f", &example("invalid/mistakes.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for expected in [
        "document 1 (NetworkPolicy \"typo-in-a-rule\"): spec.ingress[0].sorce: unknown field `sorce`",
        "document 2 (IPPool \"too-small-blocks\"): spec.blockSize:",
        "document 3 (GlobalNetworkPolicy \"broken-selector\"): spec.selector:",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        text(&out.stdout).is_empty(),
        "an invalid file prints no ok line"
    );
}

#[test]
fn validate_reads_stdin_and_reports_yaml_syntax_errors_with_line_and_column() {
    let out = twill_stdin(
        &["validate", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: [Tier\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: -:"), "{stderr}");
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn validate_of_a_missing_file_is_a_usage_error() {
    let out = twill(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/file.yaml"));
}

#[test]
fn selector_match_prints_true_or_false() {
    let cases = [
        ("app == 'web'", "app=web", "true"),
        ("app == 'web'", "app=db", "false"),
        ("app != 'web'", "", "true"),
        (
            "has(tier) && env in {'prod', 'staging'}",
            "tier=1,env=prod",
            "true",
        ),
        ("!has(tier)", "tier=1", "false"),
        ("", "", "true"),
    ];
    for (expr, labels, expected) in cases {
        let out = twill(&["selector", "match", expr, "--labels", labels]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{expr} / {labels}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), expected, "{expr} / {labels}");
    }
}

#[test]
fn selector_match_reports_a_parse_error_with_its_offset_and_exits_2() {
    let out = twill(&[
        "selector",
        "match",
        "app == 'web' &&",
        "--labels",
        "app=web",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("at byte 15"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
}
