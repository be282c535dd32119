use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Env::from_lookup(|k| map.get(k).cloned())
}

const MINIMAL: &str = r#"{"cniVersion":"1.0.0","name":"twill","type":"twill-cni"}"#;

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let conf = NetConf::parse(MINIMAL.as_bytes()).expect("valid");
    assert_eq!(conf.mtu, None, "detected at ADD");
    assert_eq!(conf.ipam, IpamConf::default());
    assert_eq!(conf.ipam_socket, PathBuf::from(DEFAULT_IPAM_SOCKET));
    assert_eq!(conf.policy_wait(), Some(DEFAULT_POLICY_SETUP_TIMEOUT));
}

#[test]
fn a_zero_policy_timeout_turns_the_wait_off() {
    let conf = NetConf::parse(
        br#"{"cniVersion":"1.0.0","name":"n","type":"twill-cni","policy_setup_timeout":0}"#,
    )
    .expect("valid");
    assert_eq!(conf.policy_wait(), None);
}

#[test]
fn runtime_keys_pass_through() {
    let conf = NetConf::parse(
        br#"{"cniVersion":"1.1.0","name":"n","type":"twill-cni",
            "prevResult":{"ips":[]},
            "runtimeConfig":{"portMappings":[],"labels":{"app":"web"},"serviceAccountName":"sa"},
            "capabilities":{"portMappings":true},
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
    )
    .expect("valid");
    let rc = conf.runtime_config.expect("runtimeConfig");
    assert_eq!(rc.labels.expect("labels")["app"], "web");
    assert_eq!(rc.service_account_name.as_deref(), Some("sa"));
    assert!(rc.other.contains_key("portMappings"));
    assert_eq!(
        conf.valid_attachments.expect("attachments")[0].ifname,
        "eth0"
    );
}

#[test]
fn bad_configs_are_refused_with_the_right_code() {
    let cases: &[(&str, &str, u32)] = &[
        ("malformed json", "{", 6),
        (
            "trailing garbage",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t"} x"#,
            6,
        ),
        (
            "unknown field",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtuu":1400}"#,
            6,
        ),
        ("missing name", r#"{"cniVersion":"1.0.0","type":"t"}"#, 6),
        (
            "mtu too small",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":100}"#,
            7,
        ),
        (
            "foreign ipam",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"host-local"}}"#,
            7,
        ),
        (
            "no family",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"twill-ipam","assign_ipv4":false}}"#,
            7,
        ),
        (
            "unknown ipam field",
            r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"twill-ipam","subnet":"10.0.0.0/8"}}"#,
            6,
        ),
    ];
    for (what, text, code) in cases {
        let err = NetConf::parse(text.as_bytes()).expect_err(what);
        assert_eq!(err.code(), *code, "{what}: {err}");
    }
}

#[test]
fn unknown_field_errors_name_the_field() {
    let err = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtuu":1}"#)
        .expect_err("unknown field");
    assert!(err.to_string().contains("mtuu"), "{err}");
}

#[test]
fn versions_and_verbs() {
    let cases: &[(&str, Command, bool)] = &[
        ("0.3.1", Command::Add, true),
        ("0.3.1", Command::Check, false),
        ("0.4.0", Command::Check, true),
        ("1.0.0", Command::Status, false),
        ("1.1.0", Command::Status, true),
        ("1.1.0", Command::Gc, true),
        ("0.2.0", Command::Add, false),
        ("2.0.0", Command::Add, false),
    ];
    for (version, command, ok) in cases {
        let result = check_version(version, *command);
        assert_eq!(result.is_ok(), *ok, "{version} {command:?}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e.code(), 1);
        }
    }
}

#[test]
fn the_environment_is_checked_variable_by_variable() {
    let ok = env(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;FOO=bar",
        ),
    ])
    .expect("valid");
    assert_eq!(ok.args.pod_namespace.as_deref(), Some("ns1"));
    assert_eq!(ok.args.pod_name.as_deref(), Some("web-0"));

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "CNI_COMMAND"),
        (&[("CNI_COMMAND", "FROB")], "CNI_COMMAND"),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_CONTAINERID",
        ),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "-bad"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_CONTAINERID",
        ),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ],
            "CNI_NETNS",
        ),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "a-very-long-interface-name"),
            ],
            "CNI_IFNAME",
        ),
    ];
    for (vars, variable) in cases {
        let err = env(vars).expect_err(variable);
        assert_eq!(err.code(), 4, "{err}");
        assert!(err.to_string().contains(variable), "{err}");
    }
}

#[test]
fn del_needs_no_netns() {
    let del = env(&[
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_IFNAME", "eth0"),
    ])
    .expect("DEL without a netns is valid");
    assert_eq!(del.netns, None);
}

#[test]
fn unknown_cni_args_are_refused_without_ignore_unknown() {
    let err = CniArgs::parse("FOO=bar").expect_err("unknown key");
    assert_eq!(err.code(), 2);
    assert!(err.to_string().contains("FOO"), "{err}");
    let args = CniArgs::parse("TWILL_LABELS=app=web,tier=db;TWILL_SERVICE_ACCOUNT=sa")
        .expect("twill keys");
    let labels = args.labels.expect("labels");
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["tier"], "db");
    assert_eq!(args.service_account.as_deref(), Some("sa"));
}
