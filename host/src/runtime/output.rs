//! A plugin's stdout and stderr, sent line by line to the host's log tagged with the plugin.
//!
//! Owns the WASI output streams given to plugins and what may go through them: at most
//! [`MAX_OUTPUT_PER_CALL`] bytes (both streams together) per call into the plugin, and, where
//! the plugin has an [`OutputRate`] (a serve tenant's, shared by all its instances), at most
//! that byte rate. What is over either is dropped and counted, with one warning: per call
//! without a rate (`wafka run`), per [`WARNING_EVERY`] with one. Lines are handed to the log's
//! writer thread (`log_writer`), never written on the caller's thread. Every handle a plugin
//! opens on a stream shares that stream's one line buffer (at most [`MAX_LINE`] bytes) and no
//! handle starts a task, so holding many handles costs the host next to nothing. It must not
//! give plugins anything else.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::runtime::bucket::TokenBucket;
use crate::runtime::log_writer::{self, Level};

/// Most bytes of stdout and stderr together that one call into a plugin may log.
pub const MAX_OUTPUT_PER_CALL: usize = 1 << 20;

/// Longest line kept before it is logged anyway.
pub const MAX_LINE: usize = 8192;

/// Most bytes one `write` may carry (what `check-write` answers).
const MAX_WRITE: usize = 64 << 10;

/// Least time between two warnings that an [`OutputRate`] dropped output.
pub const WARNING_EVERY: Duration = Duration::from_secs(10);

/// Which stream a plugin wrote to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Bytes an instance has written in the current call (shared by its two streams).
#[derive(Clone, Default)]
pub(crate) struct OutputBudget(Arc<AtomicUsize>);

impl OutputBudget {
    /// A new call: the whole budget again.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Where an [`OutputRate`] counts what its plugins wrote (a serve tenant's metrics).
pub trait OutputCounts: Send + Sync + std::fmt::Debug {
    /// `bytes` of output (lines, with their newline) were queued for the log.
    fn logged(&self, bytes: u64);
    /// `bytes` of output were dropped: over the rate, over a call's budget, or the log's queue
    /// was full.
    fn dropped(&self, bytes: u64);
}

/// A byte rate, with a burst, for the output of every instance given it (a tenant's): lines
/// past it are dropped whole and counted, with at most one warning per [`WARNING_EVERY`].
#[derive(Debug)]
pub struct OutputRate {
    /// Who it limits, for the warning (`tenant `acme``).
    who: String,
    bucket: TokenBucket,
    counts: Arc<dyn OutputCounts>,
    /// When the last warning was queued, and the bytes dropped since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl OutputRate {
    /// `per_second` bytes a second, `burst` at once (0 bytes a second: nothing is logged), for
    /// `who`; what is logged and dropped is counted in `counts`.
    pub fn new(
        who: impl Into<String>,
        per_second: u64,
        burst: u64,
        counts: Arc<dyn OutputCounts>,
    ) -> Self {
        let burst = if per_second == 0 { 0 } else { burst };
        OutputRate {
            who: who.into(),
            bucket: TokenBucket::new(per_second, burst),
            counts,
            warned: Mutex::new((None, 0)),
        }
    }

    /// Whether a line of `bytes` may be logged now (if so, it is counted against the rate).
    fn admit(&self, bytes: usize) -> bool {
        if self.bucket.take(bytes as u64, Instant::now()).is_ok() {
            return true;
        }
        self.dropped(bytes);
        false
    }

    /// Counts `bytes` dropped; warns if the last warning is [`WARNING_EVERY`] old.
    fn dropped(&self, bytes: usize) {
        self.counts.dropped(bytes as u64);
        let now = Instant::now();
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        w.1 += bytes as u64;
        if w.0
            .is_some_and(|at| now.saturating_duration_since(at) < WARNING_EVERY)
        {
            return;
        }
        let text = format!(
            "{}: its plugins write more to stdout and stderr than its output rate ({} bytes/s, bursts of {}); what is over it is dropped ({} bytes since the last warning; at most one warning every {} s)",
            self.who,
            self.bucket.per_second(),
            self.bucket.burst(),
            w.1,
            WARNING_EVERY.as_secs()
        );
        *w = (Some(now), 0);
        drop(w);
        // A full queue loses the warning, not the count.
        log_writer::send(None, Level::Warn, text.into_bytes());
    }
}

/// One stream of one instance: where its lines go, and the partial line not yet logged.
struct Shared {
    plugin: Arc<str>,
    stream: Stream,
    budget: OutputBudget,
    rate: Option<Arc<OutputRate>>,
    pending: Mutex<Vec<u8>>,
}

impl Shared {
    /// Takes `buf` into the log, whole lines at a time, within the call's budget.
    fn write(&self, buf: &[u8]) {
        let before = self.budget.0.fetch_add(buf.len(), Ordering::Relaxed);
        if before + buf.len() > MAX_OUTPUT_PER_CALL {
            match &self.rate {
                Some(rate) => rate.dropped(buf.len()),
                None if before <= MAX_OUTPUT_PER_CALL => {
                    let text = format!(
                        "wrote more than {MAX_OUTPUT_PER_CALL} bytes to stdout and stderr in one call; the rest of this call's output is dropped"
                    );
                    log_writer::send(Some(&self.plugin), Level::Warn, text.into_bytes());
                }
                None => {}
            }
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(buf);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=i).collect();
            line.pop();
            self.emit(line);
        }
        // A line too long is logged in pieces of MAX_LINE bytes (a rate's burst passes any).
        while pending.len() > MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            let line = std::mem::replace(&mut *pending, rest);
            self.emit(line);
        }
    }

    /// Queues one line for the log, within the rate; counts it either way.
    fn emit(&self, line: Vec<u8>) {
        // The newline counts: a plugin writing empty lines is not free.
        let bytes = line.len() + 1;
        if let Some(rate) = &self.rate {
            if !rate.admit(bytes) {
                return;
            }
        }
        let level = match self.stream {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warn,
        };
        let queued = log_writer::send(Some(&self.plugin), level, line);
        if let Some(rate) = &self.rate {
            if queued {
                rate.counts.logged(bytes as u64);
            } else {
                rate.counts.dropped(bytes as u64);
            }
        }
    }
}

impl Drop for Shared {
    /// The instance is gone: what is left of a line is logged.
    fn drop(&mut self) {
        let pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !pending.is_empty() {
            self.emit(pending);
        }
    }
}

/// A WASI output stream that logs complete lines (and what is left at the end).
#[derive(Clone)]
pub(crate) struct PluginLog(Arc<Shared>);

impl PluginLog {
    pub(crate) fn new(
        plugin: Arc<str>,
        stream: Stream,
        budget: OutputBudget,
        rate: Option<Arc<OutputRate>>,
    ) -> Self {
        PluginLog(Arc::new(Shared {
            plugin,
            stream,
            budget,
            rate,
            pending: Mutex::new(Vec::new()),
        }))
    }
}

impl IsTerminal for PluginLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for PluginLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_WRITE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginLog {
    /// Always ready: writing only appends to the line buffer.
    async fn ready(&mut self) {}
}

impl AsyncWrite for PluginLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[derive(Debug, Default)]
    struct Counts {
        logged: AtomicU64,
        dropped: AtomicU64,
    }

    impl OutputCounts for Counts {
        fn logged(&self, bytes: u64) {
            self.logged.fetch_add(bytes, Ordering::Relaxed);
        }
        fn dropped(&self, bytes: u64) {
            self.dropped.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn stream(rate: &Arc<OutputRate>) -> Shared {
        Shared {
            plugin: Arc::from("t/p"),
            stream: Stream::Stderr,
            budget: OutputBudget::default(),
            rate: Some(rate.clone()),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Past the burst, lines are dropped whole and counted; logged and dropped add up to what
    /// was written; one warning per window.
    #[test]
    fn a_rate_drops_whole_lines_past_its_burst_and_counts_them() {
        let counts = Arc::new(Counts::default());
        let rate = Arc::new(OutputRate::new("tenant `t`", 1, 16 << 10, counts.clone()));
        let s = stream(&rate);
        let line = [b"e".repeat(1023), b"\n".to_vec()].concat();
        for _ in 0..100 {
            s.write(&line);
        }
        let (logged, dropped) = (
            counts.logged.load(Ordering::Relaxed),
            counts.dropped.load(Ordering::Relaxed),
        );
        assert_eq!(logged, 16 << 10, "the burst, in whole lines");
        assert_eq!(logged + dropped, 100 << 10);
        assert!(rate.warned.lock().unwrap().0.is_some());
    }

    /// A line with no end is logged in pieces of at most MAX_LINE bytes, any of which a
    /// rate's burst lets through; past a call's budget, writes count as dropped.
    #[test]
    fn long_lines_are_cut_and_a_calls_budget_counts_as_dropped() {
        let counts = Arc::new(Counts::default());
        let rate = Arc::new(OutputRate::new("tenant `t`", 1, 16 << 10, counts.clone()));
        let s = stream(&rate);
        s.write(&vec![b'x'; 64 << 10]);
        // Seven pieces of 8 KiB (and their newlines) go; the eighth waits for more. The
        // burst takes the first.
        let piece = MAX_LINE as u64 + 1;
        assert_eq!(counts.logged.load(Ordering::Relaxed), piece);
        assert_eq!(counts.dropped.load(Ordering::Relaxed), 6 * piece);
        // Over the call's 1 MiB: dropped as it comes.
        s.write(&vec![b'x'; MAX_OUTPUT_PER_CALL]);
        assert_eq!(
            counts.dropped.load(Ordering::Relaxed),
            6 * piece + MAX_OUTPUT_PER_CALL as u64
        );
    }
}
