//! Answers from a broker, decoded as `connection.rs` decodes them and then used as the producer
//! uses them, for every API and version the producer negotiates.
//!
//! Owns the list of those APIs and versions ([`Api`]), the layout of an `answer_*` input and
//! the checks on what the producer makes of a decoded answer. An input is
//! `[version choice][flags][frame]`: the version is the first of [`Api::versions`] plus the
//! choice modulo their count; the frame is what `read_answers` hands over (after the length
//! prefix), decoded by `connection::decode_answer` (the code `Connection::decode` runs)
//! expecting the correlation id the frame starts with, or another one when flag `0x80` is set.
//! A decoded answer then goes where it goes in the producer: ApiVersions to the version
//! table and the choice of a version for every request the producer sends, Metadata to
//! `metadata::parse` and the leader lookup, SaslAuthenticate to the session renewal and to the
//! SASL client (PLAIN, or SCRAM at the step flags `0x03` pick). A Produce answer's use is in a
//! sink, behind a live connection: only its error names are looked up here.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Message, Request, VersionRange};

use super::input::Input;
use super::{Outcome, Violation};
use crate::connection::{common_version, decode_answer, renewal, supported_versions};
use crate::error::kafka_error_name;
use crate::metadata::{parse, TopicMetadata};
use crate::request::{PRODUCE_MAX_VERSION, PRODUCE_MIN_VERSION};
use crate::security::sasl::{Credentials, Mechanism, SaslClient, Step};
use crate::security::scram::{ScramClient, ScramHash};

/// An API whose answers the producer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// ApiVersions: asked at v3, again at v0 when the broker answers UNSUPPORTED_VERSION.
    ApiVersions,
    /// Metadata, up to v12 (`metadata.rs`).
    Metadata,
    /// InitProducerId, up to v4 (`idempotence.rs`).
    InitProducerId,
    /// Produce, `PRODUCE_MIN_VERSION..=PRODUCE_MAX_VERSION` (`request.rs`).
    Produce,
    /// SaslHandshake, up to v1 (`connection.rs`).
    SaslHandshake,
    /// SaslAuthenticate, up to v2 (`connection.rs`).
    SaslAuthenticate,
}

/// The newest version the producer asks for, per API, as each call site caps it
/// (`Connection::version::<R>(cap)`). A new cap there belongs here too.
const CAPS: [(Api, i16); 6] = [
    (Api::ApiVersions, 3),
    (Api::Metadata, 12),
    (Api::InitProducerId, 4),
    (Api::Produce, PRODUCE_MAX_VERSION),
    (Api::SaslHandshake, 1),
    (Api::SaslAuthenticate, 2),
];

impl Api {
    /// Every API the producer reads answers to.
    pub const ALL: [Api; 6] = [
        Api::ApiVersions,
        Api::Metadata,
        Api::InitProducerId,
        Api::Produce,
        Api::SaslHandshake,
        Api::SaslAuthenticate,
    ];

    /// Its API key.
    pub fn key(self) -> i16 {
        match self {
            Api::ApiVersions => ApiVersionsRequest::KEY,
            Api::Metadata => MetadataRequest::KEY,
            Api::InitProducerId => InitProducerIdRequest::KEY,
            Api::Produce => ProduceRequest::KEY,
            Api::SaslHandshake => SaslHandshakeRequest::KEY,
            Api::SaslAuthenticate => SaslAuthenticateRequest::KEY,
        }
    }

    /// The versions `kafka-protocol` speaks for it.
    fn ours(self) -> VersionRange {
        match self {
            Api::ApiVersions => ApiVersionsRequest::VERSIONS,
            Api::Metadata => MetadataRequest::VERSIONS,
            Api::InitProducerId => InitProducerIdRequest::VERSIONS,
            Api::Produce => ProduceRequest::VERSIONS,
            Api::SaslHandshake => SaslHandshakeRequest::VERSIONS,
            Api::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
        }
    }

    /// The newest version the producer asks for.
    fn cap(self) -> i16 {
        CAPS.iter()
            .find(|(api, _)| *api == self)
            .map_or(0, |&(_, cap)| cap)
    }

    /// Every version the producer may negotiate, so every version whose answer it decodes.
    pub fn versions(self) -> RangeInclusive<i16> {
        let min = match self {
            Api::Produce => PRODUCE_MIN_VERSION,
            _ => self.ours().min,
        };
        min..=self.cap().min(self.ours().max)
    }

    /// Its fuzz target's name.
    pub fn target_name(self) -> &'static str {
        match self {
            Api::ApiVersions => "answer_api_versions",
            Api::Metadata => "answer_metadata",
            Api::InitProducerId => "answer_init_producer_id",
            Api::Produce => "answer_produce",
            Api::SaslHandshake => "answer_sasl_handshake",
            Api::SaslAuthenticate => "answer_sasl_authenticate",
        }
    }
}

/// Flag: expect a correlation id other than the frame's.
pub const FLAG_OTHER_CORRELATION: u8 = 0x80;
/// The SCRAM nonce of the SASL steps: fixed, so that an input can extend it.
pub const SCRAM_NONCE: &str = "fuzzNonce";
/// The password of the SASL steps; no error may show it.
const PASSWORD: &str = "pa55-w0rd-of-the-fuzzer";

/// Runs an `answer_*` input (see the module's documentation for its layout).
pub fn answer(api: Api, data: &[u8]) -> Result<Outcome, Violation> {
    let mut input = Input::new(data);
    let choice = input.byte();
    let flags = input.byte();
    let frame = input.rest();
    let versions = api.versions();
    let count = versions.end() - versions.start() + 1;
    let version = versions.start() + i16::from(choice) % count;
    let own = frame
        .get(..4)
        .map_or(0, |b| i32::from_be_bytes(b.try_into().expect("4 bytes")));
    let correlation = if flags & FLAG_OTHER_CORRELATION != 0 {
        own.wrapping_add(1)
    } else {
        own
    };
    answer_frame(api, version, frame, correlation, flags)
}

/// Decodes `frame` as the answer to `api` at `version` for request `correlation`, as the
/// producer does, and uses it; `flags` pick the SASL step (see the module's documentation).
pub fn answer_frame(
    api: Api,
    version: i16,
    frame: &[u8],
    correlation: i32,
    flags: u8,
) -> Result<Outcome, Violation> {
    let frame = Bytes::copy_from_slice(frame);
    let violation = |what: String| Violation::Answer {
        api_key: api.key(),
        version,
        what,
    };
    let refused = |e: crate::connection::AnswerError| Ok(Outcome::Refused(e.to_string()));
    match api {
        Api::ApiVersions => {
            match decode_answer::<ApiVersionsRequest>(frame, version, correlation) {
                Ok(resp) => use_api_versions(&resp).map_err(violation),
                Err(e) => refused(e),
            }
        }
        Api::Metadata => match decode_answer::<MetadataRequest>(frame, version, correlation) {
            Ok(resp) => use_metadata(resp).map_err(violation),
            Err(e) => refused(e),
        },
        Api::InitProducerId => {
            match decode_answer::<InitProducerIdRequest>(frame, version, correlation) {
                Ok(resp) => {
                    kafka_error_name(resp.error_code);
                    Ok(Outcome::Accepted)
                }
                Err(e) => refused(e),
            }
        }
        Api::Produce => match decode_answer::<ProduceRequest>(frame, version, correlation) {
            Ok(resp) => {
                use_produce(&resp);
                Ok(Outcome::Accepted)
            }
            Err(e) => refused(e),
        },
        Api::SaslHandshake => {
            match decode_answer::<SaslHandshakeRequest>(frame, version, correlation) {
                Ok(resp) => {
                    kafka_error_name(resp.error_code);
                    let enabled: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
                    std::hint::black_box(enabled.join(", "));
                    Ok(Outcome::Accepted)
                }
                Err(e) => refused(e),
            }
        }
        Api::SaslAuthenticate => {
            match decode_answer::<SaslAuthenticateRequest>(frame, version, correlation) {
                Ok(resp) => use_sasl_authenticate(&resp, flags).map_err(violation),
                Err(e) => refused(e),
            }
        }
    }
}

/// The version table, and the version the producer would pick for every request it sends:
/// within both sides' ranges and the cap, or an error.
fn use_api_versions(resp: &ApiVersionsResponse) -> Result<Outcome, String> {
    kafka_error_name(resp.error_code);
    let table: HashMap<i16, (i16, i16)> = supported_versions(resp);
    for api in Api::ALL {
        let (key, ours, cap) = (api.key(), api.ours(), api.cap());
        let Ok(v) = common_version(&table, key, ours, cap) else {
            continue;
        };
        let (min, max) = table[&key];
        if !((min..=max).contains(&v) && (ours.min..=ours.max.min(cap)).contains(&v)) {
            return Err(format!(
                "picked v{v} of API key {key}: broker {min}..={max}, ours {}..={}, cap {cap}",
                ours.min, ours.max
            ));
        }
    }
    Ok(Outcome::Accepted)
}

/// The cluster `metadata::parse` makes of the answer, checked against the answer: brokers with
/// a port, and for each topic (the last one of a name counts) its error, or one leader per
/// partition when the indexes are exactly `0..n`.
fn use_metadata(resp: MetadataResponse) -> Result<Outcome, String> {
    let cluster = parse(resp.clone());
    for (node, addr) in &cluster.brokers {
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        let listed = resp
            .brokers
            .iter()
            .any(|b| b.node_id.0 == *node && Some(b.port) == port.map(i32::from));
        if !listed {
            return Err(format!("broker {node} at {addr} is not in the answer"));
        }
    }
    let mut last = HashMap::new();
    for t in &resp.topics {
        if let Some(name) = &t.name {
            last.insert(name.0.as_str(), t);
        }
    }
    if cluster.topics.len() != last.len() {
        return Err(format!(
            "{} topics named in the answer, {} in the cluster",
            last.len(),
            cluster.topics.len()
        ));
    }
    for (name, t) in last {
        let meta = cluster
            .topics
            .get(name)
            .ok_or_else(|| format!("topic {name:?} is missing"))?;
        let n = t.partitions.len();
        let mut indexes: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        indexes.sort_unstable();
        let exact = indexes.iter().copied().eq(0..n as i32);
        match meta {
            TopicMetadata::Err(code) if t.error_code != 0 && *code == t.error_code => {}
            TopicMetadata::Bad(_) if t.error_code == 0 && !exact => {}
            TopicMetadata::Ok { leaders } if t.error_code == 0 && exact => {
                for p in &t.partitions {
                    let leader = leaders[p.partition_index as usize];
                    let usable = p.error_code == 0 || p.leader_id.0 >= 0;
                    let expected = if usable { p.leader_id.0.max(-1) } else { -1 };
                    if leader != expected {
                        return Err(format!(
                            "{name:?}-{}: leader {leader}, the answer says {expected}",
                            p.partition_index
                        ));
                    }
                    let found = cluster.leader(name, p.partition_index);
                    if found != (leader >= 0).then_some(leader) {
                        return Err(format!(
                            "{name:?}-{}: leader lookup gives {found:?} for {leader}",
                            p.partition_index
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "topic {name:?} (error {}, partitions {indexes:?}) became {other:?}",
                    t.error_code
                ))
            }
        }
    }
    std::hint::black_box(cluster.broker_addrs());
    Ok(Outcome::Accepted)
}

/// What the sink reads of a Produce answer without a batch to settle: the throttle it would
/// obey and every partition's error name and message.
fn use_produce(resp: &ProduceResponse) {
    if resp.throttle_time_ms > 0 {
        std::hint::black_box(
            Duration::from_millis(resp.throttle_time_ms as u64).min(Duration::from_secs(30)),
        );
    }
    for t in &resp.responses {
        for p in &t.partition_responses {
            kafka_error_name(p.error_code);
            std::hint::black_box(p.error_message.as_ref().map(|m| m.to_string()));
        }
    }
}

/// The session renewal the connection would set, then the answer's bytes as the next SASL
/// step: PLAIN's end (flags & 3 == 0), SCRAM-SHA-256's server-first (1), SCRAM-SHA-512's
/// server-first (2), or SCRAM-SHA-256's server-final after a good server-first (3). No error
/// may show the password (unless the answer itself holds it).
fn use_sasl_authenticate(resp: &SaslAuthenticateResponse, flags: u8) -> Result<Outcome, String> {
    kafka_error_name(resp.error_code);
    let now = Instant::now();
    if let Some(at) = renewal(now, resp.session_lifetime_ms) {
        if at < now + Duration::from_secs(1) {
            return Err(format!(
                "a session of {} ms renewed in {:?}",
                resp.session_lifetime_ms,
                at - now
            ));
        }
    } else if resp.session_lifetime_ms > 0 {
        return Err("a limited session without a renewal".into());
    }
    let credentials = Credentials::new("fuzz", PASSWORD);
    let message = &resp.auth_bytes[..];
    let answer = match flags & 3 {
        0 => {
            let mut client = SaslClient::new(Mechanism::Plain, &credentials);
            client.start();
            let step = client.step(message);
            if step != Ok(Step::Done) {
                return Err(format!("PLAIN did not end: {step:?}"));
            }
            return Ok(Outcome::Accepted);
        }
        1 | 2 => {
            let hash = if flags & 3 == 1 {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            // The client the connection runs (its nonce is random, so this one stops early) ...
            let mechanism = match hash {
                ScramHash::Sha256 => Mechanism::ScramSha256,
                ScramHash::Sha512 => Mechanism::ScramSha512,
            };
            let mut client = SaslClient::new(mechanism, &credentials);
            client.start();
            if let Err(e) = client.step(message) {
                check_secret(&e.to_string(), message)?;
            }
            // ... and one with a known nonce, which an input can get past.
            let mut scram = ScramClient::with_nonce(hash, &credentials, SCRAM_NONCE);
            scram.client_first();
            scram.step(message)
        }
        _ => {
            let mut scram = ScramClient::with_nonce(ScramHash::Sha256, &credentials, SCRAM_NONCE);
            scram.client_first();
            let first = format!("r={SCRAM_NONCE}server,s=c2FsdA==,i=4096");
            match scram.step(first.as_bytes()) {
                Ok(Step::Send(_)) => {}
                other => return Err(format!("a good server-first gave {other:?}")),
            }
            scram.step(message)
        }
    };
    match answer {
        Ok(_) => Ok(Outcome::Accepted),
        Err(e) => {
            let e = e.to_string();
            check_secret(&e, message)?;
            Ok(Outcome::Refused(e))
        }
    }
}

/// An error must not show the password, unless the server's message put it there.
fn check_secret(error: &str, message: &[u8]) -> Result<(), String> {
    let echoed = message
        .windows(PASSWORD.len())
        .any(|w| w == PASSWORD.as_bytes());
    if error.contains(PASSWORD) && !echoed {
        return Err(format!("an error shows the password: {error}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::{Encodable, HeaderVersion};

    #[test]
    fn versions_are_those_the_producer_negotiates() {
        assert_eq!(Api::ApiVersions.versions(), 0..=3);
        assert_eq!(Api::Metadata.versions(), 0..=12);
        assert_eq!(Api::InitProducerId.versions(), 0..=4);
        assert_eq!(Api::Produce.versions(), 3..=12);
        assert_eq!(Api::SaslHandshake.versions(), 0..=1);
        assert_eq!(Api::SaslAuthenticate.versions(), 0..=2);
    }

    #[test]
    fn a_good_answer_is_accepted_and_another_correlation_refused() {
        let version = 9;
        let mut frame = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(77)
            .encode(&mut frame, MetadataResponse::header_version(version))
            .unwrap();
        MetadataResponse::default()
            .encode(&mut frame, version)
            .unwrap();
        let mut input = vec![9, 0];
        input.extend_from_slice(&frame);
        assert_eq!(answer(Api::Metadata, &input), Ok(Outcome::Accepted));
        input[1] = FLAG_OTHER_CORRELATION;
        assert!(matches!(
            answer(Api::Metadata, &input),
            Ok(Outcome::Refused(r)) if r.contains("answer to request 77 where request 78")
        ));
    }
}
