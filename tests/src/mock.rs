//! librdkafka's in-process mock cluster, driven through its C API.
//!
//! rdkafka's `MockCluster` covers most of the mock's fault injection but not errors with a
//! delayed answer (`rd_kafka_mock_broker_push_request_error_rtts`), which is what a request
//! timeout that did *not* store anything looks like. The mock checks idempotent sequence
//! numbers only for transactional producers, so a fault test on it must never let a request
//! that the mock stored lose its answer (a retry would be stored twice by the mock, whatever
//! the client does): delays and disconnects are injected as errors, which the mock answers
//! without appending. Exactly-once against a broker that checks sequences is tested on nisshi
//! (see [`crate::proxy`]).

use std::ffi::{c_int, CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::client::Client;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};

/// A librdkafka mock cluster (see [`mock_cluster`]). Broker ids are `1..=brokers`. The cluster
/// lives until this value is dropped. `Send + Sync`, so it can be shared with spawned tasks.
pub struct MockKafka {
    cluster: *mut rdsys::rd_kafka_mock_cluster_t,
    // The librdkafka handle the cluster belongs to; dropped after the cluster.
    _handle: BaseProducer,
}

// SAFETY: the raw pointer is only used through librdkafka's mock API, which is thread-safe:
// every call either posts a command to the mock cluster's own thread, takes the cluster lock
// (error stacks), or reads the immutable bootstrap string.
unsafe impl Send for MockKafka {}
// SAFETY: see the Send impl above.
unsafe impl Sync for MockKafka {}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_mock_cluster_new, destroyed once, before its handle.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster) }
    }
}

fn check(err: RDKafkaRespErr) -> KafkaResult<()> {
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::MockCluster(code)),
    }
}

fn c_string(s: &str) -> KafkaResult<CString> {
    CString::new(s).map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::InvalidArgument))
}

impl MockKafka {
    /// The cluster's `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        // SAFETY: the string lives as long as the cluster.
        unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(self.cluster)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates `topic` (the mock does not implement CreateTopics).
    pub fn create_topic(&self, topic: &str, partitions: i32, replication: i32) -> KafkaResult<()> {
        let t = c_string(topic)?;
        // SAFETY: valid cluster and C string.
        check(unsafe {
            rdsys::rd_kafka_mock_topic_create(self.cluster, t.as_ptr(), partitions, replication)
        })
    }

    /// Moves a partition's leadership (`None`: no leader).
    pub fn partition_leader(
        &self,
        topic: &str,
        partition: i32,
        broker: Option<i32>,
    ) -> KafkaResult<()> {
        let t = c_string(topic)?;
        // SAFETY: valid cluster and C string.
        check(unsafe {
            rdsys::rd_kafka_mock_partition_set_leader(
                self.cluster,
                t.as_ptr(),
                partition,
                broker.unwrap_or(-1),
            )
        })
    }

    /// Disconnects the broker's clients and refuses new connections.
    pub fn broker_down(&self, broker: i32) -> KafkaResult<()> {
        // SAFETY: valid cluster.
        check(unsafe { rdsys::rd_kafka_mock_broker_set_down(self.cluster, broker) })
    }

    /// Accepts connections again.
    pub fn broker_up(&self, broker: i32) -> KafkaResult<()> {
        // SAFETY: valid cluster.
        check(unsafe { rdsys::rd_kafka_mock_broker_set_up(self.cluster, broker) })
    }

    /// Delays every answer of `broker` by `delay` (requests are still handled at once: a
    /// Produce request is stored, its answer comes late).
    pub fn broker_round_trip_time(&self, broker: i32, delay: Duration) -> KafkaResult<()> {
        // SAFETY: valid cluster.
        check(unsafe {
            rdsys::rd_kafka_mock_broker_set_rtt(self.cluster, broker, delay.as_millis() as c_int)
        })
    }

    /// The next requests of kind `api` (to any broker) fail with `errors`, in order;
    /// `RD_KAFKA_RESP_ERR__TRANSPORT` closes the connection instead of answering.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        // SAFETY: valid cluster; the array outlives the call.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.cluster,
                api as i16,
                errors.len(),
                errors.as_ptr(),
            )
        }
    }

    /// The next requests of kind `api` to `broker` fail with each error, answered only after
    /// its delay: a request that times out in the client without being stored.
    pub fn request_errors_delayed(
        &self,
        broker: i32,
        api: RDKafkaApiKey,
        errors: &[(RDKafkaRespErr, Duration)],
    ) -> KafkaResult<()> {
        for (err, delay) in errors {
            // SAFETY: valid cluster; one (error, rtt) pair of C ints per call, as declared.
            check(unsafe {
                rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                    self.cluster,
                    broker,
                    api as i16,
                    1,
                    *err as c_int,
                    delay.as_millis() as c_int,
                )
            })?;
        }
        Ok(())
    }

    /// Forgets the errors still queued for `api`.
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) {
        // SAFETY: valid cluster.
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.cluster, api as i16) }
    }

    /// Starts recording every request the cluster receives (see [`MockKafka::requests`]).
    pub fn start_request_tracking(&self) {
        // SAFETY: valid cluster.
        unsafe { rdsys::rd_kafka_mock_start_request_tracking(self.cluster) }
    }

    /// Requests of kind `api` received since tracking started, by the receiving broker's id.
    pub fn requests(&self, api: RDKafkaApiKey) -> Vec<i32> {
        let mut n = 0usize;
        // SAFETY: valid cluster; the returned array of `n` requests is ours to destroy.
        unsafe {
            let reqs = rdsys::rd_kafka_mock_get_requests(self.cluster, &mut n);
            if reqs.is_null() {
                return Vec::new();
            }
            let out = (0..n)
                .map(|i| *reqs.add(i))
                .filter(|r| rdsys::rd_kafka_mock_request_api_key(*r) == api as i16)
                .map(|r| rdsys::rd_kafka_mock_request_id(r))
                .collect();
            rdsys::rd_kafka_mock_request_destroy_array(reqs, n);
            out
        }
    }

    /// Answers Metadata for `topic` with `error` (`NO_ERROR` clears it).
    pub fn topic_error(&self, topic: &str, error: RDKafkaRespErr) -> KafkaResult<()> {
        let t = c_string(topic)?;
        // SAFETY: valid cluster and C string.
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.cluster, t.as_ptr(), error) };
        Ok(())
    }
}

/// Starts a librdkafka mock cluster with `brokers` brokers (ids `1..=brokers`) on loopback
/// ports and returns it with its bootstrap servers string.
///
/// Create topics with [`MockKafka::create_topic`]. The mock speaks librdkafka 2.12's subset of
/// the protocol, e.g. ApiVersions up to v2, Produce up to v10, Metadata up to v12 and
/// InitProducerId up to v4.
///
/// # Panics
///
/// If the cluster cannot be created.
pub fn mock_cluster(brokers: i32) -> (MockKafka, String) {
    let handle: BaseProducer = ClientConfig::new()
        .set("log_level", "0")
        .create()
        .expect("librdkafka handle for the mock cluster");
    let client: &Client<_> = handle.client();
    // SAFETY: a live handle; the cluster is destroyed (in Drop) before the handle.
    let cluster = unsafe { rdsys::rd_kafka_mock_cluster_new(client.native_ptr(), brokers) };
    assert!(!cluster.is_null(), "librdkafka mock cluster");
    let mock = MockKafka {
        cluster,
        _handle: handle,
    };
    let bootstrap = mock.bootstrap_servers();
    (mock, bootstrap)
}
