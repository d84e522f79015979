//! `wafka new LANG DIR`: starts a plugin project (see `crate::project`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::project::{check_name, new, Language};

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The plugin's language.
    #[arg(value_enum)]
    language: Language,
    /// The project's directory: new or empty.
    dir: PathBuf,
    /// The plugin's name (default: the directory's name): lowercase letters, digits, - and _.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: NewArgs) -> Result<ExitCode> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => std::path::absolute(&args.dir)
            .ok()
            .and_then(|dir| Some(dir.file_name()?.to_str()?.to_string()))
            .with_context(|| format!("{} has no name: give one with --name", args.dir.display()))?,
    };
    if args.name.is_none() {
        // Taken from the directory: say how to give another.
        check_name(&name).map_err(|e| anyhow::anyhow!("{e} (give another with --name)"))?;
    }
    new::create(args.language, &args.dir, &name)?;
    let dir = args.dir.display();
    println!("wrote the {} plugin `{name}` to {dir}", args.language);
    println!("  build it:  wafka build {dir}");
    println!("  try it:    echo hello | wafka test {dir}/build/{name}.wasm");
    println!("  its tests, and more: {dir}/README.md");
    Ok(ExitCode::SUCCESS)
}
