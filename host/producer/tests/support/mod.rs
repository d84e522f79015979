//! What the hostile-broker tests share: running a case in a child process, an allocator that
//! refuses what a host under a memory limit would, the peak RSS of the process, and the fake
//! broker ([`broker`]).
//!
//! A case that could abort (an allocation failure is an abort, not a panic) runs in a child:
//! the test binary runs itself again with `--exact <test> --nocapture` and [`CHILD`] set, the
//! child prints what it observed as `observed <key>: <value>` lines, and the parent asserts on
//! its exit status and those lines. A dead child fails its test, not the whole run.

pub mod broker;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child's environment: the test runs its case instead of spawning a child.
pub const CHILD: &str = "WAFKA_HOSTILE_CHILD";

/// The largest single allocation [`Capped`] grants.
pub const ALLOCATION_CAP: usize = 1 << 30;

/// The system allocator, refusing any single allocation over [`ALLOCATION_CAP`] (the process
/// then aborts, as Rust does on a failed allocation). Linux overcommits: a zeroed 4 GiB buffer
/// asked for from a length on the wire would be granted here and only fail on a host with a
/// memory limit; with the cap, it fails here too. Nothing legitimate in these tests comes near.
pub struct Capped;

// SAFETY: every call is forwarded to the system allocator, or refused with a null pointer,
// which GlobalAlloc allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: same layout, as the caller promised.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: allocated by System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether this process is a child running one case.
pub fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Prints one observation for the parent.
pub fn observe(key: &str, value: impl std::fmt::Display) {
    // One line per observation, whatever the value holds.
    let value = value.to_string().replace('\n', "\\n");
    // On a line of its own: the harness may have left "test <name> ... " unfinished.
    println!("\nobserved {key}: {value}");
}

/// What a child did: how it ended and what it observed.
pub struct Child {
    /// `None` when it was killed by a signal (SIGABRT on a failed allocation).
    pub code: Option<i32>,
    pub stderr: String,
    pub observed: HashMap<String, String>,
    pub elapsed: Duration,
}

impl Child {
    /// An observation the child must have made.
    pub fn get(&self, key: &str) -> &str {
        self.observed
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| {
                panic!(
                    "the child did not observe `{key}`; it observed {:?}\nstderr (tail):\n{}",
                    self.observed,
                    tail(&self.stderr)
                )
            })
    }

    /// An observation parsed as a number.
    pub fn number(&self, key: &str) -> u64 {
        let v = self.get(key);
        v.parse()
            .unwrap_or_else(|_| panic!("`{key}` is not a number: {v}"))
    }

    /// Fails unless the child exited with success (not killed by SIGABRT, not panicked).
    pub fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "the child did not exit with success ({}); stderr (tail):\n{}",
            match self.code {
                None => "killed by a signal: an abort?".to_string(),
                Some(c) => format!("exit code {c}"),
            },
            tail(&self.stderr)
        );
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// Runs the test `name` (a top-level test of this binary) in a child process and waits at
/// most `limit` for it (then kills it).
pub fn run_child(name: &str, limit: Duration) -> Child {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            let _ = child.wait();
            panic!(
                "the child `{name}` ran longer than {limit:?}; stdout so far:\n{}",
                out.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let observed = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("observed "))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Child {
        code: status.code(),
        stderr: format!("{stderr}\n(stdout)\n{stdout}"),
        observed,
        elapsed: started.elapsed(),
    }
}

/// The process's peak resident set size (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmHWM in /proc/self/status")
}

/// A runtime for a child's case (the parent side of a test is synchronous).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
