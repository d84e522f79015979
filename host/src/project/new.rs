//! `wafka new`: writes a plugin project from its language's template and a copy of the SDK.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::embedded::{self, write_new};
use super::{check_name, Language, SDK_DIR};

/// Writes a new `language` project called `name` into `dir`, which must be new or empty.
pub(crate) fn create(language: Language, dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} is not empty: `wafka new` writes only into a new or empty directory",
                dir.display()
            );
        }
    } else if dir.exists() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let template = format!("host/templates/{language}");
    let mut wrote = 0;
    for file in embedded::under(&template) {
        let bytes = match std::str::from_utf8(file.bytes) {
            Ok(text) => text.replace("{{name}}", name).into_bytes(),
            Err(_) => file.bytes.to_vec(),
        };
        write_new(&dir.join(file.path), &bytes, file.executable)?;
        wrote += 1;
    }
    if wrote == 0 {
        bail!("this wafka has no template for {language} (built without host/templates?)");
    }
    write_sdk(language, &dir.join(SDK_DIR))
}

/// The SDK copy: `.wafka/` mirrors the repository's layout (guest-sdk/<lang>, guest-sdk's
/// toolchain script and tools, wit/), so the SDK's relative paths (`../../wit`) hold.
fn write_sdk(language: Language, sdk: &Path) -> Result<()> {
    let mut parts = vec![
        "wit".to_string(),
        "guest-sdk/toolchain.sh".to_string(),
        format!("guest-sdk/{language}"),
    ];
    if language.needs_guest_tools() {
        parts.push("guest-sdk/tools".to_string());
    }
    if language == Language::Zig {
        // Zig's unit tests run against the C SDK's fake host.
        parts.push("guest-sdk/c/include".to_string());
        parts.push("guest-sdk/c/testing".to_string());
    }
    for part in &parts {
        for file in embedded::under(part) {
            write_new(&sdk.join(file.repository_path), file.bytes, file.executable)?;
        }
    }
    let readme = format!(
        "This is a copy of the {language} SDK of wafka {version}, its contract (wit/) and its\n\
         build tools, written by `wafka new`: the project builds and tests with it offline.\n\
         `wafka build` runs guest-sdk/{language}/build.sh from here. To move to a newer wafka,\n\
         replace this directory with the one a newer `wafka new {language}` writes.\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    write_new(&sdk.join("README.md"), readme.as_bytes(), false).context("writing the SDK copy")
}
