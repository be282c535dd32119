//! Loading speed: a stream of realistic GlobalNetworkPolicies as YAML and
//! as JSON, through parse, decode, defaults and validation.
//!
//! `cargo bench -p twill-api --bench load`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twill_api::{load_str, to_json};

/// `count` policies, each with two selectors, CIDRs, ports and a range.
fn policies(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: policy-{i}
spec:
  order: {i}
  selector: app == 'web-{}' && tier in {{'a', 'b'}}
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
        nets: [10.{}.0.0/16, 192.0.2.0/24]
      destination:
        ports: [80, 443, '8000:8080', http]
    - action: Deny
  egress:
    - action: Allow
      protocol: UDP
      destination:
        ports: [53]
",
                i % 100,
                i % 256
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn load(c: &mut Criterion) {
    let count = 1_000;
    let yaml = policies(count);
    let resources = load_str("bench.yaml", &yaml).expect("the generated policies are valid");
    let json = format!(
        "[{}]",
        resources.iter().map(to_json).collect::<Vec<_>>().join(",")
    );

    let mut group = c.benchmark_group("load_1000_policies");
    group.sample_size(10);
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("yaml", |b| {
        b.iter(|| load_str("bench.yaml", &yaml).expect("valid"))
    });
    group.bench_function("json", |b| {
        b.iter(|| load_str("bench.json", &json).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
