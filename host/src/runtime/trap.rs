//! Why a call into a plugin failed, in one line.
//!
//! Owns the translation of wasmtime's errors (traps, limiter refusals, host-call errors) into
//! the reason a [`crate::PluginError`] shows. It reads only what the error already holds and
//! never formats it with `{:?}`, which would resolve a captured Rust backtrace (a third of a
//! second and 180 MB when `RUST_BACKTRACE` is set): a plugin's trap costs the host
//! microseconds whatever its environment. It must not decide what happens to the instance.

use wasmtime::{Trap, WasmBacktrace};

use crate::runtime::limits::{Limits, OverLimit};

/// One line saying why a call into a plugin failed.
pub(crate) fn describe(e: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(over) = e.downcast_ref::<OverLimit>() {
        return over.0.clone();
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::MemoryOutOfBounds && deep_recursion(e) {
            // Rust and C guests keep their stack in linear memory: recursing past it runs off
            // the memory instead of off wasmtime's own stack.
            return "stack overflow (deep recursion ran off the plugin's stack)".into();
        }
        return match trap {
            Trap::Interrupt => format!(
                "it ran longer than its CPU time limit of {} ms without returning to the host",
                limits.cpu_time.as_millis()
            ),
            Trap::UnreachableCodeReached => {
                "it panicked or aborted (wasm `unreachable` executed); see its stderr above".into()
            }
            Trap::StackOverflow => "stack overflow".into(),
            other => other.to_string(),
        };
    }
    // The outermost message is often "error while executing at wasm backtrace: ..."; what
    // happened is the innermost cause.
    let root = e
        .chain()
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    let line = root.lines().next().unwrap_or("unknown error");
    one_line(line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == ' '))
}

/// Most characters of plugin-supplied text (an error message, an import's name) the host
/// shows.
const SHOWN_TEXT: usize = 512;

/// Text a plugin chose, made safe to print on one line: control characters (newlines, escape
/// sequences) escaped, and at most [`SHOWN_TEXT`] characters kept.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(SHOWN_TEXT + 16));
    for (n, c) in text.chars().enumerate() {
        if n == SHOWN_TEXT {
            out.push_str(&format!("… ({} bytes)", text.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the trap's wasm backtrace is one function calling itself over and over.
fn deep_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<WasmBacktrace>() else {
        return false;
    };
    // The innermost frame may be a helper (memset filling the frame), so count the most
    // repeated function rather than the top one; the backtrace may be cut short (20 frames
    // were seen).
    let mut counts = std::collections::HashMap::new();
    bt.frames().iter().any(|f| {
        let n = counts
            .entry((f.module().name().map(str::to_owned), f.func_index()))
            .or_insert(0u32);
        *n += 1;
        *n >= 16
    })
}
