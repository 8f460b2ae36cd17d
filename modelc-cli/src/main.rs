//! `modelc import model.keras --out src/model.rs --weights model.safetensors`: a Keras model file
//! becomes `model!` source and safetensors weights (see the `modelc_cli` library for `build.rs` use).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: modelc import <model.keras | model.h5> --out <model.rs> --weights <model.safetensors>";

/// The paths of an `import` command line.
fn parse(args: &[String]) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("import") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown command `{other}`\n{USAGE}")),
    }
    let (mut model, mut out, mut weights) = (None, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" | "-o" => out = it.next().map(PathBuf::from),
            "--weights" | "-w" => weights = it.next().map(PathBuf::from),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n{USAGE}")),
            s if model.is_none() => model = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument `{s}`\n{USAGE}")),
        }
    }
    match (model, out, weights) {
        (Some(m), Some(o), Some(w)) => Ok((m, o, w)),
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, out, weights) = match parse(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match modelc_cli::import(&model, &out, &weights) {
        Ok(c) => {
            println!("wrote {} (model `{}`) and {} ({} tensors)", out.display(), c.model, weights.display(), c.weights.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", model.display());
            ExitCode::FAILURE
        }
    }
}
