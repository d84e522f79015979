//! The sender: takes due batches from the accumulator and turns them into Produce requests.
//!
//! Owns what happens between a batch leaving its queue and its result: one request per broker
//! at a time per turn, holding at most one batch per partition and at most `max.request.size`
//! bytes; at most `max.in.flight.requests.per.connection` requests in flight per broker (and so
//! at most that many batches of one partition), except that a partition with a batch waiting
//! for its retry sends that batch alone;
//! retries with exponential backoff inside `delivery.timeout.ms`; the idempotent producer's id
//! and sequence numbers, so that a retry is never stored twice nor out of order. Requests to a
//! broker are written by this one task in order; their answers are handled by small tasks.
//! It must not build batches or choose partitions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use crate::accumulator::{Drained, PartitionQueue, ProducerBatch};
use crate::config::Acks;
use crate::connection::{Connection, NetError};
use crate::delivery::BatchAck;
use crate::error::{kafka_error_name, ProduceError};
use crate::producer::Shared;

/// Highest Produce version we send: v13 names topics by id instead of by name.
const PRODUCE_MAX_VERSION: i16 = 12;

struct InFlight {
    queue: Arc<PartitionQueue>,
    batch: ProducerBatch,
}

/// Runs until the producer shuts down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i32>();
    let mut in_flight: HashMap<i32, usize> = HashMap::new();
    // Completion of the last request to each broker: answers are handled in request order.
    let mut last_handled: HashMap<i32, oneshot::Receiver<()>> = HashMap::new();
    let mut rotate = 0usize;
    let max_in_flight = shared.config.max_in_flight;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let total_in_flight: usize = in_flight.values().sum();
        let mut next_wake: Option<Instant> = None;
        if shared.idempotence.enabled.load(Ordering::Acquire)
            && !ensure_producer_id(&shared, total_in_flight).await
        {
            next_wake = Some(Instant::now() + shared.config.retry_backoff);
        } else {
            let now = Instant::now();
            let cluster = shared.metadata.snapshot();
            let queues = shared.accumulator.all_partitions();
            let mut requests: HashMap<i32, (Vec<InFlight>, usize, String)> = HashMap::new();
            let (pid, epoch) = shared.idempotence.current();
            let idempotent = pid >= 0;
            let n = queues.len();
            let mut missing_leader = false;
            for i in 0..n {
                let q = &queues[(i + rotate) % n];
                // A leader whose address the cluster did not list (e.g. a broker that is down)
                // counts as no leader: wait for metadata that has it.
                let leader = cluster
                    .leader(&q.topic, q.partition)
                    .and_then(|n| cluster.brokers.get(&n).map(|addr| (n, addr)));
                let Some((node, addr)) = leader else {
                    if shared.accumulator.expire_only(q, now) {
                        missing_leader = true;
                    }
                    continue;
                };
                if in_flight.get(&node).copied().unwrap_or(0) >= max_in_flight {
                    continue;
                }
                let entry = requests
                    .entry(node)
                    .or_insert_with(|| (Vec::new(), 0, addr.clone()));
                if entry.1 >= shared.config.max_request_size {
                    next_wake = Some(now);
                    continue;
                }
                match shared
                    .accumulator
                    .drain(q, now, max_in_flight as u32, idempotent)
                {
                    Drained::Batch(mut batch) => {
                        let seq = batch.sequence.unwrap_or(-1);
                        let bytes = if idempotent {
                            batch.records.seal(pid, epoch, seq)
                        } else {
                            batch.records.seal(-1, -1, -1)
                        };
                        entry.1 += bytes.len();
                        entry.0.push(InFlight {
                            queue: q.clone(),
                            batch: *batch,
                        });
                    }
                    Drained::Later(at) => {
                        if let Some(at) = at {
                            next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                        }
                    }
                }
            }
            rotate = rotate.wrapping_add(1);
            if missing_leader {
                shared.metadata.request_refresh();
                let at = now + shared.config.retry_backoff;
                next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
            }
            for (node, (batches, _, addr)) in requests {
                if batches.is_empty() {
                    continue;
                }
                *in_flight.entry(node).or_default() += 1;
                let prev = last_handled.remove(&node);
                if let Some(handled) =
                    send(&shared, node, &addr, batches, done_tx.clone(), prev).await
                {
                    last_handled.insert(node, handled);
                }
            }
        }
        // With a long linger and nothing else happening, still look at expiry now and then.
        let idle_wake = Instant::now() + Duration::from_millis(500);
        let wake = next_wake.map_or(idle_wake, |w| w.min(idle_wake));
        tokio::select! {
            _ = shared.accumulator.wake.notified() => {}
            Some(node) = done_rx.recv() => {
                if let Some(n) = in_flight.get_mut(&node) { *n = n.saturating_sub(1); }
                while let Ok(node) = done_rx.try_recv() {
                    if let Some(n) = in_flight.get_mut(&node) { *n = n.saturating_sub(1); }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = shutdown.changed() => {}
        }
    }
    shared.accumulator.abort_all(&ProduceError::Closed);
}

/// Makes sure the idempotent producer has an id (a fresh one after a reset, once nothing is in
/// flight). Returns false when sending must wait.
async fn ensure_producer_id(shared: &Arc<Shared>, total_in_flight: usize) -> bool {
    let idem = &shared.idempotence;
    let needs_reset = idem.needs_reset.load(Ordering::Acquire);
    if idem.current().0 >= 0 && !needs_reset {
        return true;
    }
    if needs_reset && total_in_flight > 0 {
        return false;
    }
    match init_producer_id(shared).await {
        Ok((pid, epoch)) => {
            tracing::debug!(pid, epoch, "idempotent producer id");
            shared.accumulator.reset_sequences();
            idem.set(pid, epoch);
            idem.needs_reset.store(false, Ordering::Release);
            true
        }
        Err(InitError::Retriable(e)) => {
            tracing::debug!(error = %e, "InitProducerId failed, will retry");
            shared.metadata.request_refresh();
            false
        }
        Err(InitError::Unsupported(e)) => {
            if shared.config.is_explicit("enable.idempotence") {
                let err = ProduceError::Fatal(format!("enable.idempotence=true but {e}"));
                tracing::error!("{err}");
                shared.fail_everything(err);
                false
            } else {
                tracing::warn!("idempotence disabled: {e}");
                idem.enabled.store(false, Ordering::Release);
                true
            }
        }
    }
}

enum InitError {
    Retriable(String),
    Unsupported(String),
}

async fn init_producer_id(shared: &Shared) -> Result<(i64, i16), InitError> {
    let cluster = shared.metadata.snapshot();
    let conn = shared
        .brokers
        .any(&cluster.broker_list())
        .await
        .map_err(|e| InitError::Retriable(e.to_string()))?;
    let version = conn
        .version::<InitProducerIdRequest>(4)
        .map_err(|e| InitError::Unsupported(e.to_string()))?;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    req.producer_id = (-1).into();
    req.producer_epoch = -1;
    let resp = conn
        .request(&req, version)
        .await
        .map_err(|e| InitError::Retriable(e.to_string()))?;
    match resp.error_code {
        0 => Ok((resp.producer_id.0, resp.producer_epoch)),
        // CLUSTER_AUTHORIZATION_FAILED, UNSUPPORTED_VERSION, TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        code @ (31 | 35 | 53) => Err(InitError::Unsupported(format!(
            "the cluster refused InitProducerId with {}",
            kafka_error_name(code)
        ))),
        code => Err(InitError::Retriable(kafka_error_name(code))),
    }
}

/// Writes one Produce request to `node` and leaves a task to handle its answer, after the
/// answer to the previous request to that broker (`prev`) was handled: a retry of an earlier
/// batch is then always queued before a later batch's OUT_OF_ORDER_SEQUENCE_NUMBER is judged.
/// Returns what the next request waits for.
async fn send(
    shared: &Arc<Shared>,
    node: i32,
    addr: &str,
    batches: Vec<InFlight>,
    done: mpsc::UnboundedSender<i32>,
    prev: Option<oneshot::Receiver<()>>,
) -> Option<oneshot::Receiver<()>> {
    let conn = match shared.brokers.get(node, addr).await {
        Ok(c) => c,
        Err(e) => {
            fail_request(shared, node, batches, &e);
            let _ = done.send(node);
            return None;
        }
    };
    let version = match conn.version::<ProduceRequest>(PRODUCE_MAX_VERSION) {
        Ok(v) => v,
        Err(e) => {
            let err = ProduceError::Fatal(e.to_string());
            for f in batches {
                shared.accumulator.done(&f.queue, f.batch.sequence);
                f.batch.fail(err.clone(), &shared.accumulator.ledger);
            }
            let _ = done.send(node);
            return None;
        }
    };
    let acks = shared.config.acks;
    let req = build_request(shared, &batches);
    shared
        .stats
        .produce_requests
        .fetch_add(1, Ordering::Relaxed);
    if acks == Acks::None {
        let r = conn.send_only(&req, version).await;
        match r {
            Ok(()) => {
                for f in batches {
                    complete(
                        shared,
                        f,
                        BatchAck {
                            base_offset: -1,
                            log_append_time: None,
                        },
                    );
                }
            }
            Err(e) => fail_request(shared, node, batches, &e),
        }
        let _ = done.send(node);
        return None;
    }
    let pending = match conn.start(&req, version).await {
        Ok(p) => p,
        Err(e) => {
            fail_request(shared, node, batches, &e);
            let _ = done.send(node);
            return None;
        }
    };
    let shared = shared.clone();
    let (handled_tx, handled_rx) = oneshot::channel();
    tokio::spawn(async move {
        let answer = pending.wait(&conn).await;
        if let Some(prev) = prev {
            let _ = prev.await;
        }
        match answer {
            Ok(resp) => handle_response(&shared, &conn, batches, resp),
            Err(e) => fail_request(&shared, node, batches, &e),
        }
        let _ = handled_tx.send(());
        let _ = done.send(node);
    });
    Some(handled_rx)
}

fn build_request(shared: &Shared, batches: &[InFlight]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for f in batches {
        let name = &*f.queue.topic;
        let data = PartitionProduceData::default()
            .with_index(f.queue.partition)
            .with_records(Some(f.batch.records.sealed()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(shared.config.acks.wire())
        .with_timeout_ms(
            shared
                .config
                .request_timeout
                .as_millis()
                .min(i32::MAX as u128) as i32,
        )
        .with_topic_data(topics)
}

fn handle_response(
    shared: &Shared,
    conn: &Connection,
    batches: Vec<InFlight>,
    resp: ProduceResponse,
) {
    let mut refresh = false;
    for f in batches {
        let part = resp
            .responses
            .iter()
            .find(|t| t.name.0.as_str() == &*f.queue.topic)
            .and_then(|t| {
                t.partition_responses
                    .iter()
                    .find(|p| p.index == f.queue.partition)
            });
        let Some(p) = part else {
            retry_or_fail(
                shared,
                f,
                format!("{} did not answer for this partition", conn.addr()),
                false,
            );
            continue;
        };
        let code = p.error_code;
        let verdict = verdict(code, is_after_retry(&f));
        refresh |= needs_metadata(code);
        match verdict {
            Verdict::Stored => complete(
                shared,
                f,
                BatchAck {
                    base_offset: p.base_offset,
                    log_append_time: (p.log_append_time_ms >= 0).then_some(p.log_append_time_ms),
                },
            ),
            Verdict::AlreadyStored => complete(
                shared,
                f,
                BatchAck {
                    base_offset: -1,
                    log_append_time: None,
                },
            ),
            Verdict::Retry => retry_or_fail(shared, f, kafka_error_name(code), false),
            Verdict::ResetAndRetry => {
                shared
                    .idempotence
                    .needs_reset
                    .store(true, Ordering::Release);
                retry_or_fail(shared, f, kafka_error_name(code), false);
            }
            Verdict::Fail => {
                let err = ProduceError::Broker {
                    name: kafka_error_name(code),
                    code,
                    topic: f.queue.topic.to_string(),
                    partition: f.queue.partition,
                    message: p.error_message.as_ref().map(|m| m.as_str().to_string()),
                };
                fail(shared, f, err);
            }
        }
    }
    if refresh {
        shared.metadata.request_refresh();
    }
}

/// What to do with a batch given its partition's error code in a Produce answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Stored: complete with the broker's offset.
    Stored,
    /// DUPLICATE_SEQUENCE_NUMBER: an earlier attempt was stored; complete without an offset.
    AlreadyStored,
    /// A retriable error: back into the queue, in sequence order, after a backoff.
    Retry,
    /// The broker lost (or refuses) the producer's state: new producer id, then retry.
    ResetAndRetry,
    /// A final error for this batch's records.
    Fail,
}

/// The decision for `code`. `after_retry`: an earlier batch of the partition failed and waits
/// for its retry, which explains an OUT_OF_ORDER_SEQUENCE_NUMBER.
fn verdict(code: i16, after_retry: bool) -> Verdict {
    match code {
        0 => Verdict::Stored,
        46 => Verdict::AlreadyStored,
        45 if after_retry => Verdict::Retry,
        45 | 59 => Verdict::ResetAndRetry,
        // REQUEST_TIMED_OUT, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND) are
        // retriable whatever the table says.
        7 | 13 | 19 | 20 => Verdict::Retry,
        _ if kafka_protocol::error::ParseResponseErrorCode::err(code)
            .is_some_and(|e| e.is_retriable()) =>
        {
            Verdict::Retry
        }
        _ => Verdict::Fail,
    }
}

/// Errors that mean our view of leaders is stale.
fn needs_metadata(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 13 | 56 | 74 | 75)
}

fn is_after_retry(f: &InFlight) -> bool {
    let st = f.queue.state.lock().expect("partition lock");
    matches!((st.retry_floor, f.batch.sequence), (Some(floor), Some(s)) if floor < s)
}

/// A request failed as a whole (connection lost, timeout): every batch is retried.
fn fail_request(shared: &Shared, node: i32, batches: Vec<InFlight>, e: &NetError) {
    tracing::debug!(node, error = %e, "produce request failed");
    shared.brokers.forget(node);
    shared.metadata.request_refresh();
    for f in batches {
        retry_or_fail(shared, f, e.to_string(), true);
    }
}

fn complete(shared: &Shared, f: InFlight, ack: BatchAck) {
    shared.accumulator.done(&f.queue, f.batch.sequence);
    f.batch
        .completion
        .complete(Ok(ack), &shared.accumulator.ledger);
}

fn fail(shared: &Shared, f: InFlight, err: ProduceError) {
    shared.accumulator.done(&f.queue, f.batch.sequence);
    f.batch.fail(err, &shared.accumulator.ledger);
}

/// Puts a batch back with backoff, or fails it when retries or `delivery.timeout.ms` ran out.
fn retry_or_fail(shared: &Shared, mut f: InFlight, cause: String, network: bool) {
    let c = &shared.config;
    let now = Instant::now();
    let attempt = f.batch.attempts + 1;
    let base = c.retry_backoff.saturating_mul(1 << (attempt - 1).min(16));
    let backoff = base.min(c.retry_backoff_max);
    let jitter = rand::rng().random_range(0.8..1.2);
    let backoff = backoff.mul_f64(jitter);
    let deadline = f.batch.created + c.delivery_timeout;
    let cause = if network {
        format!("network error: {cause}")
    } else {
        cause
    };
    if now + backoff >= deadline {
        let err = ProduceError::DeliveryTimeout {
            timeout: c.delivery_timeout,
            cause,
        };
        fail(shared, f, err);
    } else if f.batch.attempts >= c.retries {
        let err = ProduceError::Broker {
            name: cause.clone(),
            code: -1,
            topic: f.queue.topic.to_string(),
            partition: f.queue.partition,
            message: Some(format!("gave up after retries={}", c.retries)),
        };
        fail(shared, f, err);
    } else {
        tracing::debug!(topic = %f.queue.topic, partition = f.queue.partition, attempt, %cause, "retrying batch");
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        f.batch.attempts = attempt;
        f.batch.retry_at = Some(now + backoff);
        f.batch.last_error = Some(cause);
        shared.accumulator.requeue(&f.queue, f.batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_java_client() {
        assert_eq!(verdict(0, false), Verdict::Stored);
        // NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION: retry.
        for code in [6, 5, 3, 7, 13, 19, 20, 56] {
            assert_eq!(verdict(code, false), Verdict::Retry, "{code}");
        }
        assert!(needs_metadata(6) && needs_metadata(5) && !needs_metadata(19));
        // Sequence errors: in order after a retry, otherwise a new producer id.
        assert_eq!(verdict(45, true), Verdict::Retry);
        assert_eq!(verdict(45, false), Verdict::ResetAndRetry);
        assert_eq!(verdict(59, false), Verdict::ResetAndRetry);
        assert_eq!(verdict(46, false), Verdict::AlreadyStored);
        // MESSAGE_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED, INVALID_RECORD: final.
        for code in [10, 29, 87] {
            assert_eq!(verdict(code, false), Verdict::Fail, "{code}");
        }
    }
}
