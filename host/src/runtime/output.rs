//! A plugin's stdout and stderr, sent line by line to the host's log tagged with the plugin.
//!
//! Owns the WASI output streams given to plugins and their budget: at most
//! [`MAX_OUTPUT_PER_CALL`] bytes (both streams together) per call into the plugin reach the
//! log; the rest of that call's output is dropped, with one warning. It must not give plugins
//! anything else.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Which stream a plugin wrote to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Most bytes of stdout and stderr together that one call into a plugin may log.
pub const MAX_OUTPUT_PER_CALL: usize = 1 << 20;

/// Bytes an instance has written in the current call (shared by its two streams).
#[derive(Clone, Default)]
pub(crate) struct OutputBudget(Arc<AtomicUsize>);

impl OutputBudget {
    /// A new call: the whole budget again.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Counts `n` bytes; whether they fit in this call's budget.
    fn take(&self, n: usize, log: &PluginLog) -> bool {
        let before = self.0.fetch_add(n, Ordering::Relaxed);
        if before + n <= MAX_OUTPUT_PER_CALL {
            return true;
        }
        if before <= MAX_OUTPUT_PER_CALL {
            tracing::warn!(
                target: "wafka::plugin",
                plugin = &*log.plugin,
                "wrote more than {MAX_OUTPUT_PER_CALL} bytes to stdout and stderr in one call; the rest of this call's output is dropped"
            );
        }
        false
    }
}

/// A WASI output stream that logs complete lines (and what is left at the end).
#[derive(Clone)]
pub(crate) struct PluginLog {
    plugin: Arc<str>,
    stream: Stream,
    budget: OutputBudget,
}

impl PluginLog {
    pub(crate) fn new(plugin: Arc<str>, stream: Stream, budget: OutputBudget) -> Self {
        PluginLog {
            plugin,
            stream,
            budget,
        }
    }
}

impl IsTerminal for PluginLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    log: PluginLog,
    pending: Vec<u8>,
}

/// Longest line kept before it is logged anyway.
const MAX_LINE: usize = 8192;

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let plugin = &*self.log.plugin;
        match self.log.stream {
            Stream::Stdout => tracing::info!(target: "wafka::plugin", plugin, "{text}"),
            Stream::Stderr => tracing::warn!(target: "wafka::plugin", plugin, "{text}"),
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.log.budget.take(buf.len(), &self.log) {
            // Written, as far as the plugin can tell.
            return Poll::Ready(Ok(buf.len()));
        }
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}
