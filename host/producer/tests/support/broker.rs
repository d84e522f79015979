//! A fake Kafka broker on loopback: answers ApiVersions, Metadata, InitProducerId and Produce
//! as a broker does (encoded with `kafka-protocol`'s own types), except what a test makes
//! hostile: one API's answers ([`Hostile`], bodies from [`hostile_body`]), or a flood of
//! frames nobody asked for after one answer ([`Flood`]). It counts what it was asked, the
//! records it took and the connections it accepted. Any request it does not know closes the
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The requests the fake broker answers (by API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Produce,
    Metadata,
    ApiVersions,
    InitProducerId,
}

impl Request {
    pub fn key(self) -> i16 {
        match self {
            Request::Produce => 0,
            Request::Metadata => 3,
            Request::ApiVersions => 18,
            Request::InitProducerId => 22,
        }
    }

    fn from_key(key: i16) -> Option<Request> {
        [
            Request::Produce,
            Request::Metadata,
            Request::ApiVersions,
            Request::InitProducerId,
        ]
        .into_iter()
        .find(|a| a.key() == key)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The newest version the fake broker offers when the answer is not hostile (all
    /// flexible).
    fn flexible_max(self) -> i16 {
        match self {
            Request::Produce => 12,
            Request::Metadata => 12,
            Request::ApiVersions => 3,
            Request::InitProducerId => 4,
        }
    }

    fn min(self) -> i16 {
        match self {
            Request::Produce => 3,
            _ => 0,
        }
    }
}

/// How an answer is hostile. Each comes at a version the broker makes the producer use
/// (see [`hostile_body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// A non-flexible version whose first array announces `i32::MAX` elements.
    Array,
    /// A flexible version whose first array announces `u32::MAX - 1` elements (varint
    /// `0xFFFFFFFF`).
    CompactArray,
    /// A non-flexible version whose first string announces `i16::MAX` bytes.
    String,
    /// A flexible version whose first string announces `u32::MAX - 1` bytes.
    CompactString,
    /// InitProducerId v1 (non-flexible, no array or string at any version) cut short.
    Truncated,
    /// InitProducerId v4 (flexible) whose tagged fields announce `u32::MAX` fields, the first
    /// of `u32::MAX` bytes.
    TaggedFields,
}

const TAIL: [u8; 3] = [0, 0, 0];

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// A hostile answer body to `api` and the version it is encoded at; `None` where the API has
/// no such field. Each is a few bytes: the announced count or length is what is hostile.
pub fn hostile_body(api: Request, how: Hostile) -> Option<(i16, Bytes)> {
    let mut b = BytesMut::new();
    let version = match (api, how) {
        (Request::ApiVersions, Hostile::Array) => {
            b.put_i16(0); // error_code
            b.put_i32(i32::MAX); // api_keys
            0
        }
        (Request::ApiVersions, Hostile::CompactArray) => {
            b.put_i16(0);
            put_uvarint(&mut b, u32::MAX);
            3
        }
        (Request::Metadata, Hostile::Array) => {
            b.put_i32(0); // throttle_time_ms
            b.put_i32(i32::MAX); // brokers
            8
        }
        (Request::Metadata, Hostile::CompactArray) => {
            b.put_i32(0);
            put_uvarint(&mut b, u32::MAX);
            12
        }
        (Request::Metadata, Hostile::String) => {
            b.put_i32(0);
            b.put_i32(1); // one broker
            b.put_i32(1); // node_id
            b.put_i16(i16::MAX); // host
            8
        }
        (Request::Metadata, Hostile::CompactString) => {
            b.put_i32(0);
            put_uvarint(&mut b, 2); // one broker
            b.put_i32(1);
            put_uvarint(&mut b, u32::MAX);
            12
        }
        (Request::InitProducerId, Hostile::Truncated) => {
            b.put_i32(0); // throttle_time_ms, then nothing of error_code, producer id, epoch
            1
        }
        (Request::InitProducerId, Hostile::TaggedFields) => {
            b.put_i32(0);
            b.put_i16(0);
            b.put_i64(1);
            b.put_i16(0);
            put_uvarint(&mut b, u32::MAX); // tagged fields
            put_uvarint(&mut b, 0); // tag
            put_uvarint(&mut b, u32::MAX); // size
            4
        }
        (Request::Produce, Hostile::Array) => {
            b.put_i32(i32::MAX); // responses
            8
        }
        (Request::Produce, Hostile::CompactArray) => {
            put_uvarint(&mut b, u32::MAX);
            12
        }
        (Request::Produce, Hostile::String) => {
            b.put_i32(1); // one topic
            b.put_i16(i16::MAX); // name
            8
        }
        (Request::Produce, Hostile::CompactString) => {
            put_uvarint(&mut b, 2);
            put_uvarint(&mut b, u32::MAX);
            12
        }
        _ => return None,
    };
    if how != Hostile::Truncated {
        b.put_slice(&TAIL);
    }
    Some((version, b.freeze()))
}

/// Unsolicited frames pushed on a connection after the broker's first answer to `after`
/// (once per broker).
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    pub after: Request,
    pub frames: usize,
    /// Bytes per frame (after its length prefix).
    pub size: usize,
}

/// What a fake broker does.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Its node id.
    pub node: i32,
    /// The cluster its Metadata answers describe: node ids and `host:port`.
    pub brokers: Vec<(i32, String)>,
    /// Leader of each partition of every topic asked about.
    pub leaders: Vec<i32>,
    pub hostile: Option<(Request, Hostile)>,
    pub flood: Option<Flood>,
}

/// What a fake broker saw.
#[derive(Debug, Default)]
pub struct Stats {
    asked: [AtomicU64; 4],
    /// Records in the Produce requests it answered.
    pub records: AtomicU64,
    pub connections: AtomicU64,
    /// Unsolicited frames written whole.
    pub flooded: AtomicU64,
    /// The flood ended (all written, or the connection failed under it).
    pub flood_over: AtomicBool,
    flood_started: AtomicBool,
}

impl Stats {
    /// Requests of `api` received.
    pub fn asked(&self, api: Request) -> u64 {
        self.asked[api.index()].load(Ordering::Relaxed)
    }
}

/// A listening fake broker.
pub struct FakeBroker {
    listener: Option<TcpListener>,
    addr: String,
    pub stats: Arc<Stats>,
}

impl FakeBroker {
    /// Binds a loopback port; answers nothing until [`FakeBroker::serve`].
    pub async fn bind() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        FakeBroker {
            listener: Some(listener),
            addr,
            stats: Arc::default(),
        }
    }

    /// `host:port`
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Starts answering.
    pub fn serve(&mut self, behaviour: Behaviour) {
        let listener = self.listener.take().expect("served once");
        let behaviour = Arc::new(behaviour);
        let stats = self.stats.clone();
        let offsets = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let conn = Conn {
                    behaviour: behaviour.clone(),
                    stats: stats.clone(),
                    offsets: offsets.clone(),
                };
                tokio::spawn(conn.run(stream));
            }
        });
    }
}

struct Conn {
    behaviour: Arc<Behaviour>,
    stats: Arc<Stats>,
    /// Next offset per topic and partition.
    offsets: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

fn encode<M: Encodable + HeaderVersion>(correlation: i32, version: i16, body: &M) -> Bytes {
    let mut b = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut b, M::header_version(version))
        .expect("header");
    body.encode(&mut b, version).expect("body");
    b.freeze()
}

fn framed<M: HeaderVersion>(correlation: i32, version: i16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut b, M::header_version(version))
        .expect("header");
    b.put_slice(body);
    b.freeze()
}

impl Conn {
    fn max_version(&self, api: Request) -> i16 {
        match self.behaviour.hostile {
            Some((a, how)) if a == api && api != Request::ApiVersions => {
                hostile_body(a, how).expect("a hostile body for this API").0
            }
            _ => api.flexible_max(),
        }
    }

    fn hostile(&self, api: Request) -> Option<(i16, Bytes)> {
        match self.behaviour.hostile {
            Some((a, how)) if a == api => hostile_body(a, how),
            _ => None,
        }
    }

    async fn run(self, mut stream: TcpStream) {
        loop {
            let Ok(len) = stream.read_u32().await else {
                return;
            };
            let mut frame = vec![0; len as usize];
            if stream.read_exact(&mut frame).await.is_err() {
                return;
            }
            let mut frame = Bytes::from(frame);
            let Some((api, answer)) = self.answer(&mut frame) else {
                return;
            };
            if let Some(a) = answer {
                let mut out = BytesMut::with_capacity(4 + a.len());
                out.put_u32(a.len() as u32);
                out.put_slice(&a);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            if let Some(flood) = self.behaviour.flood {
                if flood.after == api && !self.stats.flood_started.swap(true, Ordering::AcqRel) {
                    self.flood(&mut stream, flood).await;
                    return;
                }
            }
        }
    }

    async fn flood(&self, stream: &mut TcpStream, flood: Flood) {
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        'frames: for _ in 0..flood.frames {
            let mut head = BytesMut::new();
            head.put_u32(flood.size as u32);
            // A header that answers no request of ours.
            head.put_i32(i32::MAX);
            if stream.write_all(&head).await.is_err() {
                break;
            }
            let mut left = flood.size - 4;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).await.is_err() {
                    break 'frames;
                }
                left -= n;
            }
            self.stats.flooded.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.flood_over.store(true, Ordering::Release);
    }

    /// The API of one request frame and the answer to it (none to acks=0); `None` to close.
    fn answer(&self, frame: &mut Bytes) -> Option<(Request, Option<Bytes>)> {
        if frame.len() < 4 {
            return None;
        }
        let api = Request::from_key(i16::from_be_bytes([frame[0], frame[1]]))?;
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        self.stats.asked[api.index()].fetch_add(1, Ordering::Relaxed);
        let header_version = match api {
            Request::Produce => ProduceRequest::header_version(version),
            Request::Metadata => MetadataRequest::header_version(version),
            Request::ApiVersions => ApiVersionsRequest::header_version(version),
            Request::InitProducerId => InitProducerIdRequest::header_version(version),
        };
        let header = RequestHeader::decode(frame, header_version).ok()?;
        let c = header.correlation_id;
        let answer = match api {
            Request::ApiVersions => match self.hostile(api) {
                // The producer asks v3 first: UNSUPPORTED_VERSION makes it ask v0.
                Some((0, _)) if version > 0 => encode(
                    c,
                    version,
                    &ApiVersionsResponse::default().with_error_code(35),
                ),
                Some((v, body)) => framed::<ApiVersionsResponse>(c, v, &body),
                None => {
                    let keys = [
                        Request::Produce,
                        Request::Metadata,
                        Request::ApiVersions,
                        Request::InitProducerId,
                    ]
                    .map(|a| {
                        ApiVersion::default()
                            .with_api_key(a.key())
                            .with_min_version(a.min())
                            .with_max_version(self.max_version(a))
                    });
                    encode(
                        c,
                        version,
                        &ApiVersionsResponse::default().with_api_keys(keys.to_vec()),
                    )
                }
            },
            Request::Metadata => match self.hostile(api) {
                Some((v, body)) => framed::<MetadataResponse>(c, v, &body),
                None => {
                    let req = MetadataRequest::decode(frame, version).ok()?;
                    encode(c, version, &self.metadata(req))
                }
            },
            Request::InitProducerId => match self.hostile(api) {
                Some((v, body)) => framed::<InitProducerIdResponse>(c, v, &body),
                None => encode(
                    c,
                    version,
                    &InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(4242))
                        .with_producer_epoch(0),
                ),
            },
            Request::Produce => {
                let req = ProduceRequest::decode(frame, version).ok()?;
                let acks0 = req.acks == 0;
                let hostile = self.hostile(api);
                let resp = self.produce(req, hostile.is_none());
                if acks0 {
                    return Some((api, None));
                }
                match hostile {
                    Some((v, body)) => framed::<ProduceResponse>(c, v, &body),
                    None => encode(c, version, &resp),
                }
            }
        };
        Some((api, Some(answer)))
    }

    fn metadata(&self, req: MetadataRequest) -> MetadataResponse {
        let b = &self.behaviour;
        let brokers = b
            .brokers
            .iter()
            .map(|(node, addr)| {
                let (host, port) = addr.rsplit_once(':').expect("host:port");
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(*node))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port.parse().expect("port"))
            })
            .collect();
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.name)
            .map(|name| {
                let partitions = b
                    .leaders
                    .iter()
                    .enumerate()
                    .map(|(i, &leader)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i as i32)
                            .with_leader_id(BrokerId(leader))
                            .with_replica_nodes(vec![BrokerId(leader)])
                            .with_isr_nodes(vec![BrokerId(leader)])
                    })
                    .collect();
                MetadataResponseTopic::default()
                    .with_name(Some(name))
                    .with_partitions(partitions)
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_controller_id(BrokerId(b.node))
            .with_cluster_id(Some(StrBytes::from_static_str("fake")))
            .with_topics(topics)
    }

    /// Takes the records (when `store`) and answers for every partition.
    fn produce(&self, req: ProduceRequest, store: bool) -> ProduceResponse {
        let mut offsets = self.offsets.lock().expect("offsets");
        let responses = req
            .topic_data
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let count = p.records.as_ref().map_or(0, |r| record_count(r.clone()));
                        let next = offsets.entry((t.name.0.to_string(), p.index)).or_default();
                        let base = *next;
                        if store {
                            *next += count;
                            self.stats
                                .records
                                .fetch_add(count as u64, Ordering::Relaxed);
                        }
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(base)
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(TopicName(t.name.0))
                    .with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }
}

/// Records in a v2 batch (its `records count` field, at byte 57), summed over the batches.
fn record_count(mut records: Bytes) -> i64 {
    let mut n = 0;
    while records.len() >= 61 {
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes")) as usize;
        n += i32::from_be_bytes(records[57..61].try_into().expect("4 bytes")) as i64;
        if records.len() < 12 + len {
            break;
        }
        records.advance(12 + len);
    }
    n
}
