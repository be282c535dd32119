//! `twill lab run`: a scenario brought up, its steps run, each probe
//! printed as expected/observed.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::lab::{Lab, LabOptions, PodRequest, UpOptions};
use crate::scenario::{Cell, Scenario, Step, Verdict, WaitSpec, parse_row};

/// How long a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What a run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Probes (and matrix cells) compared.
    pub checked: usize,
    /// Those that did not match.
    pub mismatches: usize,
}

/// Brings the scenario's lab up, creates its namespaces and pods, runs its
/// steps, and (unless `keep`) tears the lab down again — also on error.
///
/// # Errors
///
/// The first step that could not run (a mismatch is not an error: it is
/// counted in the report).
pub fn run(
    options: LabOptions,
    scenario: &Scenario,
    keep: bool,
    out: &mut dyn Write,
) -> Result<RunReport> {
    let down_options = options.clone();
    let result = run_inner(options, scenario, out);
    if !keep || result.is_err() {
        let _ = writeln!(out, "tearing down lab {}", down_options.name);
        let _ = Lab::down(&down_options);
    }
    result
}

fn run_inner(options: LabOptions, scenario: &Scenario, out: &mut dyn Write) -> Result<RunReport> {
    let started = Instant::now();
    if let Some(description) = &scenario.description {
        let _ = writeln!(out, "{}", description.trim());
    }
    let nodes = scenario.nodes.names();
    let _ = writeln!(
        out,
        "== up: {} nodes, ToR {}, encap {}",
        nodes.len(),
        format!("{:?}", scenario.tor).to_lowercase(),
        format!("{:?}", scenario.encap).to_lowercase()
    );
    let mut lab = Lab::up(
        options,
        &UpOptions {
            nodes: nodes.clone(),
            tor: scenario.tor,
            encap: scenario.encap,
            routing: None,
        },
    )?;
    for (namespace, spec) in &scenario.namespaces {
        lab.set_namespace(namespace, spec.labels.clone())?;
    }
    let _ = writeln!(out, "== pods");
    for pod in &scenario.pods {
        let request = PodRequest {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            node: pod.node.resolve(&nodes)?,
            labels: pod.labels.clone(),
            service_account: pod.service_account.clone(),
            ports: pod.ports.clone(),
        };
        let state = lab.pod_add(&request, false)?;
        let _ = writeln!(out, "  {} on {}: {}", state.id(), state.node, state.address);
    }
    lab.settle()?;
    let _ = writeln!(
        out,
        "   (up and settled in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    let mut report = RunReport::default();
    let pods = scenario.pod_names();
    for (i, step) in scenario.steps.iter().enumerate() {
        match step {
            Step::Apply(yaml) => {
                let _ = writeln!(out, "== step {}: apply", i + 1);
                lab.apply(&format!("steps[{i}].apply"), yaml)?;
                lab.barrier()?;
            }
            Step::Delete(d) => {
                let _ = writeln!(
                    out,
                    "== step {}: delete {} {}{}",
                    i + 1,
                    d.kind,
                    d.namespace
                        .as_deref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default(),
                    d.name
                );
                lab.delete(
                    d.api_version.as_deref(),
                    &d.kind,
                    d.namespace.as_deref(),
                    &d.name,
                )?;
                lab.barrier()?;
            }
            Step::Label(l) => {
                let _ = writeln!(
                    out,
                    "== step {}: label {}",
                    i + 1,
                    l.pod
                        .as_deref()
                        .or(l.namespace.as_deref())
                        .unwrap_or_default()
                );
                match (&l.pod, &l.namespace) {
                    (Some(pod), _) => lab.relabel_pod(pod, &l.set, &l.remove)?,
                    (None, Some(ns)) => lab.relabel_namespace(ns, &l.set, &l.remove)?,
                    (None, None) => {}
                }
                lab.barrier()?;
            }
            Step::Wait(w) => {
                let _ = writeln!(out, "== step {}: wait {w:?}", i + 1);
                match w {
                    WaitSpec::Bgp => lab.wait_routes()?,
                    WaitSpec::Programmed => lab.barrier()?,
                    WaitSpec::Seconds(s) => std::thread::sleep(Duration::from_secs_f64(*s)),
                }
            }
            Step::Probe(probes) => {
                let _ = writeln!(out, "== step {}: probe", i + 1);
                for p in probes {
                    let observed = lab.probe(&p.from, &p.to, p.port, p.protocol, PROBE_TIMEOUT)?;
                    let ok = observed.verdict() == p.expect;
                    report.checked += 1;
                    if !ok {
                        report.mismatches += 1;
                    }
                    let port = p.port.map(|p| format!(":{p}")).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  {} {} -> {}{port}/{}: expected {}, observed {} ({})",
                        if ok { "ok  " } else { "FAIL" },
                        p.from,
                        p.to,
                        p.protocol.as_str(),
                        p.expect.as_str(),
                        observed.verdict().as_str(),
                        observed.as_str()
                    );
                }
            }
            Step::Matrix(m) => {
                let _ = writeln!(out, "== step {}: matrix", i + 1);
                let target = m
                    .port
                    .map(|port| (port, m.protocol.unwrap_or(crate::scenario::Protocol::Tcp)));
                let matrix = lab.matrix(target, PROBE_TIMEOUT)?;
                let _ = writeln!(out, "{matrix}");
                for from in &pods {
                    let expected = parse_row(m.expect.get(from).map_or("", String::as_str))
                        .unwrap_or_default();
                    let row = matrix.pods.iter().position(|p| p == from);
                    for (c, cell) in expected.iter().enumerate() {
                        let (Some(row), Some(col)) =
                            (row, matrix.pods.iter().position(|p| *p == pods[c]))
                        else {
                            continue;
                        };
                        let want = match cell {
                            Cell::Itself => continue,
                            Cell::Allow => Verdict::Allow,
                            Cell::Deny => Verdict::Deny,
                        };
                        let got = matrix.cells[row][col].map(|o| o.verdict());
                        report.checked += 1;
                        if got != Some(want) {
                            report.mismatches += 1;
                            let _ = writeln!(
                                out,
                                "  FAIL {from} -> {} ({}): expected {}, observed {}",
                                pods[c],
                                matrix.targets[col],
                                want.as_str(),
                                got.map_or("nothing", Verdict::as_str)
                            );
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "== {} checks, {} mismatches ({:.1}s)",
        report.checked,
        report.mismatches,
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}
