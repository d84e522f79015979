//! `wafka build [DIR]`: builds a plugin project into a component and prints its path (see
//! `crate::project`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::project::build;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The project's directory (with its wafka.toml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component (default: DIR/build/NAME.wasm).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let out = build::build(&args.dir, args.output.as_deref())?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}
