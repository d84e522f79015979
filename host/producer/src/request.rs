//! Produce requests as segments that point at the batch bytes.
//!
//! Owns the wire layout of a Produce request (v3 to v12, header v1/v2): everything but the
//! record batches is written into one small buffer, and each batch goes to the socket from
//! its own `Bytes` (the one copy of a record is the one into its batch). The layout is checked
//! against `kafka-protocol`'s encoder in the tests. It must not decide what goes into a
//! request; a sink does.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::Encodable;

/// API key of Produce.
pub(crate) const PRODUCE: i16 = 0;
/// Oldest Produce version we send (Kafka 4 accepts v3 and later).
pub(crate) const PRODUCE_MIN_VERSION: i16 = 3;
/// Newest Produce version we send: v13 names topics by id instead of by name.
pub(crate) const PRODUCE_MAX_VERSION: i16 = 12;

/// One partition's batch in a request.
pub(crate) struct PartitionData<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) records: Bytes,
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_len(buf: &mut BytesMut, flexible: bool, len: usize) {
    if flexible {
        put_uvarint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

/// The framed request (length prefix, header, body) as segments: small encoded parts and the
/// batches themselves. `partitions` must be grouped by topic (same topic next to each other).
pub(crate) fn produce_request(
    header: &RequestHeader,
    version: i16,
    acks: i16,
    timeout_ms: i32,
    partitions: &[PartitionData<'_>],
) -> Vec<Bytes> {
    debug_assert!((PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION).contains(&version));
    let flexible = version >= 9;
    let header_version = if flexible { 2 } else { 1 };
    let mut buf = BytesMut::with_capacity(64 + partitions.len() * 48);
    buf.put_u32(0); // length, filled in below
    header
        .encode(&mut buf, header_version)
        .expect("a request header always encodes");
    // transactional_id: null
    if flexible {
        put_uvarint(&mut buf, 0);
    } else {
        buf.put_i16(-1);
    }
    buf.put_i16(acks);
    buf.put_i32(timeout_ms);
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for p in partitions {
        match groups.last_mut() {
            Some((t, n)) if *t == p.topic => *n += 1,
            _ => groups.push((p.topic, 1)),
        }
    }
    put_len(&mut buf, flexible, groups.len());
    let mut segments = Vec::with_capacity(partitions.len() * 2 + 2);
    let mut total = 0usize;
    let cut = |buf: &mut BytesMut, segments: &mut Vec<Bytes>, total: &mut usize| {
        let part = buf.split().freeze();
        *total += part.len();
        segments.push(part);
    };
    let mut next = partitions.iter();
    for (topic, n) in groups {
        if flexible {
            put_uvarint(&mut buf, topic.len() as u64 + 1);
        } else {
            buf.put_i16(topic.len() as i16);
        }
        buf.put_slice(topic.as_bytes());
        put_len(&mut buf, flexible, n);
        for p in next.by_ref().take(n) {
            buf.put_i32(p.partition);
            put_len(&mut buf, flexible, p.records.len());
            cut(&mut buf, &mut segments, &mut total);
            total += p.records.len();
            segments.push(p.records.clone());
            if flexible {
                put_uvarint(&mut buf, 0); // partition's tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic's tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // request's tagged fields
    }
    cut(&mut buf, &mut segments, &mut total);
    let body = (total - 4) as u32;
    let mut first = BytesMut::from(&segments[0][..]);
    first[..4].copy_from_slice(&body.to_be_bytes());
    segments[0] = first.freeze();
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::{HeaderVersion, StrBytes};

    #[test]
    fn segments_are_byte_for_byte_what_kafka_protocol_encodes() {
        let batches = [
            Bytes::from_static(b"first batch bytes"),
            Bytes::from_static(b"second"),
            Bytes::from(vec![7u8; 300]),
        ];
        let parts = [
            PartitionData {
                topic: "alpha",
                partition: 0,
                records: batches[0].clone(),
            },
            PartitionData {
                topic: "alpha",
                partition: 3,
                records: batches[1].clone(),
            },
            PartitionData {
                topic: "beta",
                partition: 1,
                records: batches[2].clone(),
            },
        ];
        for version in PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION {
            let mut header = RequestHeader::default();
            header.request_api_key = PRODUCE;
            header.request_api_version = version;
            header.correlation_id = 42;
            header.client_id = Some(StrBytes::from_static_str("wafka"));
            let ours: Vec<u8> = produce_request(&header, version, -1, 30_000, &parts)
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect();
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("alpha")))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batches[0].clone())),
                            PartitionProduceData::default()
                                .with_index(3)
                                .with_records(Some(batches[1].clone())),
                        ]),
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("beta")))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batches[2].clone()))]),
                ]);
            let mut theirs = BytesMut::new();
            theirs.put_u32(0);
            header
                .encode(&mut theirs, ProduceRequest::header_version(version))
                .unwrap();
            req.encode(&mut theirs, version).unwrap();
            let len = (theirs.len() - 4) as u32;
            theirs[..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(ours, theirs.to_vec(), "Produce v{version}");
        }
    }

    #[test]
    fn batches_are_not_copied() {
        let batch = Bytes::from(vec![1u8; 1000]);
        let mut header = RequestHeader::default();
        header.request_api_version = 9;
        let segments = produce_request(
            &header,
            9,
            -1,
            1000,
            &[PartitionData {
                topic: "t",
                partition: 0,
                records: batch.clone(),
            }],
        );
        assert!(segments.iter().any(|s| s.as_ptr() == batch.as_ptr()));
    }
}
