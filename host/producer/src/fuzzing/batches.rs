//! Record batches built from a fuzz input, encoded by `batch.rs` with every codec and read back
//! by `kafka-protocol`'s decoder: every record must come back equal, in order, the CRC valid,
//! through `seal`, a reseal, a codec reused for a second batch, and `split`.
//!
//! Owns the layout of a `record_batch` input and the checks. An input is a header (codec,
//! level, buffer capacity, producer id, epoch, base sequence, first timestamp), then records
//! as long as bytes are left: a flag byte (null key, null value, header count, long key or
//! value, how the timestamp moves), the key, the value (a long one is a length and a fill
//! pattern, so that small inputs make large records), the headers (UTF-8 keys, lossily), and
//! the timestamp's move. `ClosedBatch` has no constructor from bytes: the only bytes the
//! producer reads back (`split`) are its own.

use bytes::Bytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

use super::input::Input;
use super::{Outcome, Violation};
use crate::batch::{record_size_upper_bound, single_record_batch_upper_bound, BatchBuilder, Codec};
use crate::config::Compression;
use crate::record::{Header, Record};

/// Most records in one input's batch.
const MAX_RECORDS: usize = 128;
/// Most key, value and header bytes in one input's batch.
const MAX_PAYLOAD: usize = 256 * 1024;
/// Timestamps take any `i64`: ones further apart than `i64` holds once overflowed in
/// `BatchBuilder::append` (regression `far-apart-timestamps`).
fn timestamp_bound() -> i64 {
    i64::MAX
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// One record as the input describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

/// The batch an input describes.
struct Plan {
    compression: Compression,
    level: Option<i32>,
    capacity: usize,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    records: Vec<Owned>,
}

/// Runs a `record_batch` input (see the module's documentation for its layout).
pub fn record_batch(data: &[u8]) -> Result<Outcome, Violation> {
    let plan = plan(&mut Input::new(data));
    check(&plan).map_err(|what| Violation::Batch {
        codec: plan.compression.name(),
        what,
    })?;
    Ok(Outcome::Accepted)
}

/// A level `compression.<codec>.level` accepts, or none.
fn level(compression: Compression, choice: u8) -> Option<i32> {
    if choice == 0 {
        return None;
    }
    let c = i32::from(choice - 1);
    match compression {
        Compression::None | Compression::Snappy => None,
        Compression::Gzip => Some(1 + c % 9),
        Compression::Lz4 => Some(1 + c % 17),
        // -131072 (the fastest), then -20..=22.
        Compression::Zstd if c % 44 == 43 => Some(-131_072),
        Compression::Zstd => Some(c % 43 - 20),
    }
}

fn plan(input: &mut Input<'_>) -> Plan {
    let compression = input.pick(&CODECS);
    let level = level(compression, input.byte());
    let capacity = usize::from(input.u16());
    let producer_id = input.i64();
    let epoch = input.i16();
    let base_sequence = input.i32();
    let bound = timestamp_bound();
    let mut timestamp = input.i64().clamp(-bound, bound);
    let mut records = Vec::new();
    let mut payload = 0usize;
    while !input.is_empty() && records.len() < MAX_RECORDS && payload < MAX_PAYLOAD {
        let flags = input.byte();
        let mut field = |null: bool, long: bool, input: &mut Input<'_>| {
            if null {
                return None;
            }
            let bytes = if long {
                let len = usize::from(input.u16()).min(MAX_PAYLOAD - payload.min(MAX_PAYLOAD));
                let pattern = input.bytes(4).to_vec();
                if pattern.is_empty() {
                    vec![0; len]
                } else {
                    pattern.iter().copied().cycle().take(len).collect()
                }
            } else {
                let len = usize::from(input.byte());
                input.bytes(len).to_vec()
            };
            payload += bytes.len();
            Some(bytes)
        };
        let key = field(flags & 1 != 0, flags & 0x10 != 0, input);
        let value = field(flags & 2 != 0, flags & 0x20 != 0, input);
        let headers = (0..(flags >> 2) & 3)
            .map(|_| {
                let len = usize::from(input.byte() % 32);
                let name = String::from_utf8_lossy(input.bytes(len)).into_owned();
                let value = field(input.byte() & 1 != 0, false, input);
                (name, value)
            })
            .collect();
        timestamp = match flags >> 6 {
            0 => timestamp,
            1 => timestamp.saturating_add(i64::from(input.byte() as i8)),
            2 => timestamp.saturating_add(i64::from(input.i32())),
            _ => input.i64(),
        }
        .clamp(-bound, bound);
        records.push(Owned {
            key,
            value,
            headers,
            timestamp,
        });
    }
    if records.is_empty() {
        // The producer never closes an empty batch.
        records.push(Owned {
            key: None,
            value: Some(Vec::new()),
            headers: Vec::new(),
            timestamp,
        });
    }
    Plan {
        compression,
        level,
        capacity,
        producer_id,
        epoch,
        base_sequence,
        records,
    }
}

/// Appends `records` to a builder as the accumulator does (growing it when a record's upper
/// bound does not fit), checking the sizes it promises.
fn build(capacity: usize, records: &[Owned]) -> Result<BatchBuilder, String> {
    let mut builder = BatchBuilder::new(capacity);
    for (i, o) in records.iter().enumerate() {
        let headers: Vec<Header<'_>> = o
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let r = Record {
            topic: "t",
            partition: None,
            key: o.key.as_deref(),
            value: o.value.as_deref(),
            headers: &headers,
            timestamp: Some(o.timestamp),
        };
        let bound = record_size_upper_bound(&r);
        if !builder.fits(bound) {
            builder.grow_to(builder.len() + bound);
        }
        let before = builder.len();
        let delta = builder.append(&r, o.timestamp);
        if delta != i as i32 || builder.count() != i as i32 + 1 {
            return Err(format!("record {i} got offset delta {delta}"));
        }
        if builder.len() - before > bound {
            return Err(format!(
                "record {i} took {} bytes, over its upper bound {bound}",
                builder.len() - before
            ));
        }
        if i == 0 && builder.len() > single_record_batch_upper_bound(&r) {
            return Err("a batch of one record is over its upper bound".into());
        }
    }
    Ok(builder)
}

/// Reads `bytes` back as one batch holding `records`, stamped `(producer_id, epoch,
/// base_sequence)`, compressed with `compression`.
fn read_back(
    mut bytes: Bytes,
    records: &[Owned],
    compression: Compression,
    stamp: (i64, i16, i32),
) -> Result<(), String> {
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| format!("unreadable: {e}"))?;
    if !bytes.is_empty() {
        return Err(format!("{} bytes after the batch", bytes.len()));
    }
    if set.compression as i16 != compression.attribute() || set.version != 2 {
        return Err(format!(
            "read as {:?} v{}",
            set.compression as i16, set.version
        ));
    }
    if set.records.len() != records.len() {
        return Err(format!(
            "{} records read of {}",
            set.records.len(),
            records.len()
        ));
    }
    let (producer_id, epoch, base_sequence) = stamp;
    for (i, (got, want)) in set.records.iter().zip(records).enumerate() {
        // kafka-protocol keeps one value per header key (the last, where the first was).
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
        for (k, v) in &want.headers {
            match headers.iter_mut().find(|(name, _)| name == k) {
                Some(h) => h.1 = v.as_deref(),
                None => headers.push((k, v.as_deref())),
            }
        }
        let same = got.offset == i as i64
            && got.sequence == base_sequence.wrapping_add(i as i32)
            && got.producer_id == producer_id
            && got.producer_epoch == epoch
            && got.partition_leader_epoch == -1
            && !got.transactional
            && !got.control
            && got.timestamp_type == TimestampType::Creation
            && got.timestamp == want.timestamp
            && got.key.as_deref() == want.key.as_deref()
            && got.value.as_deref() == want.value.as_deref()
            && got
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .eq(headers.iter().copied());
        if !same {
            return Err(format!("record {i} reads {got:?}, was {want:?}"));
        }
    }
    Ok(())
}

fn check(plan: &Plan) -> Result<(), String> {
    let (c, level, n) = (plan.compression, plan.level, plan.records.len());
    let stamp = (plan.producer_id, plan.epoch, plan.base_sequence);
    let mut codec = Codec::new(c, level);
    let mut closed = build(plan.capacity, &plan.records)?
        .close_with(&mut codec)
        .map_err(|e| format!("close: {e}"))?;
    if closed.count() != n as i32 {
        return Err(format!("{} records closed of {n}", closed.count()));
    }
    let sealed = closed.seal(stamp.0, stamp.1, stamp.2);
    if sealed.len() != closed.len() || closed.sealed() != sealed {
        return Err("the sealed bytes are not the batch's".into());
    }
    read_back(sealed.clone(), &plan.records, c, stamp)?;

    // Another epoch rewrites the header and the CRC; the first stamp again gives the first
    // bytes.
    let other = (stamp.0, stamp.1.wrapping_add(1), stamp.2);
    read_back(
        closed.seal(other.0, other.1, other.2),
        &plan.records,
        c,
        other,
    )?;
    if closed.seal(stamp.0, stamp.1, stamp.2) != sealed {
        return Err("sealing with the first stamp again gives other bytes".into());
    }

    // The codec, used again, for the first half of the records.
    let half = &plan.records[..n.div_ceil(2)];
    let mut again = build(0, half)?
        .close_with(&mut codec)
        .map_err(|e| format!("close with a used codec: {e}"))?;
    read_back(again.seal(stamp.0, stamp.1, stamp.2), half, c, stamp)?;

    // Split (after MESSAGE_TOO_LARGE): the halves hold every record, in order.
    let split = closed.split(level).map_err(|e| format!("split: {e}"))?;
    match split {
        None if n < 2 => {}
        Some((mut first, mut second)) if n >= 2 => {
            let cut = n / 2;
            if (first.count(), second.count()) != (cut as i32, (n - cut) as i32) {
                return Err(format!(
                    "split {n} records into {} and {}",
                    first.count(),
                    second.count()
                ));
            }
            read_back(
                first.seal(stamp.0, stamp.1, stamp.2),
                &plan.records[..cut],
                c,
                stamp,
            )?;
            let later = (stamp.0, stamp.1, stamp.2.wrapping_add(cut as i32));
            read_back(
                second.seal(later.0, later.1, later.2),
                &plan.records[cut..],
                c,
                later,
            )?;
        }
        other => {
            return Err(format!(
                "split of {n} records gave {}",
                if other.is_some() { "two" } else { "none" }
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_and_an_empty_input() {
        assert_eq!(record_batch(&[]), Ok(Outcome::Accepted));
        for codec in 0..5u8 {
            let mut input = vec![codec, 3, 0, 0];
            input.extend_from_slice(&[0; 22]);
            // Three records: a key and value, a long value with a header, nulls.
            input.extend_from_slice(&[0x40, 2, b'k', b'0', 1, b'v', 5]);
            input.extend_from_slice(&[0x24, 0, 0x10, 0x00, 1, 2, 3, 4, 1, b'h', 0, 1, b'x']);
            input.extend_from_slice(&[0x03]);
            assert_eq!(record_batch(&input), Ok(Outcome::Accepted), "codec {codec}");
        }
    }
}
