//! Choosing a partition for a record, as the Java client does.
//!
//! Owns the rules: an explicit partition wins; a keyed record goes to
//! `toPositive(murmur2(key)) % partitions` (over all partitions, available or not, so a key
//! always lands where the Java client puts it); a record without key (or with
//! `partitioner.ignore.keys=true`) goes to the topic's sticky partition, which moves to another
//! partition, uniformly at random **among the available ones** (a leader whose connection is
//! up, as librdkafka steers away from brokers that have not finished their handshake), after
//! `batch.size` bytes were sent to it (KIP-794). It must not look at metadata itself: it is
//! told the partition count and which partitions are available.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};

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
    /// The rank the current partition had when it was picked: it is left early only if its
    /// rank drops below that (a partition picked when nothing was available stays, as KIP-794).
    picked_rank: AtomicU8,
}

impl Default for StickyPartition {
    fn default() -> Self {
        StickyPartition {
            current: AtomicI32::new(-1),
            produced: AtomicUsize::new(0),
            picked_rank: AtomicU8::new(0),
        }
    }
}

impl StickyPartition {
    /// A sticky partition that starts at `partition` (`-1`: none yet).
    pub fn starting_at(partition: i32) -> Self {
        StickyPartition {
            current: AtomicI32::new(partition),
            produced: AtomicUsize::new(0),
            picked_rank: AtomicU8::new(0),
        }
    }

    /// The partition records without a key go to now (`-1`: none yet).
    pub fn current(&self) -> i32 {
        self.current.load(Ordering::Relaxed)
    }

    /// The partition for a record of `size` bytes without key, moving on once `batch_size`
    /// bytes went to the current one (or when it stopped being available).
    ///
    /// `rank` says how welcome a partition is: [`RANK_AVAILABLE`] (its leader is connected and
    /// answering), [`RANK_LED`] (it has a leader) or 0; the partition is chosen uniformly among
    /// those of the best rank present.
    pub fn next(
        &self,
        size: usize,
        batch_size: usize,
        partitions: i32,
        rank: impl Fn(i32) -> u8,
    ) -> i32 {
        let mut current = self.current.load(Ordering::Relaxed);
        let produced = self.produced.fetch_add(size, Ordering::Relaxed);
        if current < 0
            || current >= partitions
            || produced >= batch_size
            || rank(current) < self.picked_rank.load(Ordering::Relaxed)
        {
            current = pick(current, partitions, &rank);
            self.current.store(current, Ordering::Relaxed);
            self.picked_rank.store(rank(current), Ordering::Relaxed);
            self.produced.store(size, Ordering::Relaxed);
        }
        current
    }
}

/// A partition whose leader is connected and answering.
pub const RANK_AVAILABLE: u8 = 2;
/// A partition with a leader.
pub const RANK_LED: u8 = 1;

/// A random partition of the best rank present, other than `previous` when it has company.
fn pick(previous: i32, partitions: i32, rank: &impl Fn(i32) -> u8) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    let mut rng = rand::rng();
    // Most of the time most partitions are available: a few random tries find one.
    for _ in 0..8 {
        let p = rng.random_range(0..partitions);
        if p != previous && rank(p) >= RANK_AVAILABLE {
            return p;
        }
    }
    let ranks: Vec<u8> = (0..partitions).map(rank).collect();
    let best = ranks.iter().copied().max().unwrap_or(0);
    let candidates: Vec<i32> = (0..partitions)
        .filter(|&p| ranks[p as usize] == best)
        .collect();
    if candidates.len() == 1 {
        return candidates[0];
    }
    loop {
        let p = candidates[rng.random_range(0..candidates.len())];
        if p != previous {
            break p;
        }
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
        let all = |_| RANK_AVAILABLE;
        let s = StickyPartition::default();
        let first = s.next(100, 1000, 6, all);
        for _ in 0..9 {
            assert_eq!(s.next(100, 1000, 6, all), first);
        }
        // 1000 bytes reached: the next record moves to another partition.
        let second = s.next(100, 1000, 6, all);
        assert_ne!(second, first);
        assert!((0..6).contains(&second));
        let single = StickyPartition::default();
        assert!((0..50).all(|_| single.next(5000, 1000, 1, all) == 0));
    }

    #[test]
    fn sticky_partition_goes_only_where_a_leader_is_up() {
        let s = StickyPartition::default();
        let odd = |p: i32| if p % 2 == 1 { RANK_AVAILABLE } else { RANK_LED };
        for _ in 0..1000 {
            assert_eq!(s.next(600, 1000, 6, odd) % 2, 1);
        }
        // Only one available: it is used even if it was the last one.
        let three = |p: i32| if p == 3 { RANK_AVAILABLE } else { 0 };
        for _ in 0..100 {
            assert_eq!(s.next(600, 1000, 6, three), 3);
        }
        // None connected yet: any partition with a leader, and sticky there all the same.
        let s = StickyPartition::default();
        let led = |p: i32| if p < 2 { RANK_LED } else { 0 };
        let first = s.next(100, 1000, 6, led);
        assert!(first < 2);
        for _ in 0..8 {
            assert_eq!(
                s.next(100, 1000, 6, led),
                first,
                "sticky while nothing is available"
            );
        }
    }
}
