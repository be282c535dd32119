//! Writes one CustomResourceDefinition YAML file per Twill kind.
//!
//! Usage: `crdgen [DIR]` (default `manifests/crds`). Files are named
//! `<group>_<plural>.yaml`; previously generated files that no longer match
//! a kind are removed, other files are left alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::{fs, io};

use twill_api::crd::{GENERATED_HEADER, generated_files};

fn run(dir: PathBuf) -> Result<usize, Box<dyn std::error::Error>> {
    let files = generated_files()?;
    fs::create_dir_all(&dir)?;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let stale = name.ends_with(".yaml")
            && !files.contains_key(&name)
            && fs::read_to_string(&path).is_ok_and(|t| t.starts_with(GENERATED_HEADER));
        if stale {
            fs::remove_file(&path)?;
            println!("removed {}", path.display());
        }
    }
    for (name, text) in &files {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(old) if old == *text => continue,
            Ok(_) | Err(_) => {}
        }
        fs::write(&path, text)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(files.len())
}

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("manifests/crds"), PathBuf::from);
    match run(dir.clone()) {
        Ok(count) => {
            println!("{count} CRDs up to date in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}
