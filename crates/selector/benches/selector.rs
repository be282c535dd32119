//! Selector benchmarks: parsing, evaluation, and the label index with a
//! Calico-shaped workload of 10,000 selectors × 10,000 items.
//!
//! Run: `cargo bench -p twill-selector --bench selector -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use twill_selector::Selector;
use twill_selector::index::LabelIndex;

const ITEMS: usize = 10_000;
const SELECTORS: usize = 10_000;
const NAMESPACES: usize = 100;
const APPS: usize = 400;
const TIERS: &[&str] = &["frontend", "backend", "db", "cache", "worker", "batch"];
const ENVS: &[&str] = &["prod", "staging", "dev"];

/// SplitMix64: a small deterministic generator, so every run builds the same
/// workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Skewed towards small indices (a few big apps, a long tail), like real
    /// clusters.
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn ns_name(i: usize) -> String {
    format!("ns-{i}")
}

fn app_name(i: usize) -> String {
    format!("svc-{i}")
}

/// One pod's own labels: 5 to 10 of them.
fn item_labels(rng: &mut Rng, ns: usize) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let app = rng.skewed(APPS);
    l.insert("app".into(), app_name(app));
    l.insert("tier".into(), rng.pick(TIERS).into());
    l.insert("projectcalico.org/namespace".into(), ns_name(ns));
    l.insert("projectcalico.org/orchestrator".into(), "k8s".into());
    l.insert(
        "pod-template-hash".into(),
        format!("{:08x}", rng.next() as u32),
    );
    if rng.chance(80) {
        l.insert("version".into(), format!("v{}", rng.below(20)));
    }
    if rng.chance(50) {
        l.insert(
            "app.kubernetes.io/part-of".into(),
            format!("system-{}", app / 10),
        );
    }
    if rng.chance(30) {
        l.insert("release".into(), rng.pick(&["stable", "canary"]).into());
    }
    if rng.chance(10) {
        l.insert("canary".into(), "true".into());
    }
    if rng.chance(20) {
        l.insert(
            "role".into(),
            rng.pick(&["api", "ui", "ingest", "admin"]).into(),
        );
    }
    l
}

/// A namespace profile's labels, inherited by its pods.
fn namespace_labels(rng: &mut Rng, ns: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("pcns.projectcalico.org/name".to_string(), ns_name(ns)),
        ("pcns.team".to_string(), format!("team-{}", ns % 30)),
        ("pcns.env".to_string(), rng.pick(ENVS).to_string()),
    ])
}

fn quoted_set(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    format!("{{{}}}", quoted.join(", "))
}

/// One policy selector or rule selector, in Calico's usual shapes: mostly
/// `app == … && tier in {…}` and namespace-scoped app sets, some `has()`,
/// negations beside a required term, a few `starts with`; about 3 % have no
/// required label (pure negations, ORs over different keys, `all()`,
/// `global()`) and are evaluated against every changed item.
fn selector_text(rng: &mut Rng) -> String {
    let app = app_name(rng.skewed(APPS));
    let ns = ns_name(rng.below(NAMESPACES));
    let tiers: Vec<String> = (0..1 + rng.below(3))
        .map(|_| rng.pick(TIERS).to_string())
        .collect();
    match rng.below(1000) {
        0..=529 => format!("app == \"{app}\" && tier in {}", quoted_set(&tiers)),
        530..=729 => {
            let apps: Vec<String> = (0..1 + rng.below(3))
                .map(|_| app_name(rng.skewed(APPS)))
                .collect();
            format!(
                "projectcalico.org/namespace == \"{ns}\" && app in {}",
                quoted_set(&apps)
            )
        }
        730..=809 => format!(
            "pcns.team == \"team-{}\" && pcns.env == \"{}\" && has(app)",
            rng.below(30),
            rng.pick(ENVS)
        ),
        810..=889 => format!("app == \"{app}\" && !has(canary) && version != \"v0\""),
        890..=919 => format!("tier == \"{}\" && pcns.env != \"dev\"", rng.pick(TIERS)),
        920..=929 => format!(
            "app.kubernetes.io/part-of starts with \"system-{}\"",
            10 + rng.below(30)
        ),
        930..=969 => format!("(app == \"{app}\" || role == \"admin\") && has(release)"),
        970..=984 => r#"!has(role) && pcns.env != "prod" && release not in {"canary"}"#.to_string(),
        985..=997 => format!("app == \"{app}\" || tier == \"{}\"", rng.pick(TIERS)),
        998 => "all()".to_string(),
        _ => "global()".to_string(),
    }
}

struct Workload {
    parents: Vec<(String, BTreeMap<String, String>)>,
    items: Vec<(u32, BTreeMap<String, String>, Vec<String>)>,
    selectors: Vec<(u32, Selector)>,
}

fn workload() -> Workload {
    let mut rng = Rng(0x7477_696c_6c00_0001);
    let parents = (0..NAMESPACES)
        .map(|ns| {
            (
                format!("kns.{}", ns_name(ns)),
                namespace_labels(&mut rng, ns),
            )
        })
        .collect();
    let items = (0..ITEMS)
        .map(|i| {
            let ns = rng.skewed(NAMESPACES);
            (
                i as u32,
                item_labels(&mut rng, ns),
                vec![format!("kns.{}", ns_name(ns))],
            )
        })
        .collect();
    let selectors = (0..SELECTORS)
        .map(|s| {
            (
                s as u32,
                Selector::parse(&selector_text(&mut rng)).expect("generated selectors parse"),
            )
        })
        .collect();
    Workload {
        parents,
        items,
        selectors,
    }
}

type Index = LabelIndex<u32, u32, String>;

fn build(w: &Workload) -> Index {
    let mut index = Index::new();
    for (id, labels) in &w.parents {
        index.update_parent(id.clone(), labels.clone());
    }
    for (id, labels, parents) in &w.items {
        index.update_item(*id, labels.clone(), parents.clone());
    }
    for (id, selector) in &w.selectors {
        index.update_selector(*id, selector.clone());
    }
    index
}

fn bench_parse(c: &mut Criterion) {
    let cases = [
        ("short", r#"app == "web""#),
        (
            "typical",
            r#"app == "svc-12" && tier in {"frontend", "backend"} && !has(canary)"#,
        ),
        (
            "long",
            r#"(projectcalico.org/namespace == "shop" || pcns.team in {"a", "b", "c"}) && app starts with "svc-" && version not in {"v0", "v1"} && !(role == "admin" || has(debug))"#,
        ),
    ];
    let mut group = c.benchmark_group("parse");
    for (name, text) in cases {
        group.bench_function(name, |b| {
            b.iter(|| Selector::parse(black_box(text)).expect("parses"))
        });
    }
    group.finish();
    let typical = Selector::parse(cases[1].1).expect("parses");
    c.bench_function("canonical_id/typical", |b| {
        b.iter(|| black_box(&typical).id())
    });
}

fn bench_evaluate(c: &mut Criterion) {
    let mut rng = Rng(42);
    let labels = item_labels(&mut rng, 3);
    let app = labels["app"].clone();
    let cases = [
        (
            "eq_and_in_match",
            format!(
                r#"app == "{app}" && tier in {{"frontend", "backend", "db", "cache", "worker", "batch"}}"#
            ),
        ),
        ("eq_miss", r#"app == "no-such-app""#.to_string()),
        (
            "negations",
            r#"!has(debug) && version != "v99" && role not in {"x", "y"}"#.to_string(),
        ),
    ];
    let mut group = c.benchmark_group("evaluate");
    for (name, text) in &cases {
        let selector = Selector::parse(text).expect("parses");
        group.bench_function(*name, |b| {
            b.iter(|| black_box(&selector).matches(black_box(&labels)))
        });
    }
    group.finish();
}

fn bench_index(c: &mut Criterion) {
    let w = workload();
    let mut group = c.benchmark_group("index_10k_selectors_x_10k_items");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("initial_build", |b| b.iter(|| black_box(build(&w))));
    group.finish();

    let mut index = build(&w);
    eprintln!(
        "workload: {} items, {} selectors ({} scan), {} matches",
        index.item_count(),
        index.selector_count(),
        index.scan_selector_count(),
        index.match_count()
    );

    let mut group = c.benchmark_group("index_10k_selectors_x_10k_items");
    let mut rng = Rng(7);
    // One pod's labels change: a new app and tier (a redeploy under another
    // name), the most disruptive ordinary change.
    group.bench_function("item_label_change", |b| {
        b.iter_batched(
            || {
                let (id, labels, parents) = &w.items[rng.below(ITEMS)];
                let mut labels = labels.clone();
                labels.insert("app".into(), app_name(rng.skewed(APPS)));
                labels.insert("tier".into(), rng.pick(TIERS).into());
                (*id, labels, parents.clone())
            },
            |(id, labels, parents)| black_box(index.update_item(id, labels, parents)),
            BatchSize::SmallInput,
        )
    });
    // A pod is created and another deleted (churn).
    group.bench_function("item_add_and_remove", |b| {
        let mut next_id = 1_000_000u32;
        b.iter_batched(
            || {
                let ns = rng.skewed(NAMESPACES);
                next_id += 1;
                (
                    next_id,
                    item_labels(&mut rng, ns),
                    vec![format!("kns.{}", ns_name(ns))],
                )
            },
            |(id, labels, parents)| {
                black_box(index.update_item(id, labels, parents));
                black_box(index.remove_item(&id))
            },
            BatchSize::SmallInput,
        )
    });
    // A policy is added and removed again.
    group.bench_function("selector_add_and_remove", |b| {
        b.iter_batched(
            || Selector::parse(&selector_text(&mut rng)).expect("parses"),
            |selector| {
                black_box(index.update_selector(u32::MAX, selector));
                black_box(index.remove_selector(&u32::MAX))
            },
            BatchSize::SmallInput,
        )
    });
    // A namespace's labels change: every pod in it is re-evaluated.
    group.bench_function("namespace_label_change", |b| {
        b.iter_batched(
            || {
                let ns = rng.skewed(NAMESPACES);
                let labels = namespace_labels(&mut rng, ns);
                (format!("kns.{}", ns_name(ns)), labels)
            },
            |(id, labels)| black_box(index.update_parent(id, labels)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_evaluate, bench_index);
criterion_main!(benches);
