//! `twill apply|create|replace|delete|get|label` as a user runs them, on a
//! temporary embedded datastore.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use twill_cli::resources::kinds;
use twill_store::{Datastore, SqliteStore};

struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("twill.db")
    }

    fn twill(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_twill"))
            .args(args)
            .env("TWILL_DATASTORE", self.db())
            .output()
            .expect("twill runs")
    }

    /// Runs `twill` with a manifest on stdin (`-f -`).
    fn twill_stdin(&self, args: &[&str], manifest: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_twill"))
            .args(args)
            .env("TWILL_DATASTORE", self.db())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("twill runs");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(manifest.as_bytes())
            .expect("stdin accepts the manifest");
        child.wait_with_output().expect("twill finishes")
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.display().to_string()
    }

    /// `twill get KIND -A -o name`, one line a resource.
    fn names(&self, kind: &str) -> Vec<String> {
        let out = self.twill(&["get", kind, "-A", "-o", "name"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.twill(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("get -o json prints JSON")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect_status(out: &Output, code: i32, stderr_has: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(stderr_has),
        "missing {stderr_has:?} in:\n{stderr}"
    );
}

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"
    )
}

const GNP: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-all
spec:
  selector: all()
  types: [Ingress]
";

const CALICO_NP: &str = "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
";

const K8S_NP: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
";

const NODE: &str = "apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-1
spec:
  bgp:
    ipv4Address: 192.0.2.10/24
    asNumber: 64512
";

const PEER: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
spec:
  peerIP: 192.0.2.1
  asNumber: 65001
";

#[test]
fn apply_get_delete_round_trip_for_each_kind() {
    // (manifest, type as typed, name, namespace flag, qualified name printed by -o name)
    let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
        (
            &pool("pool-a", "10.1.0.0/16"),
            "ippools",
            "pool-a",
            None,
            "ippool.projectcalico.org/pool-a",
        ),
        (
            GNP,
            "gnp",
            "deny-all",
            None,
            "globalnetworkpolicy.projectcalico.org/deny-all",
        ),
        (
            CALICO_NP,
            "NetworkPolicy",
            "allow-web",
            Some("shop"),
            "networkpolicy.projectcalico.org/allow-web",
        ),
        (
            K8S_NP,
            "networkpolicies.networking.k8s.io",
            "allow-web",
            Some("shop"),
            "networkpolicy.networking.k8s.io/allow-web",
        ),
        (NODE, "no", "node-1", None, "node.projectcalico.org/node-1"),
        (
            PEER,
            "bgppeer",
            "tor",
            None,
            "bgppeer.projectcalico.org/tor",
        ),
    ];
    let cluster = Cluster::new();
    for (manifest, kind, name, namespace, printed) in cases {
        let out = cluster.twill_stdin(&["apply", "-f", "-"], manifest);
        expect_status(&out, 0, "");
        assert!(
            text(&out.stdout).starts_with("Successfully applied 1 '"),
            "{}",
            text(&out.stdout)
        );
        let mut get = vec!["get", kind, name];
        if let Some(ns) = namespace {
            get.extend(["-n", ns]);
        }
        let object = cluster.json(&get);
        assert_eq!(object["metadata"]["name"], *name, "{kind}: {object}");
        assert!(
            object["metadata"]["resourceVersion"].is_string(),
            "{kind}: {object}"
        );
        assert!(object["metadata"]["uid"].is_string(), "{kind}: {object}");
        assert_eq!(cluster.names(kind), vec![printed.to_string()], "{kind}");
    }
    // Calico's and Kubernetes' NetworkPolicy of the same name are two objects.
    assert_eq!(cluster.names("knp").len(), 1);
    assert_eq!(cluster.names("cnp").len(), 1);
    for (_, kind, name, namespace, _) in cases {
        let mut delete = vec!["delete", kind, name];
        if let Some(ns) = namespace {
            delete.extend(["-n", ns]);
        }
        let out = cluster.twill(&delete);
        expect_status(&out, 0, "");
        assert!(cluster.names(kind).is_empty(), "{kind} {name} is gone");
        let mut get = vec!["get", kind, name];
        if let Some(ns) = namespace {
            get.extend(["-n", ns]);
        }
        expect_status(&cluster.twill(&get), 3, "resource does not exist");
    }
}

#[test]
fn a_file_with_one_invalid_document_writes_nothing() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &pool("existing", "10.9.0.0/16")),
        0,
        "",
    );
    let bad = format!(
        "{}---\n{}",
        pool("good", "10.1.0.0/16"),
        pool("bad", "10.2.0.0/33")
    );
    let file = cluster.file("bad.yaml", &bad);
    for command in ["apply", "create"] {
        let out = cluster.twill(&[command, "-f", &file]);
        expect_status(&out, 1, "spec.cidr");
        assert_eq!(
            cluster.names("ippool"),
            ["ippool.projectcalico.org/existing"],
            "{command} wrote part of an invalid file"
        );
    }
}

#[test]
fn create_that_finds_a_resource_taken_midway_writes_none_of_the_file() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["create", "-f", "-"], &pool("b", "10.2.0.0/16")),
        0,
        "",
    );
    let file = cluster.file(
        "three.yaml",
        &format!(
            "{}---\n{}---\n{}",
            pool("a", "10.1.0.0/16"),
            pool("b", "10.2.0.0/16"),
            pool("c", "10.3.0.0/16")
        ),
    );
    let out = cluster.twill(&["create", "-f", &file]);
    expect_status(&out, 3, "resource already exists: IPPool(b)");
    expect_status(&out, 3, "twill apply");
    expect_status(&out, 3, "was written");
    assert_eq!(cluster.names("ippool"), ["ippool.projectcalico.org/b"]);
    // apply of the same file upserts all three.
    let out = cluster.twill(&["apply", "-f", &file]);
    expect_status(&out, 0, "");
    assert_eq!(
        text(&out.stdout).trim(),
        "Successfully applied 3 'IPPool' resource(s)"
    );
    assert_eq!(cluster.names("ippool").len(), 3);
}

#[test]
fn replace_needs_an_existing_resource_and_keeps_its_identity() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &pool("a", "10.1.0.0/16")),
        0,
        "",
    );
    let out = cluster.twill_stdin(&["replace", "-f", "-"], &pool("absent", "10.5.0.0/16"));
    expect_status(&out, 3, "resource does not exist: IPPool(absent)");
    expect_status(&out, 3, "twill create");

    let before = cluster.json(&["get", "ippool", "a"]);
    let disabled = pool("a", "10.1.0.0/16") + "  disabled: true\n";
    let out = cluster.twill_stdin(&["replace", "-f", "-"], &disabled);
    expect_status(&out, 0, "");
    assert_eq!(
        text(&out.stdout).trim(),
        "Successfully replaced 1 'IPPool' resource(s)"
    );
    let after = cluster.json(&["get", "ippool", "a"]);
    assert_eq!(after["spec"]["disabled"], true);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        after["metadata"]["creationTimestamp"],
        before["metadata"]["creationTimestamp"]
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &pool("a", "10.1.0.0/16")),
        0,
        "",
    );
    let first = cluster.json(&["get", "ippool", "a"]);
    let version = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .to_string();
    expect_status(
        &cluster.twill_stdin(
            &["apply", "-f", "-"],
            &(pool("a", "10.1.0.0/16") + "  disabled: true\n"),
        ),
        0,
        "",
    );
    let stale = (pool("a", "10.1.0.0/16") + "  natOutgoing: true\n").replace(
        "  name: a\n",
        &format!("  name: a\n  resourceVersion: \"{version}\"\n"),
    );
    for command in ["apply", "replace"] {
        let out = cluster.twill_stdin(&[command, "-f", "-"], &stale);
        expect_status(&out, 3, "was changed concurrently");
    }
    let stored = cluster.json(&["get", "ippool", "a"]);
    assert_eq!(stored["spec"]["disabled"], true);
    assert_ne!(stored["spec"]["natOutgoing"], true);
}

#[test]
fn delete_from_a_file_is_all_or_nothing_unless_told_to_skip_missing() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &pool("a", "10.1.0.0/16")),
        0,
        "",
    );
    let file = cluster.file(
        "two.yaml",
        &format!(
            "{}---\n{}",
            pool("a", "10.1.0.0/16"),
            pool("gone", "10.2.0.0/16")
        ),
    );
    let out = cluster.twill(&["delete", "-f", &file]);
    expect_status(&out, 3, "resource does not exist: IPPool(gone)");
    assert_eq!(cluster.names("ippool").len(), 1, "nothing was deleted");
    let out = cluster.twill(&["delete", "-f", &file, "--skip-not-exists"]);
    expect_status(&out, 0, "");
    assert_eq!(
        text(&out.stdout).trim(),
        "Successfully deleted 1 'IPPool' resource(s)"
    );
    assert!(cluster.names("ippool").is_empty());
}

#[test]
fn get_prints_tables_yaml_json_and_names() {
    let cluster = Cluster::new();
    let manifest = format!(
        "{}---\n{}",
        pool("pool-a", "10.1.0.0/16"),
        pool("pool-b", "fd00::/48")
    );
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &manifest),
        0,
        "",
    );
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], CALICO_NP),
        0,
        "",
    );

    // (arguments, lines the output must have, in order)
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["get", "ippools"],
            &[
                "NAME     CIDR          SELECTOR",
                "pool-a   10.1.0.0/16   all()",
                "pool-b   fd00::/48     all()",
            ],
        ),
        (
            &["get", "ippools", "pool-a", "-o", "wide"],
            &[
                "NAME     CIDR          NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE",
                "pool-a   10.1.0.0/16   false   Never      Never       false      false              all()      Automatic",
            ],
        ),
        (
            &["get", "networkpolicy", "-n", "shop"],
            &[
                "NAMESPACE   NAME        TIER",
                "shop        allow-web   default",
            ],
        ),
        (&["get", "networkpolicy"], &["NAMESPACE   NAME   TIER"]),
        (
            &["get", "pools", "-o", "name"],
            &[
                "ippool.projectcalico.org/pool-a",
                "ippool.projectcalico.org/pool-b",
            ],
        ),
    ];
    for (args, expected) in cases {
        let out = cluster.twill(args);
        expect_status(&out, 0, "");
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, *expected, "{args:?}");
    }

    // YAML of one object loads back as the same resource.
    let out = cluster.twill(&["get", "ippool", "pool-a", "-o", "yaml"]);
    expect_status(&out, 0, "");
    let yaml = text(&out.stdout);
    assert!(
        yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\n"),
        "{yaml}"
    );
    let loaded = twill_api::load_str("get", &yaml).expect("get -o yaml loads");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].name(), "pool-a");

    // Several objects are a list, which loads back too.
    let list = cluster.json(&["get", "ippools"]);
    assert_eq!(list["kind"], "IPPoolList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let out = cluster.twill(&["get", "ippools", "-o", "yaml"]);
    let loaded = twill_api::load_str("list", &text(&out.stdout)).expect("a list loads");
    assert_eq!(loaded.len(), 2);

    // Output is stable: the same command prints the same bytes.
    let again = cluster.twill(&["get", "ippools", "-o", "yaml"]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn label_adds_overwrites_and_removes() {
    let cluster = Cluster::new();
    expect_status(&cluster.twill_stdin(&["apply", "-f", "-"], NODE), 0, "");
    let labels = || cluster.json(&["get", "node", "node-1"])["metadata"]["labels"].clone();
    // (arguments after `label nodes node-1`, exit code, stderr fragment, labels after)
    let cases: &[(&[&str], i32, &str, serde_json::Value)] = &[
        (&["rack=r1"], 0, "", serde_json::json!({"rack": "r1"})),
        (
            &["zone=z1", "rack=r1"],
            0,
            "",
            serde_json::json!({"rack": "r1", "zone": "z1"}),
        ),
        (
            &["rack=r2"],
            3,
            "pass --overwrite",
            serde_json::json!({"rack": "r1", "zone": "z1"}),
        ),
        (
            &["rack=r2", "--overwrite"],
            0,
            "",
            serde_json::json!({"rack": "r2", "zone": "z1"}),
        ),
        (&["zone-"], 0, "", serde_json::json!({"rack": "r2"})),
        (&["--remove", "rack"], 0, "", serde_json::Value::Null),
        (
            &["bad key=x"],
            1,
            "metadata.labels",
            serde_json::Value::Null,
        ),
        (
            &["nonsense"],
            2,
            "neither key=value nor key-",
            serde_json::Value::Null,
        ),
    ];
    for (args, code, stderr_has, after) in cases {
        let mut full = vec!["label", "nodes", "node-1"];
        full.extend(args.iter());
        expect_status(&cluster.twill(&full), *code, stderr_has);
        assert_eq!(labels(), *after, "after label {args:?}");
    }
    // The rest of the object is untouched.
    let node = cluster.json(&["get", "node", "node-1"]);
    assert_eq!(node["spec"]["bgp"]["asNumber"], 64512);
    expect_status(
        &cluster.twill(&["label", "nodes", "absent", "a=b"]),
        3,
        "resource does not exist: Node(absent)",
    );
}

#[test]
fn command_line_mistakes_say_what_to_fix() {
    let cluster = Cluster::new();
    expect_status(
        &cluster.twill_stdin(&["apply", "-f", "-"], &pool("a", "10.1.0.0/16")),
        0,
        "",
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (&["get", "widgets"], 2, "known types:\n  NetworkPolicy ("),
        (
            &["get", "ippools", "-n", "shop"],
            2,
            "IPPool is cluster-scoped",
        ),
        (&["delete", "ippools"], 2, "twill delete ippools NAME"),
        (
            &["apply", "-f", "no/such/file.yaml"],
            2,
            "no/such/file.yaml",
        ),
        (
            &["get", "ippool", "absent"],
            3,
            "resource does not exist: IPPool(absent)",
        ),
    ];
    for (args, code, stderr_has) in cases {
        expect_status(&cluster.twill(args), *code, stderr_has);
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_twill"))
        .args(["get", "ippools"])
        .env("TWILL_DATASTORE", Path::new("/nonexistent/twill.db"))
        .output()
        .expect("twill runs");
    expect_status(&missing, 2, "does not exist");
}

#[test]
fn type_names_resolve_like_calicoctl_and_kubectl() {
    // (typed, apiVersion, kind)
    let cases = [
        ("networkpolicy", "projectcalico.org/v3", "NetworkPolicy"),
        ("NetworkPolicies", "projectcalico.org/v3", "NetworkPolicy"),
        ("np", "projectcalico.org/v3", "NetworkPolicy"),
        ("netpol", "networking.k8s.io/v1", "NetworkPolicy"),
        ("knp", "networking.k8s.io/v1", "NetworkPolicy"),
        (
            "networkpolicies.networking.k8s.io",
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ),
        ("GNP", "projectcalico.org/v3", "GlobalNetworkPolicy"),
        ("no", "projectcalico.org/v3", "Node"),
        ("ipamconfig", "projectcalico.org/v3", "IPAMConfiguration"),
        ("bgpp", "projectcalico.org/v3", "BGPPeer"),
        (
            "installation.operator.tigera.io",
            "operator.tigera.io/v1",
            "Installation",
        ),
    ];
    for (typed, api_version, kind) in cases {
        let found = kinds::resolve(typed).unwrap_or_else(|e| panic!("{typed}: {e}"));
        assert_eq!(
            (found.info.api_version, found.info.kind),
            (api_version, kind),
            "{typed}"
        );
    }
    let k8s = kinds::resolve("netpol").expect("netpol");
    assert_eq!(k8s.store_kind, "NetworkPolicy.networking.k8s.io");
    assert!(kinds::resolve("networkpolicies.example.com").is_err());
}

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_twill"))
            .args(["completion", shell])
            .output()
            .expect("twill runs");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        for word in ["apply", "replace", "label", "ipam"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

/// The store's revision and every stored IPPool as `name cidr`, read
/// straight from the datastore file.
fn pool_state(cluster: &Cluster) -> (u64, Vec<String>) {
    let store = SqliteStore::open(cluster.db()).expect("open datastore");
    let revision = store.current_revision().expect("current revision").0;
    let pools = store
        .list("IPPool", None)
        .expect("list pools")
        .items
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o.key.name,
                o.value["spec"]["cidr"].as_str().unwrap_or("?")
            )
        })
        .collect();
    (revision, pools)
}

#[test]
fn an_ippool_overlapping_another_pool_or_changing_its_cidr_is_refused_and_nothing_is_written() {
    let cluster = Cluster::new();
    let disabled = pool("off", "10.9.0.0/16") + "  disabled: true\n";
    let setup = format!("{}---\n{disabled}", pool("existing", "10.1.0.0/16"));
    expect_status(&cluster.twill_stdin(&["apply", "-f", "-"], &setup), 0, "");
    let before = pool_state(&cluster);
    assert_eq!(before.1, ["existing 10.1.0.0/16", "off 10.9.0.0/16"]);

    let docs = |docs: &[String]| docs.join("---\n");
    let inner = cluster.file(
        "inner.yaml",
        &docs(&[
            GNP.to_string(),
            pool("fresh", "10.2.0.0/16"),
            pool("inner", "10.1.4.0/24"),
        ]),
    );
    let outer = cluster.file("outer.yaml", &pool("outer", "10.0.0.0/8"));
    let twins = cluster.file(
        "twins.yaml",
        &docs(&[pool("twin-a", "10.3.0.0/16"), pool("twin-b", "10.3.0.0/16")]),
    );
    let beside_disabled = cluster.file("again.yaml", &pool("again", "10.9.128.0/17"));
    let first = cluster.file(
        "first.yaml",
        &docs(&[GNP.to_string(), pool("first", "10.4.0.0/16")]),
    );
    let second = cluster.file("second.yaml", &pool("second", "10.4.0.0/20"));
    let moved = cluster.file("moved.yaml", &pool("existing", "10.9.0.0/24"));
    let resized = cluster.file(
        "resized.yaml",
        &(pool("existing", "10.1.0.0/16") + "  blockSize: 28\n"),
    );
    // (command, files, the error's text)
    let cases: &[(&str, Vec<&str>, String)] = &[
        (
            "apply",
            vec![&inner],
            format!(
                "error: IPPool(inner) spec.cidr 10.1.4.0/24 overlaps with IPPool(existing) \
                 spec.cidr 10.1.0.0/16 in the datastore: 10.1.4.0/24 is contained in \
                 10.1.0.0/16; IPPool CIDRs must not overlap (nothing in {inner} was written)"
            ),
        ),
        (
            "create",
            vec![&outer],
            "IPPool(outer) spec.cidr 10.0.0.0/8 overlaps with IPPool(existing) spec.cidr \
             10.1.0.0/16 in the datastore: 10.0.0.0/8 contains 10.1.0.0/16"
                .to_string(),
        ),
        (
            "apply",
            vec![&twins],
            format!(
                "IPPool(twin-b) spec.cidr 10.3.0.0/16 overlaps with IPPool(twin-a) spec.cidr \
                 10.3.0.0/16 earlier in {twins}: 10.3.0.0/16 equals 10.3.0.0/16"
            ),
        ),
        (
            "apply",
            vec![&beside_disabled],
            "IPPool(again) spec.cidr 10.9.128.0/17 overlaps with IPPool(off) spec.cidr \
             10.9.0.0/16 in the datastore"
                .to_string(),
        ),
        (
            "apply",
            vec![&first, &second],
            format!(
                "IPPool(second) spec.cidr 10.4.0.0/20 overlaps with IPPool(first) spec.cidr \
                 10.4.0.0/16 earlier in {first}: 10.4.0.0/20 is contained in 10.4.0.0/16; \
                 IPPool CIDRs must not overlap (nothing in {first}, {second} was written)"
            ),
        ),
        (
            "replace",
            vec![&moved],
            format!(
                "error: IPPool(existing) spec.cidr cannot change from 10.1.0.0/16 (in the \
                 datastore) to 10.9.0.0/24: the pool's blocks were carved with it; create a \
                 new pool, disable this one and move its workloads (nothing in {moved} was \
                 written)"
            ),
        ),
        (
            "apply",
            vec![&resized],
            "IPPool(existing) spec.blockSize cannot change from 26 (in the datastore) to 28"
                .to_string(),
        ),
    ];
    for (command, files, error) in cases {
        let mut args = vec![*command];
        for file in files {
            args.extend(["-f", file]);
        }
        let out = cluster.twill(&args);
        expect_status(&out, 3, error);
        assert_eq!(
            pool_state(&cluster),
            before,
            "{command} {files:?} wrote something"
        );
        assert!(
            cluster.names("globalnetworkpolicy").is_empty(),
            "{command} {files:?} wrote the policy of a refused batch"
        );
    }
}

#[test]
fn pools_that_do_not_overlap_another_pool_are_written() {
    let cluster = Cluster::new();
    let pools = format!(
        "{}---\n{}",
        pool("v4", "10.1.0.0/16"),
        pool("v6", "fd00::/48")
    );
    // (command, manifest): a pool updated to itself, a neighbour, and the
    // other family are no overlap.
    let cases = [
        ("create", pools.clone()),
        ("apply", pools.clone()),
        ("replace", pool("v4", "10.1.0.0/16") + "  disabled: true\n"),
        ("apply", pool("next-door", "10.2.0.0/16")),
        ("create", pool("v6-next-door", "fd01::/48")),
    ];
    for (command, manifest) in cases {
        let out = cluster.twill_stdin(&[command, "-f", "-"], &manifest);
        expect_status(&out, 0, "");
    }
    assert_eq!(
        pool_state(&cluster).1,
        [
            "next-door 10.2.0.0/16",
            "v4 10.1.0.0/16",
            "v6 fd00::/48",
            "v6-next-door fd01::/48"
        ]
    );
}
