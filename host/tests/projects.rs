//! `wafka new` and `wafka build`, as a plugin author uses them, in every language: a new
//! project's own unit tests pass against its SDK's fake host (run as its README says), it
//! builds into a component that `wafka test` runs, with failures injected, and that publishes
//! through a real broker under `wafka run` (read back with librdkafka). And the mistakes an
//! author makes get one line each: a non-empty directory, a directory that is not a project, a
//! plugin that does not compile.
//!
//! Projects go to a temporary directory; toolchains and build caches to
//! ${WAFKA_CACHE:-~/.cache/wafka} (Rust: `project-target`, `project-native`), so a second run is
//! quick.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wafka_tests::{brokers, consume_exactly, create_topic};

fn cache() -> PathBuf {
    match std::env::var_os("WAFKA_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/wafka"),
    }
}

/// A fresh directory for `name`'s project (removed first if an earlier run left it).
fn project_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wafka-projects-{}", std::process::id()));
    let project = dir.join(name);
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(&dir).unwrap();
    project
}

/// `wafka ARGS` with Rust builds kept apart from the workspace's own target directory (cargo
/// holds that one while these tests run).
fn wafka(args: &[&str], input: &[u8]) -> support::Outcome {
    let target = cache().join("project-target");
    support::wafka_with_env(
        args,
        &[input],
        Duration::ZERO,
        "warn",
        &[("CARGO_TARGET_DIR", target.as_os_str())],
    )
}

/// Runs `program args` in `dir`; panics with its output unless it succeeds.
fn succeeds(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The project's own unit tests, run as its README tells its author.
fn unit_tests(language: &str, dir: &Path) {
    match language {
        "rust" => {
            let target = cache().join("project-native").display().to_string();
            succeeds(
                dir,
                "cargo",
                &["test", "-q"],
                &[("CARGO_TARGET_DIR", target)],
            );
        }
        "go" => succeeds(
            dir,
            "bash",
            &[
                "-c",
                "source .wafka/guest-sdk/toolchain.sh && wafka_need_go && \"$GO\" test ./...",
            ],
            &[],
        ),
        "python" => succeeds(
            dir,
            "python3",
            &["-m", "unittest", "-q"],
            &[("PYTHONPATH", ".wafka/guest-sdk/python".into())],
        ),
        "js" => succeeds(dir, "npm", &["test", "--silent"], &[]),
        "c" => succeeds(
            dir,
            ".wafka/guest-sdk/c/test.sh",
            &["plugin.c", "plugin_test.c"],
            &[],
        ),
        "zig" => {
            succeeds(dir, ".wafka/guest-sdk/zig/test.sh", &["plugin.zig"], &[]);
            // The same through the SDK's build.zig module, and the component with `zig build`.
            succeeds(
                dir,
                "bash",
                &[
                    "-c",
                    "source .wafka/guest-sdk/toolchain.sh && wafka_need_zig && \"$ZIG\" build test && \"$ZIG\" build",
                ],
                &[],
            );
            let name = dir.file_name().unwrap().to_str().unwrap();
            assert!(dir.join(format!("zig-out/{name}.wasm")).is_file());
        }
        other => panic!("no unit test command for {other}"),
    }
}

fn new_project(language: &str) {
    let name = format!("greeter-{language}");
    let dir = project_dir(&name);
    let dir_arg = dir.to_str().unwrap();

    let out = wafka(&["new", language, dir_arg], b"");
    assert!(out.ok, "{language}: wafka new: {}", out.stderr);
    assert!(
        out.stdout.contains(&format!("wafka build {dir_arg}")),
        "{}",
        out.stdout
    );
    assert!(dir.join("README.md").is_file() && dir.join("wafka.toml").is_file());
    assert!(dir.join(".wafka/wit/producer.wit").is_file());

    unit_tests(language, &dir);

    let out = wafka(&["build", dir_arg], b"");
    assert!(out.ok, "{language}: wafka build: {}", out.stderr);
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    assert_eq!(
        out.stdout.trim(),
        wasm.to_str().unwrap(),
        "{language}: the path, only"
    );
    let wasm_arg = wasm.to_str().unwrap();

    // Without a broker: the records it would publish, as JSON lines.
    let out = wafka(
        &["test", wasm_arg, "--config", "topic=events"],
        b"one\ntwo\n",
    );
    assert!(out.ok, "{language}: wafka test: {}", out.stderr);
    let records: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{language}: {}", out.stdout);
    for (n, (record, value)) in records.iter().zip(["one", "two"]).enumerate() {
        assert_eq!(record["topic"], "events", "{language}: {record}");
        assert_eq!(record["value"], value, "{language}: {record}");
        assert_eq!(record["offset"], n, "{language}: {record}");
        assert_eq!(
            record["headers"],
            serde_json::json!([["plugin", name]]),
            "{language}: {record}"
        );
    }
    // An injected refusal reaches the author in one line per event, nothing published.
    let out = wafka(
        &[
            "test",
            wasm_arg,
            "--config",
            "topic=events",
            "--fail-topic",
            "events=not-authorized",
        ],
        b"one\n",
    );
    assert!(out.stdout.is_empty(), "{language}: {}", out.stdout);
    assert!(
        out.stderr.contains("not authorized: events"),
        "{language}: {}",
        out.stderr
    );

    // Through a real broker, read back with librdkafka.
    let topic = create_topic(&format!("project-{language}"), 1);
    let config = format!("topic={topic}");
    let out = wafka(
        &["run", wasm_arg, "-b", &brokers(), "--config", &config],
        b"first\nsecond\n",
    );
    assert!(out.ok, "{language}: wafka run: {}", out.stderr);
    let got = consume_exactly(&brokers(), &topic, 2, Duration::from_secs(60));
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        [b"first".to_vec(), b"second".to_vec()],
        "{language}"
    );
    assert_eq!(
        got[0].headers,
        vec![("plugin".to_string(), Some(name.as_bytes().to_vec()))]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

macro_rules! languages {
    ($($lang:ident),* $(,)?) => {
        mod new_project {
            $(
                #[test]
                fn $lang() {
                    super::new_project(stringify!($lang));
                }
            )*
        }
    };
}

languages!(rust, c, zig, python, js, go);

#[test]
fn new_refuses_a_directory_that_is_not_empty_and_names_it_cannot_use() {
    let dir = project_dir("occupied");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = wafka(&["new", "python", dir.to_str().unwrap()], b"");
    assert!(!out.ok);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "wafka: {} is not empty: `wafka new` writes only into a new or empty directory",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing written"
    );

    let bad = project_dir("Bad Name");
    let out = wafka(&["new", "go", bad.to_str().unwrap()], b"");
    assert!(!out.ok);
    assert!(
        out.stderr
            .trim()
            .starts_with("wafka: the plugin name `Bad Name` is not allowed")
            && out.stderr.trim().ends_with("(give another with --name)"),
        "{}",
        out.stderr
    );
    assert!(!bad.exists(), "nothing written");
}

#[test]
fn build_explains_a_directory_that_is_not_a_project_and_a_plugin_that_does_not_build() {
    let dir = project_dir("not-a-project");
    std::fs::create_dir_all(&dir).unwrap();
    let out = wafka(&["build", dir.to_str().unwrap()], b"");
    assert!(!out.ok);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "wafka: {} is not a wafka plugin project: it has no wafka.toml (start one with `wafka new LANG DIR`)",
            dir.display()
        )
    );

    let dir = project_dir("broken");
    assert!(wafka(&["new", "python", dir.to_str().unwrap()], b"").ok);
    std::fs::write(dir.join("plugin.py"), "def handle(event:\n").unwrap();
    let out = wafka(&["build", dir.to_str().unwrap()], b"");
    assert!(!out.ok);
    assert!(out.stdout.is_empty(), "no path printed: {}", out.stdout);
    let last = out.stderr.trim().lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "wafka: building `broken` (python) failed: see the build's output above"
    );
    assert!(out.stderr.contains("SyntaxError"), "{}", out.stderr);
    assert!(!dir.join("build/broken.wasm").exists());
}

/// As `wafka new` tells its user: from the directory above, with relative paths; `--name`
/// names the plugin apart from its directory and `-o` puts the component elsewhere.
#[test]
fn new_and_build_take_relative_paths_a_name_and_an_output() {
    let parent = project_dir("relative");
    std::fs::create_dir_all(&parent).unwrap();
    let wafka = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wafka"))
            .args(args)
            .current_dir(&parent)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    // A name of its own (it is in the component's bytes): a component no earlier run compiled.
    let nanos = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_nanos();
    let name = format!("shouter-{}-{nanos}", std::process::id());
    let (ok, stdout, stderr) = wafka(&["new", "c", "app", "--name", &name]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("wafka build app"), "{stdout}");
    let manifest = std::fs::read_to_string(parent.join("app/wafka.toml")).unwrap();
    assert!(
        manifest.contains(&format!("name = \"{name}\"")),
        "{manifest}"
    );

    let (ok, stdout, stderr) = wafka(&["build", "app"]);
    assert!(ok, "{stderr}");
    let built = parent.join(format!("app/build/{name}.wasm"));
    assert_eq!(stdout.trim(), built.to_str().unwrap());
    assert!(built.is_file());
    // `wafka build` compiled it once, into the compile cache `wafka test` and `run` read.
    let (ok, _, stderr) = wafka(&["test", built.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("from the compile cache"), "{stderr}");

    let (ok, stdout, stderr) = wafka(&["build", "app", "-o", "out/x.wasm"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), parent.join("out/x.wasm").to_str().unwrap());
    assert!(parent.join("out/x.wasm").is_file());
    let _ = std::fs::remove_dir_all(&parent);
}
