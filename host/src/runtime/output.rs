//! A plugin's stdout and stderr, sent line by line to the host's log tagged with the plugin.
//!
//! Owns the WASI output streams given to plugins and their budget: at most
//! [`MAX_OUTPUT_PER_CALL`] bytes (both streams together) per call into the plugin reach the
//! log; the rest of that call's output is dropped, with one warning. Every handle a plugin
//! opens on a stream shares that stream's one line buffer (at most [`MAX_LINE`] bytes) and no
//! handle starts a task, so holding many handles costs the host next to nothing. It must not
//! give plugins anything else.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Most bytes of stdout and stderr together that one call into a plugin may log.
pub const MAX_OUTPUT_PER_CALL: usize = 1 << 20;

/// Longest line kept before it is logged anyway.
const MAX_LINE: usize = 8192;

/// Most bytes one `write` may carry (what `check-write` answers).
const MAX_WRITE: usize = 64 << 10;

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

/// One stream of one instance: where its lines go, and the partial line not yet logged.
struct Shared {
    plugin: Arc<str>,
    stream: Stream,
    budget: OutputBudget,
    pending: Mutex<Vec<u8>>,
}

impl Shared {
    /// Takes `buf` into the log, whole lines at a time, within the call's budget.
    fn write(&self, buf: &[u8]) {
        let before = self.budget.0.fetch_add(buf.len(), Ordering::Relaxed);
        if before + buf.len() > MAX_OUTPUT_PER_CALL {
            if before <= MAX_OUTPUT_PER_CALL {
                tracing::warn!(
                    target: "wafka::plugin",
                    plugin = &*self.plugin,
                    "wrote more than {MAX_OUTPUT_PER_CALL} bytes to stdout and stderr in one call; the rest of this call's output is dropped"
                );
            }
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(buf);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if pending.len() > MAX_LINE {
            let line = std::mem::take(&mut *pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let plugin = &*self.plugin;
        match self.stream {
            Stream::Stdout => tracing::info!(target: "wafka::plugin", plugin, "{text}"),
            Stream::Stderr => tracing::warn!(target: "wafka::plugin", plugin, "{text}"),
        }
    }
}

impl Drop for Shared {
    /// The instance is gone: what is left of a line is logged.
    fn drop(&mut self) {
        let pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !pending.is_empty() {
            self.emit(&pending);
        }
    }
}

/// A WASI output stream that logs complete lines (and what is left at the end).
#[derive(Clone)]
pub(crate) struct PluginLog(Arc<Shared>);

impl PluginLog {
    pub(crate) fn new(plugin: Arc<str>, stream: Stream, budget: OutputBudget) -> Self {
        PluginLog(Arc::new(Shared {
            plugin,
            stream,
            budget,
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
