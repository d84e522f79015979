//! The one thread that writes plugins' output into the host's log, and the host's own log
//! lines to stderr.
//!
//! Owns a bounded queue (at most [`QUEUE_LINES`] lines and [`QUEUE_BYTES`] bytes) and the
//! thread `wafka-plugin-log` that takes lines off it: a plugin's lines it logs through
//! `tracing` (target `wafka::plugin`, the plugin's name as a field, inside the span the line
//! was written in, so a request's id stays on it); the host's own formatted log lines
//! ([`Stderr`], the command's log writer) it writes to stderr. Whoever queues (a runtime
//! thread in a plugin's host call, a request's task logging its access line) only ever tries:
//! when the queue is full the line is refused at once (a plugin's caller counts it as
//! dropped; the host's lines are counted in [`host_lines_dropped`]), so a log that is slow or
//! stuck (a full pipe) stalls this thread only, never a runtime thread or a request. [`flush`]
//! lets a command wait, before it exits, for what it queued. It must not decide what a plugin
//! may write (see `output`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Most lines waiting to be written.
pub const QUEUE_LINES: usize = 8_192;
/// Most bytes of lines waiting to be written (four times what one call of `wafka run` may
/// write, so that its output is not lost to a log that is merely busy).
pub const QUEUE_BYTES: usize = 4 << 20;

/// A line's level in the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    /// stdout.
    Info,
    /// stderr, and the host's warnings about a plugin's output.
    Warn,
}

enum Message {
    Line {
        /// The plugin that wrote it; `None`: the host's own words (a warning).
        plugin: Option<Arc<str>>,
        level: Level,
        text: Vec<u8>,
        /// Where it was written (a request's span, say).
        span: tracing::Span,
    },
    /// A log line of the host's, formatted: written to stderr as it is.
    Formatted(Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

struct Queue {
    tx: SyncSender<Message>,
    bytes: Arc<AtomicUsize>,
}

fn queue() -> Option<&'static Queue> {
    static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE_LINES);
            let bytes = Arc::new(AtomicUsize::new(0));
            let held = bytes.clone();
            // No thread, no plugin output (counted as dropped): the host goes on.
            std::thread::Builder::new()
                .name("wafka-plugin-log".into())
                .spawn(move || write_all(rx, held))
                .ok()?;
            Some(Queue { tx, bytes })
        })
        .as_ref()
}

/// Queues `text` (without its newline) to be logged at `level` for `plugin`, without waiting;
/// whether it was queued (if not, the queue is full: the caller counts it as dropped).
pub(crate) fn send(plugin: Option<&Arc<str>>, level: Level, text: Vec<u8>) -> bool {
    let Some(q) = queue() else {
        return false;
    };
    let len = text.len();
    if q.bytes.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
        q.bytes.fetch_sub(len, Ordering::Relaxed);
        return false;
    }
    let line = Message::Line {
        plugin: plugin.cloned(),
        level,
        text,
        span: tracing::Span::current(),
    };
    match q.tx.try_send(line) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            q.bytes.fetch_sub(len, Ordering::Relaxed);
            false
        }
    }
}

/// Waits up to `timeout` until every line queued before the call is written (a command about
/// to exit); whether they were.
pub fn flush(timeout: Duration) -> bool {
    let Some(q) = queue() else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    let (done, written) = sync_channel(1);
    let mut message = Message::Flush(done);
    loop {
        match q.tx.try_send(message) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                message = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
    written
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

/// The writer thread: every line, in order, into the log.
fn write_all(rx: Receiver<Message>, bytes: Arc<AtomicUsize>) {
    WRITER.with(|w| w.set(true));
    for message in rx {
        match message {
            Message::Line {
                plugin,
                level,
                text,
                span,
            } => {
                bytes.fetch_sub(text.len(), Ordering::Relaxed);
                let _in = span.enter();
                let text = String::from_utf8_lossy(&text);
                let text = text.trim_end_matches('\r');
                match (plugin.as_deref(), level) {
                    (Some(plugin), Level::Info) => {
                        tracing::info!(target: "wafka::plugin", plugin, "{text}")
                    }
                    (Some(plugin), Level::Warn) => {
                        tracing::warn!(target: "wafka::plugin", plugin, "{text}")
                    }
                    (None, Level::Info) => tracing::info!(target: "wafka::plugin", "{text}"),
                    (None, Level::Warn) => tracing::warn!(target: "wafka::plugin", "{text}"),
                }
            }
            Message::Formatted(line) => {
                bytes.fetch_sub(line.len(), Ordering::Relaxed);
                let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), &line);
            }
            Message::Flush(done) => {
                let _ = done.try_send(());
            }
        }
    }
}

thread_local! {
    /// Whether this is the writer thread (its own log lines go straight to stderr).
    static WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The host's log lines dropped because the queue was full (a stuck or slow stderr).
static HOST_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// How many of the host's own log lines were dropped because the log could not keep up.
pub fn host_lines_dropped() -> usize {
    HOST_DROPPED.load(Ordering::Relaxed)
}

/// The log writer a command installs (`tracing_subscriber::fmt().with_writer(Stderr)`): each
/// formatted line is queued for the writer thread, never written on the caller's thread, and
/// dropped (counted) when the queue is full.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The writer thread logging a plugin's line: it is the one that writes anyway.
        if WRITER.with(|w| w.get()) {
            return std::io::stderr().lock().write(buf);
        }
        let queued = queue().is_some_and(|q| {
            let len = buf.len();
            if q.bytes.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
                q.bytes.fetch_sub(len, Ordering::Relaxed);
                return false;
            }
            match q.tx.try_send(Message::Formatted(buf.to_vec())) {
                Ok(()) => true,
                Err(_) => {
                    q.bytes.fetch_sub(len, Ordering::Relaxed);
                    false
                }
            }
        });
        if !queued {
            HOST_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
