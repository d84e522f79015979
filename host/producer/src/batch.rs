//! Kafka record batches (magic v2), written straight into one buffer as records arrive.
//!
//! Owns the byte layout: varints, record framing, headers, the 61-byte batch header, CRC-32C
//! and compression. A record's key, value and headers are copied once, from the caller's slice
//! into the batch buffer, which grows (by doubling, up to `batch.size`) as records arrive: the
//! accumulator reserves each growth from `buffer.memory` before asking for it
//! ([`BatchBuilder::grow_to`]), so what a batch holds is what it counts. Producer id, epoch and base sequence are only known when a sink sends the
//! batch, so [`ClosedBatch::seal`] fills them and the CRC last. A batch the broker finds too
//! large is re-read and split in two ([`ClosedBatch::split`]). It must not know about
//! partitions, owners or the network.

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::Compression;
use crate::record::{Header, Record};

/// Size of the v2 batch header: baseOffset .. recordCount.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the CRC field in the batch header.
const CRC_OFFSET: usize = 17;
/// Offset of the attributes field (the first byte the CRC covers).
const ATTRIBUTES_OFFSET: usize = 21;

/// Bytes a zigzag varint of `v` takes.
pub fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut impl BufMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn bytes_field_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

/// Size of a record's fields after `length`, except the two deltas.
fn body_without_deltas(r: &Record<'_>) -> usize {
    let mut n = 1 // attributes
        + bytes_field_len(r.key)
        + bytes_field_len(r.value)
        + varint_len(r.headers.len() as i64);
    for h in r.headers {
        n += varint_len(h.key.len() as i64) + h.key.len() + bytes_field_len(h.value);
    }
    n
}

/// An upper bound of the bytes `r` takes inside a batch (with the largest possible deltas).
pub fn record_size_upper_bound(r: &Record<'_>) -> usize {
    let body = body_without_deltas(r) + 10 + 5;
    varint_len(body as i64) + body
}

/// An upper bound of [`record_size_upper_bound`] for every record whose key, value and header
/// keys and values hold at most `payload` bytes together ([`Record::payload_len`]) and which
/// has at most `headers` headers: what a record a caller limits that way can take in a batch.
pub fn record_size_bound(payload: usize, headers: usize) -> usize {
    // Each length prefix (key, value, each header's key and value) is that of a length of at
    // most `payload`; a null key or value takes one byte, no more than any prefix.
    let prefix = varint_len(i64::try_from(payload).unwrap_or(i64::MAX));
    let prefixes = headers
        .saturating_mul(2)
        .saturating_add(2)
        .saturating_mul(prefix);
    let body = payload
        .saturating_add(prefixes)
        .saturating_add(1 + varint_len(i64::try_from(headers).unwrap_or(i64::MAX)) + 10 + 5);
    body.saturating_add(varint_len(i64::try_from(body).unwrap_or(i64::MAX)))
}

/// An upper bound of a batch holding only `r`: what `max.request.size` is checked against.
pub fn single_record_batch_upper_bound(r: &Record<'_>) -> usize {
    BATCH_HEADER_LEN + record_size_upper_bound(r)
}

/// A batch that is still taking records.
///
/// Its buffer is a `Vec` while it grows: `reserve_exact` allocates exactly what was counted
/// (and the allocator may extend in place); closing turns it into `BytesMut` without a copy.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch with room for `capacity` bytes (header included); it never grows past
    /// that by itself, see [`BatchBuilder::fits`] and [`BatchBuilder::grow_to`].
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(BATCH_HEADER_LEN));
        buf.put_bytes(0, BATCH_HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Records in the batch.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `size` more bytes (a record's upper bound) fit in the buffer as allocated.
    pub fn fits(&self, size: usize) -> bool {
        self.buf.len() + size <= self.buf.capacity()
    }

    /// Bytes the buffer holds allocated (what the batch counts against `buffer.memory`).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Grows the buffer to exactly `capacity` bytes (no-op if it has that already).
    pub fn grow_to(&mut self, capacity: usize) {
        if capacity > self.buf.capacity() {
            self.buf.reserve_exact(capacity - self.buf.len());
        }
    }

    /// Appends `r` with create time `timestamp` and returns its offset delta.
    pub fn append(&mut self, r: &Record<'_>, timestamp: i64) -> i32 {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let offset_delta = self.count;
        // Wrapping, as the broker and every reader add it back: a caller's timestamps may be
        // further apart than i64 holds (i64::MIN, then i64::MAX).
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let body = body_without_deltas(r) + varint_len(ts_delta) + varint_len(offset_delta as i64);
        let buf = &mut self.buf;
        // Within the capacity counted for it (the caller checked `fits`); grows only if it
        // did not, e.g. a builder used alone.
        buf.reserve(varint_len(body as i64) + body);
        put_varint(buf, body as i64);
        buf.put_u8(0); // record attributes: unused in v2
        put_varint(buf, ts_delta);
        put_varint(buf, offset_delta as i64);
        put_bytes_field(buf, r.key);
        put_bytes_field(buf, r.value);
        put_varint(buf, r.headers.len() as i64);
        for h in r.headers {
            put_varint(buf, h.key.len() as i64);
            buf.put_slice(h.key.as_bytes());
            put_bytes_field(buf, h.value);
        }
        self.count += 1;
        offset_delta
    }

    /// Ends the batch: compresses the records section when asked and fills every header field
    /// that does not depend on the producer id.
    pub fn close(
        self,
        compression: Compression,
        level: Option<i32>,
    ) -> std::io::Result<ClosedBatch> {
        self.close_with(&mut Codec::new(compression, level))
    }

    /// [`BatchBuilder::close`] with a codec kept from batch to batch (a zstd context or a
    /// deflate state is costly to set up for every batch).
    pub fn close_with(self, codec: &mut Codec) -> std::io::Result<ClosedBatch> {
        let compression = codec.compression;
        let BatchBuilder {
            buf,
            count,
            base_timestamp,
            max_timestamp,
        } = self;
        // Zero-copy: the Vec is unique, so BytesMut takes its allocation over.
        let mut buf = BytesMut::from(Bytes::from(buf));
        if compression != Compression::None {
            let records = buf.split_off(BATCH_HEADER_LEN);
            codec.compress_into(&mut buf, &records)?;
        }
        let batch_len = (buf.len() - 12) as i32;
        let last_offset_delta = count - 1;
        let attributes = compression.attribute();
        let h = &mut buf[..BATCH_HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes()); // baseOffset: the broker assigns it
        h[8..12].copy_from_slice(&batch_len.to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        h[16] = 2; // magic
        h[21..23].copy_from_slice(&attributes.to_be_bytes());
        h[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        h[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
        h[57..61].copy_from_slice(&count.to_be_bytes());
        Ok(ClosedBatch {
            buf,
            count,
            sealed: None,
        })
    }
}

fn put_bytes_field(buf: &mut impl BufMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

/// Xerial's snappy framing, which the Java producer writes and every client reads.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_BLOCK: usize = 32 * 1024;

/// One codec's compression state, reused from batch to batch (kept in a [`CodecPool`]).
pub struct Codec {
    compression: Compression,
    level: Option<i32>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    deflate: Option<flate2::Compress>,
    lz4: Option<Lz4Frames>,
}

/// An LZ4 frame compressor whose context lives as long as its codec: creating one per batch
/// costs an allocation and its set-up, and the `lz4` crate's `Encoder` also copies every block
/// through a buffer of its own, where this writes the frame straight into the batch. Frames
/// as that encoder wrote them (and Kafka's readers take): 64 KiB independent blocks, block
/// and content checksums.
struct Lz4Frames(lz4::liblz4::LZ4FCompressionContext);

// SAFETY: the context is memory owned by this value alone, used through `&mut self` only (one
// thread at a time) and freed once, in `drop`.
unsafe impl Send for Lz4Frames {}

impl Lz4Frames {
    /// The largest frame header LZ4 writes (`LZ4F_HEADER_SIZE_MAX`).
    const HEADER_MAX: usize = 19;

    fn new() -> std::io::Result<Self> {
        let mut ctx = lz4::liblz4::LZ4FCompressionContext(std::ptr::null_mut());
        // SAFETY: `ctx` is a valid place for the context pointer.
        lz4::liblz4::check_error(unsafe {
            lz4::liblz4::LZ4F_createCompressionContext(&mut ctx, lz4::liblz4::LZ4F_VERSION)
        })?;
        Ok(Lz4Frames(ctx))
    }

    /// Appends one frame holding `src` to `out`, at `level` (0: the fast compressor).
    fn compress(&mut self, out: &mut BytesMut, src: &[u8], level: u32) -> std::io::Result<()> {
        use lz4::liblz4::*;
        let prefs = LZ4FPreferences {
            frame_info: LZ4FFrameInfo {
                block_size_id: BlockSize::Max64KB,
                block_mode: BlockMode::Independent,
                content_checksum_flag: ContentChecksum::ChecksumEnabled,
                frame_type: FrameType::Frame,
                content_size: 0,
                dict_id: 0,
                block_checksum_flag: BlockChecksum::BlockChecksumEnabled,
            },
            compression_level: level,
            auto_flush: 0,
            favor_dec_speed: 0,
            reserved: [0; 3],
        };
        // SAFETY: `prefs` is valid for the call.
        let bound =
            Self::HEADER_MAX + check_error(unsafe { LZ4F_compressBound(src.len(), &prefs) })?;
        let start = out.len();
        out.reserve(bound);
        // SAFETY: `out` has `bound` bytes of spare capacity after `start`; every call writes
        // within the room it is given (LZ4F_compressBound covers the update and the end mark,
        // HEADER_MAX the header) and says how much it wrote; only that much becomes part of
        // `out`.
        unsafe {
            let dst = out.as_mut_ptr().add(start);
            let head = check_error(LZ4F_compressBegin(self.0, dst, bound, &prefs))?;
            let body = check_error(LZ4F_compressUpdate(
                self.0,
                dst.add(head),
                bound - head,
                src.as_ptr(),
                src.len(),
                std::ptr::null(),
            ))?;
            let end = check_error(LZ4F_compressEnd(
                self.0,
                dst.add(head + body),
                bound - head - body,
                std::ptr::null(),
            ))?;
            out.set_len(start + head + body + end);
        }
        Ok(())
    }
}

impl Drop for Lz4Frames {
    fn drop(&mut self) {
        // SAFETY: created by LZ4F_createCompressionContext, freed only here.
        unsafe {
            lz4::liblz4::LZ4F_freeCompressionContext(self.0);
        }
    }
}

impl Codec {
    /// A codec for `compression` at `level` (the codec's default when `None`).
    pub fn new(compression: Compression, level: Option<i32>) -> Self {
        Codec {
            compression,
            level,
            zstd: None,
            deflate: None,
            lz4: None,
        }
    }

    fn compress_into(&mut self, out: &mut BytesMut, records: &[u8]) -> std::io::Result<()> {
        match self.compression {
            Compression::None => out.put_slice(records),
            Compression::Gzip => self.gzip(out, records)?,
            Compression::Snappy => {
                out.put_slice(XERIAL_HEADER);
                let mut enc = snap::raw::Encoder::new();
                for block in records.chunks(XERIAL_BLOCK) {
                    let start = out.len();
                    out.put_u32(0);
                    out.resize(start + 4 + snap::raw::max_compress_len(block.len()), 0);
                    let n = enc
                        .compress(block, &mut out[start + 4..])
                        .map_err(std::io::Error::other)?;
                    out.truncate(start + 4 + n);
                    out[start..start + 4].copy_from_slice(&(n as u32).to_be_bytes());
                }
            }
            Compression::Lz4 => {
                // As the Java client: the default level (9) is LZ4's fast compressor; any other
                // level 1..=17 is the high-compression one at that level.
                let level = match self.level {
                    None | Some(9) => 0,
                    Some(l) => l.clamp(1, 17) as u32,
                };
                let frames = match &mut self.lz4 {
                    Some(f) => f,
                    None => self.lz4.insert(Lz4Frames::new()?),
                };
                frames.compress(out, records, level)?;
            }
            Compression::Zstd => {
                let zstd = match &mut self.zstd {
                    Some(z) => z,
                    None => self
                        .zstd
                        .insert(zstd::bulk::Compressor::new(self.level.unwrap_or(3))?),
                };
                let start = out.len();
                out.resize(start + zstd::zstd_safe::compress_bound(records.len()), 0);
                let n = zstd.compress_to_buffer(records, &mut out[start..])?;
                out.truncate(start + n);
            }
        }
        Ok(())
    }

    /// A gzip member (RFC 1952): header, raw deflate with a reused state, CRC-32 and size.
    fn gzip(&mut self, out: &mut BytesMut, records: &[u8]) -> std::io::Result<()> {
        let level = self.level.map_or(flate2::Compression::default(), |l| {
            flate2::Compression::new(l.clamp(1, 9) as u32)
        });
        let deflate = self
            .deflate
            .get_or_insert_with(|| flate2::Compress::new(level, false));
        deflate.reset();
        out.put_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let mut input = records;
        loop {
            out.reserve((input.len() / 2).max(256));
            let start = out.len();
            out.resize(out.capacity(), 0);
            let (before_in, before_out) = (deflate.total_in(), deflate.total_out());
            let status = deflate
                .compress(input, &mut out[start..], flate2::FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            let read = (deflate.total_in() - before_in) as usize;
            let written = (deflate.total_out() - before_out) as usize;
            out.truncate(start + written);
            input = &input[read..];
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
        let mut crc = flate2::Crc::new();
        crc.update(records);
        out.put_u32_le(crc.sum());
        out.put_u32_le(records.len() as u32);
        Ok(())
    }
}

/// Codecs for one compression setting, lent to whoever compresses a batch (a sink, or a
/// blocking thread compressing beside it): each keeps its context from batch to batch, and
/// there are as many as batches were ever compressed at once.
pub struct CodecPool {
    compression: Compression,
    level: Option<i32>,
    free: parking_lot::Mutex<Vec<Codec>>,
    /// Batches compressing on threads of their own now, and the most there may be (the
    /// machine's cores): a burst of large batches from many sinks takes a few threads, not
    /// hundreds.
    beside: std::sync::atomic::AtomicUsize,
    max_beside: usize,
}

/// A place for one batch to compress on a thread of its own, held until it is done.
pub struct BesideSlot(std::sync::Arc<CodecPool>);

impl Drop for BesideSlot {
    fn drop(&mut self) {
        self.0
            .beside
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl CodecPool {
    /// A pool for `compression` at `level` (the codec's default when `None`).
    pub fn new(compression: Compression, level: Option<i32>) -> Self {
        CodecPool {
            compression,
            level,
            free: parking_lot::Mutex::new(Vec::new()),
            beside: std::sync::atomic::AtomicUsize::new(0),
            max_beside: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// A place to compress one batch on a thread of its own, if fewer than the machine's
    /// cores are taken (`None`: compress it where you are).
    pub fn beside(self: &std::sync::Arc<Self>) -> Option<BesideSlot> {
        use std::sync::atomic::Ordering;
        self.beside
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_beside).then_some(n + 1)
            })
            .ok()
            .map(|_| BesideSlot(self.clone()))
    }

    /// The codec every batch closed through this pool gets.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Closes `builder` with a codec of the pool (made if none is free).
    pub fn close(&self, builder: BatchBuilder) -> std::io::Result<ClosedBatch> {
        let free = self.free.lock().pop();
        let mut codec = free.unwrap_or_else(|| Codec::new(self.compression, self.level));
        let closed = builder.close_with(&mut codec);
        self.free.lock().push(codec);
        closed
    }
}

/// A finished batch waiting for its producer id and sequence.
#[derive(Debug)]
pub struct ClosedBatch {
    buf: BytesMut,
    count: i32,
    sealed: Option<Bytes>,
}

impl ClosedBatch {
    /// Records in the batch.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Encoded size on the wire.
    pub fn len(&self) -> usize {
        self.sealed.as_ref().map_or(self.buf.len(), Bytes::len)
    }

    /// Always false: a closed batch holds at least one record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes last returned by [`ClosedBatch::seal`] (empty before the first seal).
    pub fn sealed(&self) -> Bytes {
        self.sealed.clone().unwrap_or_default()
    }

    /// The batch bytes for a Produce request, stamped with the idempotent producer's id, epoch
    /// and base sequence (`-1, -1, -1` without idempotence). Stamping again with other values
    /// (after an epoch bump) rewrites the header; the same values reuse the bytes.
    pub fn seal(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
        if let Some(b) = &self.sealed {
            let same = b[43..51] == producer_id.to_be_bytes()
                && b[51..53] == epoch.to_be_bytes()
                && b[53..57] == base_sequence.to_be_bytes();
            if same {
                return b.clone();
            }
            let b = self.sealed.take().expect("checked");
            self.buf = b.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]));
        }
        let buf = &mut self.buf;
        buf[43..51].copy_from_slice(&producer_id.to_be_bytes());
        buf[51..53].copy_from_slice(&epoch.to_be_bytes());
        buf[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
        buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let bytes = std::mem::take(buf).freeze();
        self.sealed = Some(bytes.clone());
        bytes
    }

    fn bytes(&self) -> &[u8] {
        self.sealed.as_deref().unwrap_or(&self.buf)
    }

    /// Splits the batch into its first `count / 2` records and the rest, each a batch of its
    /// own with offset deltas from 0 (as the Java client does after MESSAGE_TOO_LARGE).
    /// Returns `None` for a batch of one record.
    pub fn split(&self, level: Option<i32>) -> std::io::Result<Option<(ClosedBatch, ClosedBatch)>> {
        if self.count < 2 {
            return Ok(None);
        }
        let b = self.bytes();
        let attributes = i16::from_be_bytes([b[21], b[22]]);
        let compression = match attributes & 7 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => {
                return Err(std::io::Error::other(format!("unknown codec {other}")));
            }
        };
        let base_timestamp = i64::from_be_bytes(b[27..35].try_into().expect("8 bytes"));
        let records = decompress(&b[BATCH_HEADER_LEN..], compression)?;
        let mut cursor = &records[..];
        let half = self.count / 2;
        let mut first = BatchBuilder::new(b.len());
        let mut second = BatchBuilder::new(b.len());
        for i in 0..self.count {
            let r = read_record(&mut cursor)
                .ok_or_else(|| std::io::Error::other("cannot re-read the batch's records"))?;
            let headers: Vec<Header<'_>> = r
                .headers
                .iter()
                .map(|(k, v)| Header { key: k, value: *v })
                .collect();
            let record = Record {
                topic: "",
                partition: None,
                key: r.key,
                value: r.value,
                headers: &headers,
                timestamp: None,
            };
            let to = if i < half { &mut first } else { &mut second };
            to.append(&record, base_timestamp.wrapping_add(r.timestamp_delta));
        }
        Ok(Some((
            first.close(compression, level)?,
            second.close(compression, level)?,
        )))
    }
}

/// One record as read back from a records section (borrowing it).
struct ReadRecord<'a> {
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

fn read_varint(cur: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = cur.split_first()?;
        *cur = rest;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

fn read_bytes<'a>(cur: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let len = read_varint(cur)?;
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if cur.len() < len {
        return None;
    }
    let (b, rest) = cur.split_at(len);
    *cur = rest;
    Some(Some(b))
}

fn read_record<'a>(cur: &mut &'a [u8]) -> Option<ReadRecord<'a>> {
    let len = read_varint(cur)? as usize;
    if cur.len() < len {
        return None;
    }
    let (mut body, rest) = cur.split_at(len);
    *cur = rest;
    let body = &mut body;
    let (_attributes, rest) = body.split_first()?;
    *body = rest;
    let timestamp_delta = read_varint(body)?;
    let _offset_delta = read_varint(body)?;
    let key = read_bytes(body)?;
    let value = read_bytes(body)?;
    let n = read_varint(body)?.max(0) as usize;
    let mut headers = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let k = read_bytes(body)??;
        let v = read_bytes(body)?;
        headers.push((std::str::from_utf8(k).ok()?, v));
    }
    Some(ReadRecord {
        timestamp_delta,
        key,
        value,
        headers,
    })
}

fn decompress(data: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 2);
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
        }
        Compression::Snappy => {
            let mut rest = data
                .strip_prefix(&XERIAL_HEADER[..])
                .ok_or_else(|| std::io::Error::other("not xerial snappy"))?;
            let mut dec = snap::raw::Decoder::new();
            while rest.len() >= 4 {
                let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                let block = rest
                    .get(4..4 + n)
                    .ok_or_else(|| std::io::Error::other("truncated snappy block"))?;
                out.extend_from_slice(&dec.decompress_vec(block).map_err(std::io::Error::other)?);
                rest = &rest[4 + n..];
            }
        }
        Compression::Lz4 => {
            lz4::Decoder::new(data)?.read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(data)?.read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_further_apart_than_i64_holds_do_not_overflow() {
        let mut b = BatchBuilder::new(1024);
        b.append(&Record::new("t", b"a"), i64::MIN);
        b.append(&Record::new("t", b"b"), i64::MAX);
        let closed = b.close(Compression::None, None).unwrap();
        let (first, second) = closed.split(None).unwrap().expect("two records split");
        assert_eq!((first.count(), second.count()), (1, 1));
    }

    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    /// The bound for a payload and a number of headers holds for every record within them,
    /// however the bytes are spread (all in the value, in many small headers, null fields).
    #[test]
    fn the_record_size_bound_holds_for_every_record_within_it() {
        let bytes = vec![b'x'; 200_000];
        for payload in [0usize, 1, 63, 64, 100, 8191, 8192, 100_000, 200_000] {
            let bound = |headers| record_size_bound(payload, headers);
            let whole = Record::new("t", &bytes[..payload]);
            assert!(record_size_upper_bound(&whole) <= bound(0), "{payload}");
            let null = Record {
                value: None,
                ..Record::new("t", b"")
            };
            assert!(record_size_upper_bound(&null) <= bound(0));
            let split =
                Record::new("t", &bytes[..payload / 2]).key(&bytes[..payload - payload / 2]);
            assert!(record_size_upper_bound(&split) <= bound(0), "{payload}");
            for n in [1usize, 7, 1000] {
                let each = payload / n;
                let headers: Vec<Header<'_>> = (0..n)
                    .map(|_| Header {
                        key: "",
                        value: Some(&bytes[..each]),
                    })
                    .collect();
                let many = Record {
                    headers: &headers,
                    ..Record::new("t", &bytes[..payload - each * n])
                };
                assert!(many.payload_len() <= payload);
                assert!(
                    record_size_upper_bound(&many) <= bound(n),
                    "{payload} in {n} headers: {} > {}",
                    record_size_upper_bound(&many),
                    bound(n)
                );
                assert!(bound(n) <= bound(1000));
            }
        }
    }

    #[test]
    fn at_most_one_batch_per_core_compresses_beside() {
        let pool = std::sync::Arc::new(CodecPool::new(Compression::Zstd, None));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let held: Vec<_> = (0..cores).map(|_| pool.beside().expect("a slot")).collect();
        assert!(pool.beside().is_none(), "every core is taken");
        drop(held);
        assert!(pool.beside().is_some(), "slots come back when dropped");
    }

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0, 1),
            (-1, 1),
            (63, 1),
            (64, 2),
            (-64, 1),
            (-65, 2),
            (8191, 2),
            (8192, 3),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), n, "{v}");
        }
        assert_eq!(varint_len(i64::MIN), 10);
    }

    fn build(compression: Compression) -> Bytes {
        let h = [
            Header::new("trace", b"abc"),
            Header {
                key: "nil",
                value: None,
            },
        ];
        let mut b = BatchBuilder::new(1024);
        b.append(
            &Record::new("t", b"v0").key(b"k0").headers(&h),
            1_700_000_000_000,
        );
        b.append(
            &Record {
                value: None,
                ..Record::new("t", b"")
            },
            1_700_000_000_005,
        );
        let big = vec![7u8; 5000];
        b.append(&Record::new("t", &big).key(b""), 1_699_999_999_000);
        let mut closed = b.close(compression, None).unwrap();
        closed.seal(42, 3, 7)
    }

    #[test]
    fn batches_decode_with_kafka_protocol_for_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut bytes = build(c);
            let set =
                RecordBatchDecoder::decode(&mut bytes).unwrap_or_else(|e| panic!("{c:?}: {e}"));
            let r = &set.records;
            assert_eq!(r.len(), 3, "{c:?}");
            assert_eq!(r[0].key.as_deref(), Some(&b"k0"[..]));
            assert_eq!(r[0].value.as_deref(), Some(&b"v0"[..]));
            assert_eq!(r[0].headers.len(), 2);
            assert_eq!(
                r[0].headers
                    .get(&kafka_protocol::protocol::StrBytes::from_static_str(
                        "trace"
                    ))
                    .unwrap()
                    .as_deref(),
                Some(&b"abc"[..])
            );
            assert_eq!(
                r[0].headers
                    .get(&kafka_protocol::protocol::StrBytes::from_static_str("nil"))
                    .unwrap(),
                &None
            );
            assert_eq!(r[1].key, None);
            assert_eq!(r[1].value, None);
            assert_eq!(r[1].offset, 1);
            assert_eq!(r[2].value.as_deref().map(<[u8]>::len), Some(5000));
            assert_eq!(r[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(
                r[2].timestamp, 1_699_999_999_000,
                "negative timestamp delta"
            );
            assert_eq!(r[0].producer_id, 42);
            assert_eq!(r[0].producer_epoch, 3);
            assert_eq!(r[0].sequence, 7);
            assert_eq!(r[2].sequence, 9);
        }
    }

    #[test]
    fn upper_bound_covers_actual_size() {
        let h = [Header::new("a", b"b")];
        let r = Record::new("t", &[1u8; 300]).key(b"key").headers(&h);
        let mut b = BatchBuilder::new(0);
        b.append(&r, 0);
        assert!(b.len() <= single_record_batch_upper_bound(&r));
        assert!(single_record_batch_upper_bound(&r) - b.len() < 20);
    }

    #[test]
    fn a_reused_codec_writes_batches_every_reader_takes() {
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let mut codec = Codec::new(c, None);
            for round in 0..3u8 {
                let mut b = BatchBuilder::new(1 << 16);
                for i in 0..200u8 {
                    b.append(&Record::new("t", &[round ^ i; 150]), 1);
                }
                let mut closed = b.close_with(&mut codec).unwrap();
                let mut bytes = closed.seal(1, 0, 0);
                let set =
                    RecordBatchDecoder::decode(&mut bytes).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                assert_eq!(set.records.len(), 200, "{c:?}");
                assert_eq!(
                    set.records[199].value.as_deref(),
                    Some(&[round ^ 199; 150][..])
                );
            }
        }
    }

    #[test]
    fn a_split_batch_keeps_every_record_and_its_time() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut closed = {
                let h = [Header::new("h", b"1"), Header::new("h", b"2")];
                let mut b = BatchBuilder::new(4096);
                for i in 0..5u8 {
                    b.append(
                        &Record::new("t", &[i; 10]).key(&[i]).headers(&h),
                        1000 + i as i64,
                    );
                }
                b.close(c, None).unwrap()
            };
            closed.seal(1, 2, 3);
            let (mut a, mut b) = closed.split(None).unwrap().unwrap();
            assert_eq!((a.count(), b.count()), (2, 3));
            let mut first = a.seal(1, 2, 3);
            let mut second = b.seal(1, 2, 5);
            let first = RecordBatchDecoder::decode(&mut first).unwrap().records;
            let second = RecordBatchDecoder::decode(&mut second).unwrap().records;
            let all: Vec<_> = first.iter().chain(second.iter()).collect();
            for (i, r) in all.iter().enumerate() {
                assert_eq!(r.value.as_deref(), Some(&[i as u8; 10][..]), "{c:?}");
                assert_eq!(r.key.as_deref(), Some(&[i as u8][..]));
                assert_eq!(r.timestamp, 1000 + i as i64);
                assert_eq!(r.headers.len(), 1, "kafka-protocol keeps one value per key");
            }
            assert_eq!(second[0].sequence, 5);
            assert_eq!(second[0].offset, 0);
        }
    }

    #[test]
    fn resealing_with_a_new_epoch_rewrites_the_crc() {
        let mut b = BatchBuilder::new(128);
        b.append(&Record::new("t", b"x"), 1);
        let mut closed = b.close(Compression::None, None).unwrap();
        let first = closed.seal(1, 0, 0);
        assert_eq!(closed.seal(1, 0, 0), first);
        drop(first);
        let mut second = closed.seal(1, 1, 0);
        let set = RecordBatchDecoder::decode(&mut second).unwrap();
        assert_eq!(set.records[0].producer_epoch, 1);
    }
}
