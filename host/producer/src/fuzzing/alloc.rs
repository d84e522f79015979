//! A global allocator for fuzzing binaries that turns a runaway allocation into a failure:
//! any single allocation above one bound, or more bytes live at once than another, prints what
//! was asked (and the input being run, if one was noted with [`note_input`]) and aborts.
//!
//! Owns the counting and the report. Aborting is the only way out: an allocator must not
//! unwind, and an abort is what a harness (or libFuzzer) sees as a crash with its input.
//! Install it in the binary that fuzzes:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: BoundedAlloc = BoundedAlloc::new(256 << 20, 1 << 30);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator with bounds on one allocation and on all live bytes.
pub struct BoundedAlloc {
    single: usize,
    live_limit: usize,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl BoundedAlloc {
    /// At most `single` bytes per allocation and `live` bytes allocated at once.
    pub const fn new(single: usize, live: usize) -> Self {
        BoundedAlloc {
            single,
            live_limit: live,
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The most bytes that were allocated at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Counts `size` more bytes, or aborts past a bound.
    fn take(&self, size: usize) {
        if size > self.single {
            over("one allocation of", size, self.single);
        }
        let live = self.live.fetch_add(size, Ordering::Relaxed) + size;
        if live > self.live_limit {
            over("live bytes reaching", live, self.live_limit);
        }
        self.peak.fetch_max(live, Ordering::Relaxed);
    }

    fn give(&self, size: usize) {
        self.live.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to `System` with the caller's layout; the counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.take(layout.size());
        // SAFETY: the caller's contract is System's.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            self.give(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.take(layout.size());
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            self.give(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.give(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old {
            self.take(new_size - old);
        }
        // SAFETY: as `dealloc`, and `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                self.give(new_size - old);
            }
        } else if new_size < old {
            self.give(old - new_size);
        }
        p
    }
}

thread_local! {
    /// The input this thread runs, for the report (address and length; empty when none).
    static INPUT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// While the guard lives, a bound broken on this thread reports `data` as the input.
pub fn note_input(data: &[u8]) -> NotedInput<'_> {
    let before = INPUT.with(|i| i.replace((data.as_ptr() as usize, data.len())));
    NotedInput {
        before,
        _data: std::marker::PhantomData,
    }
}

/// Keeps an input noted (see [`note_input`]); the one noted before comes back on drop.
pub struct NotedInput<'a> {
    before: (usize, usize),
    _data: std::marker::PhantomData<&'a [u8]>,
}

impl Drop for NotedInput<'_> {
    fn drop(&mut self) {
        INPUT.with(|i| i.set(self.before));
    }
}

/// Reports a broken bound on stderr, without allocating, and aborts.
fn over(what: &str, size: usize, limit: usize) -> ! {
    let mut err = std::io::stderr().lock();
    let mut n = [0u8; 20];
    let _ = err.write_all(b"\nfuzzing: ");
    let _ = err.write_all(what.as_bytes());
    let _ = err.write_all(b" ");
    let _ = err.write_all(decimal(size, &mut n));
    let _ = err.write_all(b" bytes, over the bound of ");
    let _ = err.write_all(decimal(limit, &mut n));
    let _ = err.write_all(b"\n");
    let (addr, len) = INPUT.try_with(Cell::get).unwrap_or((0, 0));
    if addr != 0 {
        // SAFETY: the address and length were those of a live slice borrowed by the guard
        // that noted it, and that guard is still alive (it is dropped after the run).
        let data = unsafe { std::slice::from_raw_parts(addr as *const u8, len) };
        let _ = err.write_all(b"fuzzing: the input (hex): ");
        let digits = b"0123456789abcdef";
        for chunk in data.chunks(64) {
            let mut line = [0u8; 128];
            for (i, b) in chunk.iter().enumerate() {
                line[2 * i] = digits[usize::from(b >> 4)];
                line[2 * i + 1] = digits[usize::from(b & 15)];
            }
            let _ = err.write_all(&line[..2 * chunk.len()]);
        }
        let _ = err.write_all(b"\n");
    }
    let _ = err.flush();
    std::process::abort()
}

fn decimal(mut v: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1_073_741_824, &mut b), b"1073741824");
        assert_eq!(decimal(usize::MAX, &mut b), b"18446744073709551615");
    }

    #[test]
    fn counts_what_is_live() {
        let a = BoundedAlloc::new(100, 1000);
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid layout; freed with it below.
        unsafe {
            let p = a.alloc(layout);
            assert_eq!(a.live(), 64);
            let p = a.realloc(p, layout, 96);
            assert_eq!(a.live(), 96);
            a.dealloc(p, Layout::from_size_align(96, 8).unwrap());
        }
        assert_eq!((a.live(), a.peak()), (0, 96));
    }
}
