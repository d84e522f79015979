//! A Kafka-aware loopback proxy that turns one real broker into a cluster of virtual brokers,
//! each of which can be made to misbehave.
//!
//! [`Proxy::start`] listens on one loopback port per virtual broker (node ids `1..=n`) and
//! forwards every request to the upstream broker (nisshi), one upstream connection per client
//! connection, answers in order. Metadata answers are rewritten: the broker list becomes the
//! virtual brokers, and each partition's leader is the virtual broker the test chose
//! ([`Proxy::set_leader`]; by default partition `p` is led by node `p % n + 1`). Since every
//! virtual broker forwards to the same real broker, records sent to any of them land in the
//! real partition, where an independent consumer reads them back, and the real broker's
//! idempotence checks (sequences, duplicates) apply to everything that reaches it.
//!
//! Faults ([`Fault`]) are set per virtual broker and apply to its connections at once:
//! refusing connections, swallowing requests, not reading, holding answers, stalling both ways, hostile answers
//! (a huge length prefix, garbage), dropping connections on Produce. [`Proxy::drop_connections`]
//! cuts live connections; [`Proxy::set_upstream`] points new connections at another broker
//! (a restarted one). [`Proxy::set_metadata_hook`] lets a test corrupt Metadata answers.
//! In front of a SASL_PLAINTEXT broker, [`Proxy::set_session_lifetime`] shortens SASL sessions
//! (KIP-368) and closes connections used after theirs ended, as a broker does.
//!
//! The proxy runs on a runtime of its own (one worker thread), so it keeps working whatever
//! the test's runtime does, and it stops when dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, SaslAuthenticateResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// How a virtual broker misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything.
    None,
    /// Accepts connections and closes them at once.
    Refuse,
    /// Reads requests and neither forwards nor answers them: a broker that never answers.
    Blackhole,
    /// Stops reading what clients send (their writes back up once the socket buffers fill).
    StopReading,
    /// Forwards requests but holds every answer until the fault changes.
    HoldAnswers,
    /// Moves no byte either way until the fault changes: stops reading what clients send and
    /// holds every answer (a stalled network path; connections stay open).
    Stall,
    /// Answers a Produce request with a length prefix of 2 GiB and nothing more.
    HugeLength,
    /// Answers a Produce request with 64 KiB of garbage.
    Garbage,
}

/// What a virtual broker does with one upcoming Produce request ([`Proxy::script_produce`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forwards it as usual (to script what comes after it).
    Forward,
    /// Answers it itself with this error code for every partition, without forwarding it.
    Fail(i16),
    /// Closes the connection without forwarding it.
    DropBefore,
    /// Forwards it, then closes the connection before its answer reaches the client: the
    /// broker stored the records, the client never hears of it.
    DropAfter,
}

type MetadataHook = Box<dyn Fn(&mut MetadataResponse) + Send + Sync>;

struct Node {
    id: i32,
    port: u16,
    fault: watch::Sender<Fault>,
    generation: watch::Sender<u64>,
    produce_requests: AtomicU64,
    largest_produce: AtomicU64,
    /// `throttle_time_ms` written into this broker's Produce answers (-1: the broker's own).
    produce_throttle_ms: AtomicI64,
    connections: AtomicU64,
    script: Mutex<VecDeque<Action>>,
}

struct Shared {
    upstream: Mutex<String>,
    nodes: Vec<Node>,
    leaders: Mutex<HashMap<(String, i32), i32>>,
    metadata_hook: Mutex<Option<MetadataHook>>,
    /// Topics named by the last Metadata request (-1: all topics).
    metadata_topics: AtomicI64,
    /// The SASL session lifetime the proxy sets (0: the broker's own).
    session_lifetime_ms: AtomicI64,
    /// Successful SaslAuthenticate answers passed on.
    authentications: AtomicU64,
    /// Requests that came after their connection's session ended (the connection was closed).
    expired_requests: AtomicU64,
    /// The highest Produce version ApiVersions answers list (-1: the broker's own).
    produce_max_version: AtomicI64,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("bootstrap", &self.bootstrap())
            .finish()
    }
}

const METADATA: i16 = 3;
const PRODUCE: i16 = 0;
/// Largest frame the proxy forwards (a request or an answer).
const MAX_FRAME: usize = 256 << 20;

impl Proxy {
    /// Starts `brokers` virtual brokers in front of `upstream` (`host:port`).
    ///
    /// # Panics
    ///
    /// If the runtime or a listener cannot be set up.
    pub fn start(upstream: &str, brokers: i32) -> Proxy {
        assert!(brokers >= 1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kafka-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        // Bound here (not on the runtime): the caller may be inside another runtime.
        let listeners: Vec<std::net::TcpListener> = (0..brokers)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy listener");
                l.set_nonblocking(true).expect("non-blocking listener");
                l
            })
            .collect();
        let nodes = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                id: i as i32 + 1,
                port: l.local_addr().expect("listener address").port(),
                fault: watch::channel(Fault::None).0,
                generation: watch::channel(0).0,
                produce_requests: AtomicU64::new(0),
                largest_produce: AtomicU64::new(0),
                produce_throttle_ms: AtomicI64::new(-1),
                connections: AtomicU64::new(0),
                script: Mutex::new(VecDeque::new()),
            })
            .collect();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.to_string()),
            nodes,
            leaders: Mutex::new(HashMap::new()),
            metadata_hook: Mutex::new(None),
            produce_max_version: AtomicI64::new(-1),
            metadata_topics: AtomicI64::new(-1),
            session_lifetime_ms: AtomicI64::new(0),
            authentications: AtomicU64::new(0),
            expired_requests: AtomicU64::new(0),
        });
        for (i, listener) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            runtime.spawn(async move {
                let listener = TcpListener::from_std(listener).expect("listener on the runtime");
                accept(shared, i, listener).await
            });
        }
        Proxy {
            shared,
            runtime: Some(runtime),
        }
    }

    /// `host:port` of every virtual broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        (1..=self.shared.nodes.len() as i32)
            .map(|n| self.addr(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port` of virtual broker `node`.
    pub fn addr(&self, node: i32) -> String {
        format!("127.0.0.1:{}", self.node(node).port)
    }

    fn node(&self, node: i32) -> &Node {
        &self.shared.nodes[(node - 1) as usize]
    }

    /// Makes `node` lead `topic`'s `partition` in the Metadata answers from now on (`-1`: no
    /// leader).
    pub fn set_leader(&self, topic: &str, partition: i32, node: i32) {
        self.shared
            .leaders
            .lock()
            .unwrap()
            .insert((topic.to_string(), partition), node);
    }

    /// Sets how `node` behaves, for new and live connections.
    pub fn set_fault(&self, node: i32, fault: Fault) {
        self.node(node).fault.send_replace(fault);
    }

    /// Closes every live connection of `node` (both sides).
    pub fn drop_connections(&self, node: i32) {
        self.node(node).generation.send_modify(|g| *g += 1);
    }

    /// New connections go to `upstream` from now on (e.g. a restarted broker).
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() = upstream.to_string();
    }

    /// Runs `hook` on every Metadata answer after the proxy's own rewrite.
    /// Writes `throttle_time_ms` (KIP-219) into every Produce answer of broker `node`; `None`:
    /// the broker's own again.
    pub fn set_produce_throttle(&self, node: i32, ms: Option<i32>) {
        self.node(node)
            .produce_throttle_ms
            .store(ms.map_or(-1, i64::from), Ordering::Relaxed);
    }

    /// Lists at most `version` for Produce in ApiVersions answers (new connections speak it);
    /// `None`: the broker's own again.
    pub fn set_produce_max_version(&self, version: Option<i16>) {
        self.shared
            .produce_max_version
            .store(version.map_or(-1, i64::from), Ordering::Relaxed);
    }

    pub fn set_metadata_hook(&self, hook: impl Fn(&mut MetadataResponse) + Send + Sync + 'static) {
        *self.shared.metadata_hook.lock().unwrap() = Some(Box::new(hook));
    }

    /// The next Produce requests `node` receives get these actions, one each, in order.
    pub fn script_produce(&self, node: i32, actions: impl IntoIterator<Item = Action>) {
        self.node(node).script.lock().unwrap().extend(actions);
    }

    /// Forgets the scripted actions of `node` not used yet.
    pub fn clear_script(&self, node: i32) {
        self.node(node).script.lock().unwrap().clear();
    }

    /// Stops rewriting Metadata answers beyond the proxy's own rewrite.
    pub fn clear_metadata_hook(&self) {
        *self.shared.metadata_hook.lock().unwrap() = None;
    }

    /// Scripted actions of `node` not used yet.
    pub fn script_left(&self, node: i32) -> usize {
        self.node(node).script.lock().unwrap().len()
    }

    /// How many topics the last Metadata request named (`None`: it asked for all topics, or
    /// none came yet).
    pub fn last_metadata_topics(&self) -> Option<usize> {
        usize::try_from(self.shared.metadata_topics.load(Ordering::Relaxed)).ok()
    }

    /// Produce requests `node` received so far.
    pub fn produce_requests(&self, node: i32) -> u64 {
        self.node(node).produce_requests.load(Ordering::Relaxed)
    }

    /// Size of the largest Produce request `node` received (with its length prefix).
    pub fn largest_produce_request(&self, node: i32) -> u64 {
        self.node(node).largest_produce.load(Ordering::Relaxed)
    }

    /// Connections `node` accepted so far.
    pub fn connections(&self, node: i32) -> u64 {
        self.node(node).connections.load(Ordering::Relaxed)
    }

    /// Gives every SASL session this lifetime (KIP-368: SaslAuthenticate's
    /// `session_lifetime_ms`, rewritten in the broker's answer) and enforces it as a broker
    /// does: a request other than ApiVersions or SASL's after the session ended closes the
    /// connection (counted by [`Proxy::expired_requests`]).
    pub fn set_session_lifetime(&self, lifetime: std::time::Duration) {
        self.shared
            .session_lifetime_ms
            .store(lifetime.as_millis() as i64, Ordering::Relaxed);
    }

    /// Connections that authenticated with SASL, every virtual broker together.
    pub fn authentications(&self) -> u64 {
        self.shared.authentications.load(Ordering::Relaxed)
    }

    /// Requests sent on a connection whose SASL session had ended.
    pub fn expired_requests(&self) -> u64 {
        self.shared.expired_requests.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(shared: Arc<Shared>, index: usize, listener: TcpListener) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let node = &shared.nodes[index];
        node.connections.fetch_add(1, Ordering::Relaxed);
        if *node.fault.borrow() == Fault::Refuse {
            drop(client);
            continue;
        }
        tokio::spawn(serve(shared.clone(), index, client));
    }
}

/// What the answer direction does next, in request order.
enum Next {
    /// Read the upstream's answer to a forwarded request (api key, version) and pass it on.
    Answer(i16, i16),
    /// Read the upstream's answer to a forwarded request and drop it.
    Discard,
    /// Write these bytes to the client instead of an answer.
    Inject(Bytes),
    /// Close the connection once the answers before this one are passed on.
    Close,
}

async fn serve(shared: Arc<Shared>, index: usize, client: TcpStream) {
    let upstream_addr = shared.upstream.lock().unwrap().clone();
    let Ok(upstream) = TcpStream::connect(&upstream_addr).await else {
        return;
    };
    client.set_nodelay(true).ok();
    upstream.set_nodelay(true).ok();
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let node = &shared.nodes[index];
    let mut generation = node.generation.subscribe();
    generation.mark_unchanged();
    let (next_tx, next_rx) = mpsc::unbounded_channel();
    let session = Session::default();
    tokio::select! {
        _ = requests(&shared, index, client_read, upstream_write, next_tx, &session) => {}
        _ = answers(&shared, index, upstream_read, client_write, next_rx, &session) => {}
        _ = generation.changed() => {}
    }
}

/// A connection's SASL session: when it ends (if the proxy set a lifetime), and whether it
/// was counted as authenticated.
#[derive(Default)]
struct Session(
    Mutex<Option<std::time::Instant>>,
    std::sync::atomic::AtomicBool,
);

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;

/// Reads length-prefixed frames; cancel-safe (bytes read so far stay in the buffer).
struct Frames {
    r: OwnedReadHalf,
    buf: BytesMut,
}

impl Frames {
    fn new(r: OwnedReadHalf) -> Self {
        Frames {
            r,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if len > MAX_FRAME {
                    return None;
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    return Some(self.buf.split_to(len).freeze());
                }
                self.buf.reserve((4 + len - self.buf.len()).min(1 << 20));
            }
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

async fn write_frame(w: &mut OwnedWriteHalf, body: &[u8]) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    w.write_all(&out).await
}

async fn requests(
    shared: &Shared,
    index: usize,
    client: OwnedReadHalf,
    mut upstream: OwnedWriteHalf,
    next: mpsc::UnboundedSender<Next>,
    session: &Session,
) {
    let mut client = Frames::new(client);
    let node = &shared.nodes[index];
    let mut fault = node.fault.subscribe();
    loop {
        if matches!(
            *fault.borrow_and_update(),
            Fault::StopReading | Fault::Stall
        ) {
            // Wait for another fault without reading anything.
            if fault.changed().await.is_err() {
                return;
            }
            continue;
        }
        let frame = tokio::select! {
            f = client.next() => f,
            _ = fault.changed() => continue,
        };
        let Some(frame) = frame else { return };
        if frame.len() < 4 {
            return;
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        if ![API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE].contains(&api_key)
            && session
                .0
                .lock()
                .unwrap()
                .is_some_and(|end| end <= std::time::Instant::now())
        {
            shared.expired_requests.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut action = None;
        if api_key == PRODUCE {
            node.produce_requests.fetch_add(1, Ordering::Relaxed);
            node.largest_produce
                .fetch_max(frame.len() as u64 + 4, Ordering::Relaxed);
            action = node.script.lock().unwrap().pop_front();
        }
        if api_key == METADATA {
            if let Some(n) = metadata_request_topics(frame.clone(), version) {
                shared.metadata_topics.store(n, Ordering::Relaxed);
            }
        }
        let current = *fault.borrow();
        match (current, action) {
            (Fault::Blackhole, _) => continue,
            (_, Some(Action::DropBefore)) => return,
            (_, Some(Action::Fail(code))) => {
                if let Some(answer) = produce_error(frame.clone(), version, code) {
                    let _ = next.send(Next::Inject(answer));
                }
                continue;
            }
            (Fault::HugeLength, _) if api_key == PRODUCE => {
                // 496 MiB announced, nothing sent.
                let _ = next.send(Next::Inject(Bytes::from_static(&[0x1f, 0, 0, 0])));
                continue;
            }
            (Fault::Garbage, _) if api_key == PRODUCE => {
                let junk: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
                let _ = next.send(Next::Inject(junk.into()));
                continue;
            }
            _ => {}
        }
        if write_frame(&mut upstream, &frame).await.is_err() {
            return;
        }
        if action != Some(Action::DropAfter) {
            let _ = next.send(Next::Answer(api_key, version));
        }
        if action == Some(Action::DropAfter) {
            let _ = next.send(Next::Discard);
            let _ = next.send(Next::Close);
            // Keep the connection open until the answer side closes it.
            std::future::pending::<()>().await;
        }
    }
}

fn metadata_request_topics(mut frame: Bytes, version: i16) -> Option<i64> {
    let header_version = <MetadataRequest as HeaderVersion>::header_version(version);
    RequestHeader::decode(&mut frame, header_version).ok()?;
    let req = MetadataRequest::decode(&mut frame, version).ok()?;
    Some(req.topics.map_or(-1, |t| t.len() as i64))
}

/// A framed answer to a Produce request that fails every partition with `code`.
fn produce_error(mut frame: Bytes, version: i16, code: i16) -> Option<Bytes> {
    let header_version = <ProduceRequest as HeaderVersion>::header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).ok()?;
    let req = ProduceRequest::decode(&mut frame, version).ok()?;
    let resp = ProduceResponse::default().with_responses(
        req.topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    let response_header_version = <ProduceResponse as HeaderVersion>::header_version(version);
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut body, response_header_version)
        .ok()?;
    resp.encode(&mut body, version).ok()?;
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    Some(out.freeze())
}

async fn answers(
    shared: &Shared,
    index: usize,
    upstream: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    mut next: mpsc::UnboundedReceiver<Next>,
    session: &Session,
) {
    let mut upstream = Frames::new(upstream);
    let node = &shared.nodes[index];
    let mut fault = node.fault.subscribe();
    while let Some(item) = next.recv().await {
        match item {
            Next::Inject(bytes) => {
                // An injected answer is an answer: held like the others, in order.
                while matches!(
                    *fault.borrow_and_update(),
                    Fault::HoldAnswers | Fault::Stall
                ) {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                if client.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Next::Discard => {
                // The broker stored the records and answered; the client never hears of it.
                if upstream.next().await.is_none() {
                    return;
                }
            }
            Next::Close => return,
            Next::Answer(api_key, version) => {
                let Some(frame) = upstream.next().await else {
                    return;
                };
                while matches!(
                    *fault.borrow_and_update(),
                    Fault::HoldAnswers | Fault::Stall
                ) {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                let frame = if api_key == METADATA {
                    match rewrite_metadata(shared, frame.clone(), version) {
                        Some(f) => f,
                        None => frame,
                    }
                } else if api_key == SASL_AUTHENTICATE {
                    rewrite_authenticate(shared, session, frame.clone(), version).unwrap_or(frame)
                } else if api_key == PRODUCE
                    && node.produce_throttle_ms.load(Ordering::Relaxed) >= 0
                {
                    let ms = node.produce_throttle_ms.load(Ordering::Relaxed) as i32;
                    rewrite_throttle(frame.clone(), version, ms).unwrap_or(frame)
                } else if api_key == API_VERSIONS
                    && shared.produce_max_version.load(Ordering::Relaxed) >= 0
                {
                    let max = shared.produce_max_version.load(Ordering::Relaxed) as i16;
                    cap_produce_version(frame.clone(), version, max).unwrap_or(frame)
                } else {
                    frame
                };
                if write_frame(&mut client, &frame).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Counts a successful SaslAuthenticate answer and, with a lifetime set, gives the session
/// that lifetime (the shorter of the broker's and the proxy's).
fn rewrite_authenticate(
    shared: &Shared,
    session: &Session,
    mut frame: Bytes,
    version: i16,
) -> Option<Bytes> {
    let header_version = <SaslAuthenticateResponse as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).ok()?;
    let mut resp = SaslAuthenticateResponse::decode(&mut frame, version).ok()?;
    if resp.error_code != 0 {
        return None;
    }
    // Once per connection (SCRAM answers twice without an error).
    if !session.1.swap(true, Ordering::Relaxed) {
        shared.authentications.fetch_add(1, Ordering::Relaxed);
    }
    let lifetime = shared.session_lifetime_ms.load(Ordering::Relaxed);
    if lifetime <= 0 || version < 1 {
        return None;
    }
    if resp.session_lifetime_ms <= 0 || resp.session_lifetime_ms > lifetime {
        resp.session_lifetime_ms = lifetime;
    }
    *session.0.lock().unwrap() = Some(
        std::time::Instant::now()
            + std::time::Duration::from_millis(resp.session_lifetime_ms as u64),
    );
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    resp.encode(&mut out, version).ok()?;
    Some(out.freeze())
}

/// A Produce answer with `throttle_time_ms` set to `ms`.
fn rewrite_throttle(mut frame: Bytes, version: i16, ms: i32) -> Option<Bytes> {
    let header_version = <ProduceResponse as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).ok()?;
    let mut resp = ProduceResponse::decode(&mut frame, version).ok()?;
    resp.throttle_time_ms = ms;
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    resp.encode(&mut out, version).ok()?;
    Some(out.freeze())
}

/// An ApiVersions answer listing at most `max` for Produce.
fn cap_produce_version(mut frame: Bytes, version: i16, max: i16) -> Option<Bytes> {
    // ApiVersions answers always use header v0.
    let header = ResponseHeader::decode(&mut frame, 0).ok()?;
    let mut resp = ApiVersionsResponse::decode(&mut frame, version).ok()?;
    for k in &mut resp.api_keys {
        if k.api_key == PRODUCE {
            k.max_version = k.max_version.min(max);
        }
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, 0).ok()?;
    resp.encode(&mut out, version).ok()?;
    Some(out.freeze())
}

fn rewrite_metadata(shared: &Shared, mut frame: Bytes, version: i16) -> Option<Bytes> {
    let header_version = <MetadataResponse as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).ok()?;
    let mut resp = MetadataResponse::decode(&mut frame, version).ok()?;
    let n = shared.nodes.len() as i32;
    resp.brokers = shared
        .nodes
        .iter()
        .map(|node| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.id))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(node.port as i32)
        })
        .collect();
    resp.controller_id = BrokerId(1);
    {
        let leaders = shared.leaders.lock().unwrap();
        for t in &mut resp.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            for p in &mut t.partitions {
                let leader = leaders
                    .get(&(name.clone(), p.partition_index))
                    .copied()
                    .unwrap_or(p.partition_index.rem_euclid(n) + 1);
                p.leader_id = BrokerId(leader);
                p.replica_nodes = vec![BrokerId(leader)];
                p.isr_nodes = vec![BrokerId(leader)];
                p.offline_replicas = vec![];
                if leader < 0 {
                    p.error_code = 5; // LEADER_NOT_AVAILABLE
                }
            }
        }
    }
    if let Some(hook) = shared.metadata_hook.lock().unwrap().as_ref() {
        hook(&mut resp);
    }
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).ok()?;
    resp.encode(&mut out, version).ok()?;
    Some(out.freeze())
}
