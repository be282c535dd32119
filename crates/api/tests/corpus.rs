//! The corpora under `tests/data`: real manifests from Calico's and
//! Kubernetes' documentation must load, validate and round-trip; each
//! invalid manifest must fail with the error its header announces.
//!
//! An invalid file's header lists what it must produce, one line each:
//! `# expect: <field path> | <fragment of the reason>` (the path is
//! `-` for errors without one, e.g. syntax errors; then the fragment is
//! matched against the whole error).

use std::fs;
use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use twill_api::{LoadErrors, Resource, load_str, to_json, to_yaml_documents};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("corpus directory exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    files
}

fn load_file(path: &Path) -> (String, Result<Vec<Resource>, LoadErrors>) {
    let text = fs::read_to_string(path).expect("corpus file is readable");
    let name = path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .to_string();
    let loaded = load_str(&name, &text);
    (text, loaded)
}

#[test]
fn every_documentation_example_loads_validates_and_round_trips() {
    for path in files("valid") {
        let (text, loaded) = load_file(&path);
        assert!(
            text.starts_with("# Source: "),
            "{} must start with a comment naming its source page",
            path.display()
        );
        let resources =
            loaded.unwrap_or_else(|e| panic!("{} failed to load:\n{e}", path.display()));
        assert!(!resources.is_empty(), "{} has no resources", path.display());

        let yaml = to_yaml_documents(&resources).expect("resources serialize to YAML");
        let again = load_str("round-trip.yaml", &yaml).unwrap_or_else(|e| {
            panic!("{} does not reload from YAML:\n{e}\n{yaml}", path.display())
        });
        assert_eq!(
            again,
            resources,
            "{}: YAML round trip changed the resources",
            path.display()
        );

        let json = format!(
            "[{}]",
            resources.iter().map(to_json).collect::<Vec<_>>().join(",")
        );
        let again = load_str("round-trip.json", &json)
            .unwrap_or_else(|e| panic!("{} does not reload from JSON:\n{e}", path.display()));
        assert_eq!(
            again,
            resources,
            "{}: JSON round trip changed the resources",
            path.display()
        );
    }
}

/// `(path, fragment)` pairs from `# expect:` header lines.
fn expectations(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|l| {
            let (path, fragment) = l.split_once(" | ").expect("`# expect: path | fragment`");
            (path.trim().to_string(), fragment.trim().to_string())
        })
        .collect()
}

#[test]
fn every_invalid_manifest_fails_at_the_announced_field() {
    for path in files("invalid") {
        let (text, loaded) = load_file(&path);
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} announces no `# expect:` line",
            path.display()
        );
        let errors = match loaded {
            Ok(resources) => panic!("{} loaded, but must fail: {resources:?}", path.display()),
            Err(errors) => errors,
        };
        for (field, fragment) in &expected {
            let found = errors.errors().iter().any(|e| {
                let path_matches = match e.error.path() {
                    Some(p) => p.to_string() == *field,
                    None => field == "-",
                };
                path_matches && e.to_string().contains(fragment.as_str())
            });
            assert!(
                found,
                "{}: no error at `{field}` containing {fragment:?}; errors were:\n{errors}",
                path.display()
            );
        }
        assert_eq!(
            errors.errors().len(),
            expected.len(),
            "{}: unexpected extra errors:\n{errors}",
            path.display()
        );
    }
}
