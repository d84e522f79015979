//! Running the `wafka` binary from the host's integration tests (shared by `cli.rs` and
//! `languages.rs`; each includes it with `mod support;` and uses part of it).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a `wafka` command left behind.
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wafka ARGS...` with `WAFKA_LOG=log`, writes `input`'s chunks to its stdin, closes it
/// and waits for the command to exit.
///
/// With a non-zero `gap`, the chunks are written `gap` apart, starting once `wafka run` says
/// the plugin is loaded (events written earlier would wait in the pipe during a slow load and
/// arrive together).
pub fn wafka(args: &[&str], input: &[&[u8]], gap: Duration, log: &str) -> Outcome {
    wafka_with_env(args, input, gap, log, &[])
}

/// [`wafka`] with more environment variables for the command.
pub fn wafka_with_env(
    args: &[&str],
    input: &[&[u8]],
    gap: Duration,
    log: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wafka"))
        .args(args)
        .env("WAFKA_LOG", log)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wafka");
    let stderr = Arc::new(Mutex::new(String::new()));
    let collector = {
        let (pipe, stderr) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let line = line.unwrap_or_else(|e| format!("(unreadable line: {e})"));
                let mut all = stderr.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        })
    };
    if !gap.is_zero() {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !stderr.lock().unwrap().contains("loaded `") {
            let exited = child.try_wait().unwrap().is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "wafka did not load the plugin"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    for (n, chunk) in input.iter().enumerate() {
        if n > 0 {
            std::thread::sleep(gap);
        }
        stdin.write_all(chunk).unwrap();
        stdin.flush().unwrap();
    }
    drop(stdin);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    collector.join().unwrap();
    let stderr = std::mem::take(&mut *stderr.lock().unwrap());
    Outcome {
        ok: status.success(),
        stdout,
        stderr,
    }
}

/// `wafka SUBCOMMAND ARGS...` fed `input` at once: whether it succeeded, and its stderr.
pub fn wafka_at_once(subcommand: &str, args: &[&str], input: &str, log: &str) -> (bool, String) {
    let mut all = vec![subcommand];
    all.extend_from_slice(args);
    let out = wafka(&all, &[input.as_bytes()], Duration::ZERO, log);
    (out.ok, out.stderr)
}
