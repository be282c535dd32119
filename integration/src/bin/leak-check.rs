//! `leak-check`: lists Twill network namespaces, links, nftables tables and
//! routes left in the host, and exits non-zero if there are any.
//!
//! ```text
//! leak-check            list survivors; exit 1 if there are any
//! leak-check --remove   delete them first (test machines only: it also
//!                       deletes the product's own twill/tw objects)
//! ```
//!
//! Exit status: 0 nothing left, 1 survivors (each printed on stdout),
//! 2 a listing or removal failed or the arguments are wrong. Which names are
//! Twill's is documented in `twill_integration::names`.

use std::process::ExitCode;

use twill_integration::leak;

const USAGE: &str = "usage: leak-check [--remove]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let remove = match args.as_slice() {
        [] => false,
        [flag] if flag == "--remove" => true,
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(remove) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("leak-check: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(remove: bool) -> Result<ExitCode, twill_integration::Error> {
    if remove {
        for survivor in leak::survivors()? {
            leak::remove(&survivor)?;
            println!("removed {survivor}");
        }
    }
    let survivors = leak::survivors()?;
    if survivors.is_empty() {
        println!("leak-check: nothing of Twill's is left");
        return Ok(ExitCode::SUCCESS);
    }
    for survivor in &survivors {
        println!("leaked {survivor}");
    }
    eprintln!(
        "leak-check: {} Twill object(s) left behind",
        survivors.len()
    );
    Ok(ExitCode::from(1))
}
