//! `wafka new`: writes a plugin project from its language's template and a copy of the SDK.
//! It only writes new files into a new or empty directory; it builds nothing.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::embedded::{self, write_new};
use super::{check_name, Language, SDK_DIR};

/// Writes a new `language` project called `name` into `dir`, which must be new or empty.
pub(crate) fn create(language: Language, dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: `wafka new` writes only into a new or empty directory",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("{}: {e}", dir.display()),
    }
    let template = format!("host/templates/{language}");
    let mut wrote = 0;
    for file in embedded::under(&template) {
        let bytes = match std::str::from_utf8(file.bytes) {
            Ok(text) => fill(text, name).into_bytes(),
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

/// A template's text with its placeholders filled in: `{{name}}`, and for Zig's build.zig.zon
/// the package name (an identifier) and its fingerprint.
fn fill(text: &str, name: &str) -> String {
    let mut text = text.replace("{{name}}", name);
    if text.contains("{{zig_") {
        let zig_name = name.replace('-', "_");
        text = text
            .replace("{{zig_fingerprint}}", &zig_fingerprint(&zig_name))
            .replace("{{zig_name}}", &zig_name);
    }
    text
}

/// A Zig package's fingerprint: a random id (never 0 or all ones) in the low 32 bits, the
/// CRC-32 of its name in the high 32 (what `zig build` checks).
fn zig_fingerprint(name: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let id = (RandomState::new().hash_one(name) as u32).clamp(1, u32::MAX - 1);
    format!("0x{:08x}{id:08x}", crc32(name.as_bytes()))
}

/// CRC-32 (IEEE 802.3, as zlib and Zig's `std.hash.Crc32`).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zig_fingerprints_carry_the_crc_of_the_name() {
        // The values zig 0.17 suggests for packages named `p` and `wafka`.
        assert_eq!(crc32(b"p"), 0x8207_9eb1);
        assert_eq!(crc32(b"wafka"), 0xfeac_0f94);
        let f = zig_fingerprint("my_plugin");
        assert_eq!(&f[..10], format!("0x{:08x}", crc32(b"my_plugin")));
        assert_eq!(f.len(), 18);
    }
}
