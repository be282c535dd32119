//! Policy conformance on a running lab: every scenario file in
//! `examples/scenarios/conformance/` (the upstream Kubernetes NetworkPolicy
//! e2e cases and Calico's own policy features as expected grids) run with
//! `twill-lab run`, each in a lab of its own, all at once. Root tests: they
//! print `skipped: needs root` otherwise. The daemons must be built next to
//! the binary (`cargo build -p felix-rs -p bgp-speaker -p twill-ipam -p
//! twill-cni`).

#![allow(clippy::unwrap_used)] // Setup failures panic, which fails the test.

mod common;

use std::path::Path;

use common::{REPO, TestLab, ready};

use twill_lab::scenario::{MatrixSpec, ProbeSpec, Step};
use twill_lab::{Protocol, Scenario, Verdict};

const SCENARIOS: &str = "examples/scenarios/conformance";

/// The conformance scenario files, relative to the repository, sorted.
fn scenario_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(Path::new(REPO).join(SCENARIOS))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .map(|name| format!("{SCENARIOS}/{name}"))
        .collect();
    files.sort();
    files
}

/// What one scenario run found, for the report.
struct Finding {
    file: String,
    passed: bool,
    report: String,
}

fn run_scenario(file: &str) -> Finding {
    let lab = TestLab::new();
    let output = lab.run(&["run", file]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rfind(|l| l.contains(" checks, "))
        .unwrap_or("no summary line")
        .to_string();
    let left = lab.namespaces();
    let torn_down = left.is_empty() && !lab.root.join(&lab.name).exists();
    let passed = output.status.success() && summary.contains(" 0 mismatches") && torn_down;
    let report = if passed {
        format!("{file}: {summary}")
    } else {
        format!(
            "{file}: exit {:?}, {summary}, namespaces left {left:?}\n{stdout}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    Finding {
        file: file.to_string(),
        passed,
        report,
    }
}

/// Every conformance file, parsed and checked as `twill lab run` does.
fn scenarios() -> Vec<(String, Scenario)> {
    scenario_files()
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(Path::new(REPO).join(&file)).unwrap();
            let scenario = Scenario::parse(&file, &text)
                .unwrap_or_else(|e| panic!("{file} is not a valid scenario: {e}"));
            (file, scenario)
        })
        .collect()
}

#[test]
fn every_conformance_file_is_a_valid_scenario_whose_policies_load() {
    let scenarios = scenarios();
    assert!(
        scenarios.len() >= 3,
        "conformance files: {}",
        scenarios.len()
    );
    for (file, scenario) in &scenarios {
        for (i, step) in scenario.steps.iter().enumerate() {
            if let Step::Apply(yaml) = step {
                let source = format!("{file} steps[{i}].apply");
                if let Err(e) = twill_api::load_str(&source, yaml) {
                    panic!("{source}: {e}");
                }
            }
        }
    }
}

#[test]
fn the_conformance_suite_checks_at_least_twenty_grids_over_tcp_udp_and_icmp() {
    let steps: Vec<Step> = scenarios()
        .into_iter()
        .flat_map(|(_, scenario)| scenario.steps)
        .collect();
    let matrices: Vec<&MatrixSpec> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Matrix(m) => Some(m),
            _ => None,
        })
        .collect();
    let probes: Vec<&ProbeSpec> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Probe(p) => Some(p),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(matrices.len() >= 20, "{} matrices", matrices.len());
    assert!(
        matrices.iter().any(|m| m.protocol == Some(Protocol::Udp)),
        "no UDP matrix"
    );
    for verdict in [Verdict::Allow, Verdict::Deny] {
        assert!(
            probes
                .iter()
                .any(|p| p.protocol == Protocol::Icmp && p.expect == verdict),
            "no ICMP probe expecting {}",
            verdict.as_str()
        );
    }
}

#[test]
fn every_conformance_scenario_matches_its_expected_grids_and_tears_down() {
    if !ready() {
        return;
    }
    let files = scenario_files();
    let findings: Vec<Finding> = std::thread::scope(|scope| {
        let runs: Vec<_> = files
            .iter()
            .map(|file| scope.spawn(move || run_scenario(file)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for finding in &findings {
        eprintln!("{}", finding.report);
    }
    let failed: Vec<&str> = findings
        .iter()
        .filter(|f| !f.passed)
        .map(|f| f.file.as_str())
        .collect();
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}
