//! Choosing a partition for a record, as the Java client does.
//!
//! Owns the rules: an explicit partition wins; a keyed record goes to
//! `toPositive(murmur2(key)) % partitions`; a record without key (or with
//! `partitioner.ignore.keys=true`) goes to the topic's sticky partition, which moves to another
//! partition, uniformly at random, after `batch.size` bytes were sent to it (KIP-794).
//! It must not look at metadata beyond the partition count it is given.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use rand::Rng;

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client picks for `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The uniform sticky partition of one topic (KIP-794).
#[derive(Debug)]
pub struct StickyPartition {
    current: AtomicI32,
    produced: AtomicUsize,
}

impl Default for StickyPartition {
    fn default() -> Self {
        StickyPartition {
            current: AtomicI32::new(-1),
            produced: AtomicUsize::new(0),
        }
    }
}

impl StickyPartition {
    /// The partition for a record of `size` bytes without key, moving on once `batch_size`
    /// bytes went to the current one.
    pub fn next(&self, size: usize, batch_size: usize, partitions: i32) -> i32 {
        let mut current = self.current.load(Ordering::Relaxed);
        let produced = self.produced.fetch_add(size, Ordering::Relaxed);
        if current < 0 || current >= partitions || produced >= batch_size {
            let previous = current;
            current = if partitions == 1 {
                0
            } else {
                let mut rng = rand::rng();
                loop {
                    let p = rng.random_range(0..partitions);
                    if p != previous {
                        break p;
                    }
                }
            };
            self.current.store(current, Ordering::Relaxed);
            self.produced.store(size, Ordering::Relaxed);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_vectors() {
        // Vectors from the Java client's own tests of Utils.murmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), *want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn keyed_partition_is_positive_modulo() {
        for p in 1..20 {
            let got = partition_for_key(b"foobar", p);
            assert_eq!(got, (-790332482i32 & 0x7fffffff) % p);
            assert!((0..p).contains(&got));
        }
    }

    #[test]
    fn sticky_partition_moves_after_batch_size() {
        let s = StickyPartition::default();
        let first = s.next(100, 1000, 6);
        for _ in 0..9 {
            assert_eq!(s.next(100, 1000, 6), first);
        }
        // 1000 bytes reached: the next record moves to another partition.
        let second = s.next(100, 1000, 6);
        assert_ne!(second, first);
        assert!((0..6).contains(&second));
        let single = StickyPartition::default();
        assert!((0..50).all(|_| single.next(5000, 1000, 1) == 0));
    }
}
