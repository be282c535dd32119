//! Golden tests: each scenario under `tests/golden/` (plus `common.yaml`)
//! renders to the nft script next to it. `TWILL_BLESS=1` rewrites them.
//!
//! As root, every script is also checked by the real nft (`nft -c`) and
//! applied in a private network namespace, and the plan from each scenario
//! to the next is applied on top and read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use felix_rs::{CalcGraph, RenderConfig, Ruleset, Update, from_kernel, plan, render, script};
use pretty_assertions::assert_eq;
use twill_integration::TestNetns;
use twill_kernel::{KernelExt, NetlinkKernel, NetnsPath, NftConfig};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load(graph: &mut CalcGraph, path: &Path) {
    let text = std::fs::read_to_string(path).expect("scenario is readable");
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        return;
    }
    let resources = twill_api::load_str(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{} does not load: {e:?}", path.display()));
    for resource in resources {
        let update = Update::from_resource(resource).expect("scenario holds only policy inputs");
        graph.on_update(update).expect("scenario converts");
    }
}

/// Every scenario's rendered ruleset, by name.
fn scenarios() -> BTreeMap<String, Ruleset> {
    let mut out = BTreeMap::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "common"))
        .collect();
    entries.sort();
    for path in entries {
        let mut graph = CalcGraph::new("node1");
        load(&mut graph, &golden_dir().join("common.yaml"));
        load(&mut graph, &path);
        graph.on_update(Update::InSync).expect("in sync");
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        out.insert(name, render(&graph, &RenderConfig::default()));
    }
    out
}

fn full_script(ruleset: &Ruleset) -> String {
    script(&plan(ruleset, &Ruleset::default()))
}

#[test]
fn rendered_scripts_match_golden_files() {
    let bless = std::env::var("TWILL_BLESS").is_ok_and(|v| v == "1");
    let scenarios = scenarios();
    assert!(scenarios.len() >= 4, "the golden scenarios are present");
    for (name, ruleset) in &scenarios {
        let text = full_script(ruleset);
        let path = golden_dir().join(format!("{name}.nft"));
        if bless {
            std::fs::write(&path, &text).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing: run with TWILL_BLESS=1", path.display()));
        assert_eq!(expected, text, "scenario {name}");
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = scenarios();
    let b = scenarios();
    for (name, ruleset) in &a {
        assert_eq!(
            full_script(ruleset),
            full_script(&b[name]),
            "scenario {name}"
        );
    }
}

#[test]
fn no_rendered_rule_uses_an_anonymous_set() {
    for (name, ruleset) in scenarios() {
        for (chain, c) in &ruleset.chains {
            for rule in &c.rules {
                assert!(
                    !rule.body.contains('{'),
                    "scenario {name}, chain {chain}: anonymous set in {}",
                    rule.body
                );
            }
        }
    }
}

/// `(chain, [comments])` of Twill's table as the kernel lists it.
fn kernel_comments(netns: &TestNetns) -> BTreeMap<String, Vec<String>> {
    let out = netns
        .exec("nft", &["list", "table", "inet", "twill"])
        .expect("nft list runs");
    assert!(
        out.status.success(),
        "nft list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut chains = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            current = Some(name.to_string());
            chains.insert(name.to_string(), Vec::new());
        } else if line == "}" {
            current = None;
        } else if let (Some(chain), Some(at)) = (&current, line.rfind("comment \"tw:")) {
            let hash = line[at + "comment \"tw:".len()..].trim_end_matches('"');
            chains
                .get_mut(chain)
                .expect("chain seen")
                .push(hash.to_string());
        }
    }
    chains
}

fn desired_comments(ruleset: &Ruleset) -> BTreeMap<String, Vec<String>> {
    ruleset
        .chains
        .iter()
        .map(|(name, c)| {
            (
                name.clone(),
                c.rules.iter().map(|r| r.hash.clone()).collect(),
            )
        })
        .collect()
}

fn apply(netns: &TestNetns, text: &str, what: &str) {
    let file = std::env::temp_dir().join(format!("{}-{what}.nft", netns.name()));
    std::fs::write(&file, text).expect("write script");
    let file_arg = file.display().to_string();
    let check = netns
        .exec("nft", &["-c", "-f", &file_arg])
        .expect("nft -c runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        check.status.success(),
        "nft -c rejects {what}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    netns
        .nft(text)
        .unwrap_or_else(|e| panic!("nft rejects {what}: {e}"));
}

#[test]
fn real_nft_accepts_every_script_and_every_plan_between_them() {
    twill_integration::require_root!();
    let netns = TestNetns::new("felix-golden").expect("scratch namespace");
    let kernel = NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default())
        .expect("kernel handle in the namespace");
    let scenarios = scenarios();
    let mut actual = Ruleset::default();
    // Forward through every scenario, then back to the first.
    let mut order: Vec<&String> = scenarios.keys().collect();
    order.push(order[0]);
    for name in order {
        let desired = &scenarios[name];
        let ops = plan(desired, &actual);
        apply(&netns, &script(&ops), name);
        assert_eq!(
            desired_comments(desired),
            kernel_comments(&netns),
            "after {name}"
        );
        let table = kernel
            .nft_read_table("inet", "twill")
            .wait()
            .expect("read back");
        assert_eq!(
            plan(desired, &from_kernel(&table)),
            Vec::new(),
            "the kernel holds exactly the desired ruleset after {name}"
        );
        actual = desired.clone();
    }
}

#[test]
fn drift_made_by_someone_else_is_planned_back_from_the_read_back() {
    twill_integration::require_root!();
    let netns = TestNetns::new("felix-drift").expect("scratch namespace");
    let kernel = NetlinkKernel::open(&NetnsPath::from_path(netns.path()), NftConfig::default())
        .expect("kernel handle in the namespace");
    let scenarios = scenarios();
    let desired = &scenarios["k8s-peers-and-ports"];
    apply(&netns, &full_script(desired), "initial");
    netns
        .nft(
            "flush chain inet twill to-twl0a1\n\
             delete element inet twill wl-src-v4 { \"twl0b1\" . 10.0.1.2 }\n\
             add element inet twill from-wl-dispatch { \"twl9\" : drop }\n\
             add chain inet twill stray\n",
        )
        .expect("someone else changes the table");
    let read = |what: &str| {
        from_kernel(
            &kernel
                .nft_read_table("inet", "twill")
                .wait()
                .unwrap_or_else(|e| panic!("read back {what}: {e}")),
        )
    };
    let repair = plan(desired, &read("drifted"));
    assert!(!repair.is_empty(), "the drift is seen");
    apply(&netns, &script(&repair), "repair");
    assert_eq!(plan(desired, &read("repaired")), Vec::new());
}
