//! The process contract: stdout documents and exit codes per verb and version.

use std::collections::HashMap;

use super::*;

fn call(vars: &[(&str, &str)], stdin: &str) -> (Value, i32) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = run(
        |k| map.get(k).cloned(),
        stdin.as_bytes(),
        |_| {
            Err(CniError::NotAvailable {
                reason: "no dependencies in this test".into(),
            })
        },
    );
    let value = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).expect("stdout is JSON")
    };
    (value, out.exit_code)
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/var/run/netns/x"),
    ("CNI_IFNAME", "eth0"),
];

#[test]
fn version_reports_every_supported_version() {
    for requested in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let (out, code) = call(
            &[("CNI_COMMAND", "VERSION")],
            &format!(r#"{{"cniVersion":"{requested}"}}"#),
        );
        assert_eq!(code, 0);
        assert_eq!(out["cniVersion"], requested);
        assert_eq!(
            out["supportedVersions"],
            serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }
    let (out, code) = call(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(
        (out["cniVersion"].as_str(), code),
        (Some(LATEST_VERSION), 0)
    );
}

/// (what, environment, stdin, expected code, expected error cniVersion)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u32, &'a str);

#[test]
fn bad_input_yields_the_spec_error_object_and_a_nonzero_exit() {
    let good = r#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni"}"#;
    let cases: &[Case] = &[
        ("malformed stdin", ADD, "{not json", 6, LATEST_VERSION),
        (
            "unsupported version",
            ADD,
            r#"{"cniVersion":"0.2.0","name":"n","type":"twill-cni"}"#,
            1,
            LATEST_VERSION,
        ),
        (
            "CHECK on 0.3.1",
            &[
                ("CNI_COMMAND", "CHECK"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            r#"{"cniVersion":"0.3.1","name":"n","type":"twill-cni"}"#,
            1,
            "0.3.1",
        ),
        (
            "missing CNI_CONTAINERID",
            &[("CNI_COMMAND", "ADD")],
            good,
            4,
            "1.0.0",
        ),
        (
            "unknown field",
            ADD,
            r#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni","subnet":"x"}"#,
            6,
            LATEST_VERSION,
        ),
        (
            "STATUS without dependencies",
            &[("CNI_COMMAND", "STATUS")],
            r#"{"cniVersion":"1.1.0","name":"n","type":"twill-cni"}"#,
            50,
            "1.1.0",
        ),
    ];
    for (what, vars, stdin, code, version) in cases {
        let (out, exit) = call(vars, stdin);
        assert_eq!(exit, 1, "{what}");
        assert_eq!(out["code"], *code, "{what}: {out}");
        assert_eq!(out["cniVersion"], *version, "{what}");
        assert!(
            !out["msg"].as_str().unwrap_or_default().is_empty(),
            "{what}"
        );
    }
}
