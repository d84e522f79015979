//! `wafka serve`: tenants over real HTTP (reqwest over a socket), publishing to the real broker,
//! read back with librdkafka. The server runs in this process (`wafka::serve::Server`) except
//! where the command itself is the subject (config errors, SIGTERM, SIGHUP: `serve_cli`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use wafka::serve::{Producers, ServeConfig, Server};
use wafka_producer::Producer;
use wafka_tests::{brokers, consume_all, consume_exactly, create_topic, guest};

/// One test at a time: they share the machine's two cores, and timing bounds are asserted.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ADMIN: &str = "admin-secret";

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A config directory with `serve.toml`: `[http]` on a free port, the admin token, and
/// `tenants` (TOML text of `[tenants.*]` tables; `PROBE` stands for the probe plugin's path).
fn config_dir(tenants: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wafka-serve-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    write_config(&dir, tenants);
    dir
}

fn write_config(dir: &Path, tenants: &str) {
    write_config_with(dir, "", tenants)
}

/// `write_config` with more `[http]` lines.
fn write_config_with(dir: &Path, http: &str, tenants: &str) {
    let text = format!(
        "[kafka]\nbootstrap.servers = \"{}\"\nlinger.ms = 5\n\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_sha256 = \"{}\"\n{http}\n{}",
        brokers(),
        sha(ADMIN),
        tenants.replace("PROBE", &guest("probe").display().to_string())
    );
    std::fs::write(dir.join("serve.toml"), text).unwrap();
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A tenant table: `name` with token `NAME-token`, the probe plugin, and `extra` lines.
fn tenant(name: &str, topics: &[&str], extra: &str) -> String {
    let topics: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[tenants.{name}]\ntoken_sha256 = \"{}\"\ntopics = [{}]\n{extra}\n[[tenants.{name}.plugins]]\nname = \"probe\"\npath = \"PROBE\"\n\n",
        sha(&format!("{name}-token")),
        topics.join(", ")
    )
}

struct Serving {
    server: Server,
    producer: Producer,
    base: String,
    http: reqwest::Client,
    dir: PathBuf,
}

async fn serve(tenants: &str) -> Serving {
    serve_with("", tenants).await
}

async fn serve_with(http: &str, tenants: &str) -> Serving {
    let dir = config_dir(tenants);
    write_config_with(&dir, http, tenants);
    let config = ServeConfig::load(&dir.join("serve.toml")).unwrap();
    let producer = Producer::from_properties([
        ("bootstrap.servers", brokers().as_str()),
        ("linger.ms", "5"),
    ])
    .unwrap();
    let producers = Arc::new(Producers::new(producer.clone(), Arc::new(Producer::new)));
    let server = Server::start(config, producers).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    Serving {
        server,
        producer,
        base,
        http: reqwest::Client::new(),
        dir,
    }
}

/// An answer: status, `Retry-After`, and the body as JSON (or as a string if it is not).
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Serving {
    async fn post(&self, tenant: &str, plugin: &str, token: Option<&str>, body: String) -> Answer {
        let url = format!("{}/v1/tenants/{tenant}/plugins/{plugin}/events", self.base);
        let mut req = self.http.post(url).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.expect("an HTTP answer")).await
    }

    async fn events(&self, tenant: &str, body: String) -> Answer {
        post_events(&self.http, &self.base, tenant, body).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }
}

/// A tenant's events posted to its `probe` plugin with its token (`NAME-token`).
async fn post_events(http: &reqwest::Client, base: &str, tenant: &str, body: String) -> Answer {
    let url = format!("{base}/v1/tenants/{tenant}/plugins/probe/events");
    let r = http
        .post(url)
        .bearer_auth(format!("{tenant}-token"))
        .body(body)
        .send()
        .await
        .expect("an HTTP answer");
    answer(r).await
}

/// Waits (up to 30 s) until `/metrics` shows `line`.
async fn wait_for_metric(s: &Serving, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = s.get("/metrics", Some(ADMIN)).await;
        let text = m.body.as_str().unwrap_or_default().to_string();
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` in:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        retry_after,
        body,
    }
}

fn lines(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(|i| f(i) + "\n").collect()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

fn read_back(topic: &str, n: usize) -> Vec<wafka_tests::Consumed> {
    consume_exactly(&brokers(), topic, n, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_publish_only_where_their_acl_allows() {
    let _one = SERIAL.lock().await;
    let a_topic = create_topic("acme-orders", 3);
    let b_topic = create_topic("beta-events", 3);
    let s = serve(&(tenant("acme", &["acme-*"], "") + &tenant("beta", &[&b_topic], ""))).await;
    let a = s
        .events(
            "acme",
            lines(50, |i| format!("publish {a_topic} k{} a{i}", i % 5)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (
            count(&a.body, "events"),
            count(&a.body, "failed"),
            count(&a.body, "records")
        ),
        (50, 0, 50),
        "{}",
        a.body
    );
    // acme may not write beta's topic: refused, nothing sent.
    let denied = s
        .events("acme", format!("publish {b_topic} k x\nnoop\n"))
        .await;
    assert_eq!(denied.status, 200);
    assert_eq!(count(&denied.body, "failed"), 1, "{}", denied.body);
    assert_eq!(count(&denied.body, "refused"), 1);
    let error = denied.body["errors"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("not-authorized") || error.contains("may not publish"),
        "{error}"
    );
    assert_eq!(denied.body["errors"][0]["event"], 1);
    let b = s
        .events("beta", lines(20, |i| format!("publish {b_topic} k b{i}")))
        .await;
    assert_eq!(count(&b.body, "records"), 20, "{}", b.body);
    s.producer.flush().await;
    let got = read_back(&a_topic, 50);
    assert_eq!(got.len(), 50);
    let got = read_back(&b_topic, 20);
    assert_eq!(got.len(), 20, "beta's topic holds beta's records only");
    assert!(got
        .iter()
        .all(|c| c.value.as_deref().unwrap().starts_with(b"b")));
    s.server.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_before_anything_runs() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("tokens", 1);
    let s = serve(&(tenant("acme", &["*"], "") + &tenant("beta", &["*"], ""))).await;
    let body = || format!("publish {topic} k v\n");
    let missing = s.post("acme", "probe", None, body()).await;
    assert_eq!(missing.status, 401, "{}", missing.body);
    let wrong = s.post("acme", "probe", Some("guess"), body()).await;
    assert_eq!(wrong.status, 401);
    let other = s.post("acme", "probe", Some("beta-token"), body()).await;
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(other.body["error"]
        .as_str()
        .unwrap()
        .contains("may not act for tenant `acme`"));
    // A tenant that does not exist is not revealed: the same answers.
    let nobody = s.post("nobody", "probe", Some("beta-token"), body()).await;
    assert_eq!(nobody.status, 403);
    let nobody = s.post("nobody", "probe", Some("guess"), body()).await;
    assert_eq!(nobody.status, 401);
    let no_plugin = s.post("acme", "nope", Some("acme-token"), body()).await;
    assert_eq!(no_plugin.status, 404, "{}", no_plugin.body);
    // Admin endpoints: the admin token only.
    assert_eq!(s.get("/metrics", None).await.status, 401);
    assert_eq!(s.get("/metrics", Some("acme-token")).await.status, 403);
    assert_eq!(s.get("/healthz", None).await.status, 200);
    assert_eq!(s.get("/readyz", None).await.status, 200);
    let ok = s.events("acme", body()).await;
    assert_eq!(count(&ok.body, "records"), 1);
    s.producer.flush().await;
    // Only the one authorized request published.
    assert_eq!(read_back(&topic, 1).len(), 1);
    let m = s.get("/metrics", Some(ADMIN)).await;
    assert_eq!(m.status, 200);
    let text = m.body.as_str().unwrap();
    for want in [
        "wafka_tenant_records_total{tenant=\"acme\",plugin=\"probe\"} 1",
        "wafka_tenant_events_total{tenant=\"acme\",plugin=\"probe\"} 1",
        "wafka_tenant_instances{tenant=\"beta\",plugin=\"probe\"} 1",
        "wafka_tenant_publish_seconds_count{tenant=\"acme\",plugin=\"probe\"} 1",
        "wafka_http_requests_total{code=\"401\"} 4",
        "wafka_producer_records_acked_total 1",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
    // The host's runtime's tasks: at least this scrape's connection and request.
    let tasks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wafka_runtime_tasks "))
        .unwrap_or_else(|| panic!("no wafka_runtime_tasks in:\n{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(tasks >= 1, "{tasks}");
    s.server.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_whole() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("body-limit", 1);
    let s = serve(&tenant("acme", &["*"], "max_body_bytes = 1000")).await;
    let big = lines(100, |i| format!("publish {topic} k {i:020}"));
    assert!(big.len() > 1000);
    let r = s.events("acme", big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .contains("at most 1000 bytes"));
    let ok = s.events("acme", format!("publish {topic} k small\n")).await;
    assert_eq!(count(&ok.body, "records"), 1);
    s.producer.flush().await;
    assert_eq!(
        read_back(&topic, 1).len(),
        1,
        "nothing of the large body was run"
    );
    s.server.drain(Duration::from_secs(10)).await;
}

/// A tenant's own record limit, below the producer's `max.request.size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_tenants_limit_is_refused() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("record-limit", 1);
    let s = serve(&tenant("acme", &["*"], "max_record_bytes = 100")).await;
    let r = s
        .events(
            "acme",
            format!(
                "publish-size {topic} 101
publish-size {topic} 90
"
            ),
        )
        .await;
    assert_eq!(
        (
            count(&r.body, "records"),
            count(&r.body, "refused"),
            count(&r.body, "failed")
        ),
        (1, 1, 1),
        "{}",
        r.body
    );
    let error = r.body["errors"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("record too large") || error.contains("record-too-large"),
        "{error}"
    );
    s.producer.flush().await;
    let got = read_back(&topic, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_ref().map(Vec::len), Some(90));
    s.server.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_autoflush_the_answer_carries_every_records_offset() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("acked", 3);
    let s = serve(&tenant("acme", &["*"], "autoflush = \"on\"")).await;
    let r = s
        .events(
            "acme",
            lines(12, |i| format!("publish {topic} key{i} v{i}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let acks = r.body["acks"].as_array().expect("acks").clone();
    assert_eq!(acks.len(), 12, "{}", r.body);
    // Answered after the broker acknowledged: the records are readable now, where the
    // answer says.
    let got = read_back(&topic, 12);
    assert_eq!(got.len(), 12);
    for (i, a) in acks.iter().enumerate() {
        assert_eq!(a["topic"], topic.as_str());
        let (p, o) = (
            a["partition"].as_i64().unwrap(),
            a["offset"].as_i64().unwrap(),
        );
        let c = got
            .iter()
            .find(|c| c.partition as i64 == p && c.offset == o)
            .unwrap_or_else(|| panic!("no record at {p}/{o}"));
        assert_eq!(c.value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    s.server.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_quota_gets_429_and_others_go_on() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("quota", 3);
    let good_topic = create_topic("quota-good", 3);
    // 1 KB/s over Kafka's ten-second window: one 20 KB record is twice the quota, so the
    // tenant is throttled for (2,000 - 1,000) / 1,000 x 10 s = 10 s after it.
    let s = serve(
        &(tenant("flood", &["*"], "producer_byte_rate = 1000") + &tenant("good", &["*"], "")),
    )
    .await;
    let first = s
        .events("flood", lines(3, |_| format!("publish-size {topic} 20000")))
        .await;
    // The event that went over stands: 200, the rest not run, and when to send it.
    assert_eq!(first.status, 200, "{}", first.body);
    let wait = first.retry_after.expect("Retry-After");
    assert!((5..=10).contains(&wait), "{wait}");
    assert!(count(&first.body, "throttled_ms") > 4_000, "{}", first.body);
    assert_eq!(
        (
            count(&first.body, "events"),
            count(&first.body, "records"),
            count(&first.body, "not_run")
        ),
        (1, 1, 2),
        "{}",
        first.body
    );
    let again = s
        .events("flood", format!("publish-size {topic} 1000\n"))
        .await;
    assert_eq!(again.status, 429, "throttled before running anything");
    assert!(again.body["error"]
        .as_str()
        .unwrap()
        .contains("producer_byte_rate = 1000)"));
    let good = s
        .events(
            "good",
            lines(300, |i| format!("publish {good_topic} k {i}")),
        )
        .await;
    assert_eq!((good.status, count(&good.body, "records")), (200, 300));
    s.producer.flush().await;
    assert_eq!(read_back(&good_topic, 300).len(), 300);
    let flooded = read_back(&topic, count(&first.body, "records") as usize);
    assert_eq!(flooded.len() as u64, count(&first.body, "records"));
    let m = s.get("/metrics", Some(ADMIN)).await;
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains("wafka_tenant_throttled_seconds_total{tenant=\"flood\"}"),
        "{text}"
    );
    s.server.drain(Duration::from_secs(10)).await;
}

/// A hostile tenant (loop, memory bomb, sleep, trap) beside a good one publishing over HTTP at
/// the same time: the hostile one gets its errors in bounded time, its instance is replaced,
/// and the good one loses and duplicates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_is_contained_while_a_good_one_loses_nothing() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("good-neighbour", 3);
    let s = Arc::new(
        serve(
            &(tenant(
                "evil",
                &["*"],
                "max_cpu_ms = 200\nmax_call_ms = 2000\nmax_memory_mb = 16\nmax_instances = 2",
            ) + &tenant("good", &[&topic], "")),
        )
        .await,
    );
    let good = {
        let s = s.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            for round in 0..20 {
                let r = s
                    .events(
                        "good",
                        lines(50, |i| format!("publish {topic} k{} r{round}-{i}", i % 3)),
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(count(&r.body, "failed"), 0, "{}", r.body);
                sent += count(&r.body, "records");
            }
            sent
        })
    };
    for (attack, cause) in [
        ("loop", "CPU time limit of 200 ms"),
        ("grow 64", "memory limit of 16 MiB"),
        ("sleep 5000", "wall-time limit of 2000 ms"),
        ("trap", "panicked"),
    ] {
        let started = Instant::now();
        let r = s.events("evil", format!("{attack}\nnoop\nnoop\n")).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{attack}: {}", r.body);
        let error = r.body["errors"][0]["error"].as_str().unwrap().to_string();
        assert!(
            error.contains(cause) && error.contains("evil/probe"),
            "{attack}: {error}"
        );
        assert_eq!(
            count(&r.body, "not_run"),
            2,
            "{attack}: the rest of the body waits"
        );
        assert!(took < Duration::from_secs(10), "{attack} took {took:?}");
        // The next request gets a fresh instance.
        let next = s.events("evil", "noop\n".into()).await;
        assert_eq!(
            (next.status, count(&next.body, "failed")),
            (200, 0),
            "{}",
            next.body
        );
    }
    let sent = good.await.unwrap();
    assert_eq!(sent, 1000);
    s.producer.flush().await;
    let got = read_back(&topic, 1000);
    assert_eq!(got.len(), 1000, "none lost, none doubled");
    let m = s.get("/metrics", Some(ADMIN)).await;
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains("wafka_tenant_traps_total{tenant=\"evil\",plugin=\"probe\"} 4"),
        "{text}"
    );
}

/// Reload under load: a changed tenant gets new instances, and every record the old ones
/// accepted is delivered; a config that does not parse leaves the running one in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_nothing() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("reload", 3);
    let s = Arc::new(serve(&tenant("acme", &["*"], "max_instances = 2")).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two clients whose requests each take a while (a 200 ms sleep, then 25 publishes), so
    // that some are running on the old instances when the reload swaps the tenant.
    let mut clients = Vec::new();
    for c in 0..2 {
        let (s, topic, stop) = (s.clone(), topic.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut sent, mut spans) = (0u64, Vec::new());
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = "sleep 200\n".to_string()
                    + &lines(25, |i| format!("publish {topic} k{i} {c}-{round}-{i}"));
                let t0 = Instant::now();
                let r = s.events("acme", body).await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(count(&r.body, "failed"), 0, "{}", r.body);
                sent += count(&r.body, "records");
                spans.push((t0, Instant::now()));
                round += 1;
            }
            (sent, spans)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_config(&s.dir, &tenant("acme", &["*"], "max_instances = 3"));
    let reload_began = Instant::now();
    let r = s.server.reload().await.unwrap();
    assert_eq!((r.tenants, r.started, r.kept), (1, 1, 0), "{r:?}");
    // A broken file: refused, one line, the running tenants stay.
    std::fs::write(s.dir.join("serve.toml"), "[http\n").unwrap();
    let e = s.server.reload().await.unwrap_err().to_string();
    assert!(e.contains("serve.toml:1:") && !e.contains('\n'), "{e}");
    let admin = s
        .http
        .post(format!("{}/v1/admin/reload", s.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    let mut across = 0;
    for c in clients {
        let (n, spans) = c.await.unwrap();
        sent += n;
        across += spans
            .iter()
            .filter(|(a, b)| *a < reload_began && *b > reload_began)
            .count();
    }
    assert!(across > 0, "no request was in flight when the reload began");
    s.producer.flush().await;
    assert_eq!(read_back(&topic, sent as usize).len() as u64, sent);
}

/// Drain: new requests and `/readyz` get 503 at once, the event in progress finishes, the rest
/// of its body is `not_run`, and every record the answer counts is on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_finishes_what_it_accepted() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("drain", 3);
    let s = serve(&tenant("acme", &["*"], "")).await;
    let http = s.http.clone();
    let url = format!("{}/v1/tenants/acme/plugins/probe/events", s.base);
    let body =
        format!("publish {topic} k 0\nsleep 1500\npublish {topic} k 1\npublish {topic} k 2\n");
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move {
            answer(
                http.post(url)
                    .bearer_auth("acme-token")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    });
    // Drain once the first event is done and the second has begun (it sleeps 1.5 s).
    wait_for_metric(
        &s,
        "wafka_tenant_events_total{tenant=\"acme\",plugin=\"probe\"} 1",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = s.base.clone();
    let drain = tokio::spawn(s.server.drain(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = answer(
        http.post(&url)
            .bearer_auth("acme-token")
            .body(format!("publish {topic} k late\n"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let ready = answer(http.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(
        (
            count(&slow.body, "events"),
            count(&slow.body, "records"),
            count(&slow.body, "not_run")
        ),
        (2, 1, 2),
        "{}",
        slow.body
    );
    let drained = drain.await.unwrap();
    assert!(drained.flushed && drained.events_cut == 0, "{drained:?}");
    assert_eq!(read_back(&topic, 1).len(), 1);
}

/// `wafka serve` as a process: its stderr collected as it comes (the first
/// [`KEPT_STDERR`] bytes kept, all of them counted).
struct Command {
    child: std::process::Child,
    stderr: Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Bytes the process wrote to stderr so far.
    stderr_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// While set, its stderr is not read (a slow log: the pipe fills).
    stderr_paused: Arc<std::sync::atomic::AtomicBool>,
}

/// Most of a process's stderr a [`Command`] keeps (the rest is only counted).
const KEPT_STDERR: usize = 16 << 20;

impl Command {
    fn start(args: &[&str]) -> Command {
        Self::spawn(std::process::Command::new(env!("CARGO_BIN_EXE_wafka")).args(args))
    }

    /// [`Command::start`] with the descriptor limit (`RLIMIT_NOFILE`) set to `soft` and `hard`
    /// in the child before it runs.
    fn start_with_nofile(args: &[&str], soft: u64, hard: u64) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wafka"));
        command.args(args);
        // SAFETY: setrlimit(2) only, between fork and exec: async-signal-safe, no allocation.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::spawn(&mut command)
    }

    fn spawn(command: &mut std::process::Command) -> Command {
        use std::io::BufRead;
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run wafka");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let stderr_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stderr_paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pipe, all) = (child.stderr.take().unwrap(), stderr.clone());
        let (bytes, paused) = (stderr_bytes.clone(), stderr_paused.clone());
        let reader = std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let mut pipe = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                while paused.load(Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                line.clear();
                match pipe.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Relaxed);
                        let mut all = all.lock().unwrap();
                        if all.len() < KEPT_STDERR {
                            all.push_str(String::from_utf8_lossy(&line).trim_end_matches('\n'));
                            all.push('\n');
                        }
                    }
                }
            }
        });
        Command {
            child,
            stderr,
            reader: Some(reader),
            stderr_bytes,
            stderr_paused,
        }
    }

    /// Waits until stderr has a line containing `what`; returns that line.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .find(|l| l.contains(what))
            {
                return l.to_string();
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no `{what}` from wafka serve ({exited:?}):\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until stderr has `n` lines containing `what`.
    fn wait_for_count(&mut self, what: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .filter(|l| l.contains(what))
                .count();
            if seen >= n {
                return;
            }
            let exited = self.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{seen} of {n} `{what}` from wafka serve ({exited:?}):\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit (at most `timeout`); its success and stderr.
    /// SIGTERM, then waits (up to 60 s) for the drain to exit 0; its stderr (the test fails,
    /// with the end of it, if it does not exit 0).
    async fn drain(self) -> String {
        self.signal(libc::SIGTERM);
        let (ok, stderr) =
            tokio::task::spawn_blocking(move || self.finish(Duration::from_secs(60)))
                .await
                .unwrap();
        assert!(
            ok,
            "exit 0 after a drain:\n{}",
            &stderr[stderr.len().saturating_sub(2000)..]
        );
        stderr
    }

    fn finish(mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wafka serve did not exit:\n{}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (status.success(), stderr)
    }
}

impl Drop for Command {
    /// A test that failed midway does not leave the process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serving_address(line: &str) -> String {
    line.rsplit("http://").next().unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_a_config_error_is_one_line_before_anything_starts() {
    let _one = SERIAL.lock().await;
    let dir = config_dir(&tenant("acme", &["*"], "max_memroy_mb = 3"));
    // No brokers named anywhere either: the error comes before a local broker would start.
    let text = std::fs::read_to_string(dir.join("serve.toml"))
        .unwrap()
        .replace(&format!("bootstrap.servers = \"{}\"\n", brokers()), "");
    std::fs::write(dir.join("serve.toml"), text).unwrap();
    let file = dir.join("serve.toml").display().to_string();
    let started = Instant::now();
    let (ok, stderr) =
        Command::start(&["serve", "--config", &file]).finish(Duration::from_secs(30));
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("wafka: {file}:")) && stderr.contains("max_memroy_mb"),
        "{stderr}"
    );
    // Buffer shares that cannot fit, with -X's buffer.memory: the same, before a broker.
    let many: String = (0..5)
        .map(|i| tenant(&format!("t{i}"), &["*"], ""))
        .collect();
    let text = std::fs::read_to_string(config_dir(&many).join("serve.toml"))
        .unwrap()
        .replace(&format!("bootstrap.servers = \"{}\"\n", brokers()), "");
    std::fs::write(dir.join("serve.toml"), text).unwrap();
    let started = Instant::now();
    let (ok, stderr) = Command::start(&["serve", "--config", &file, "-X", "buffer.memory=4194304"])
        .finish(Duration::from_secs(30));
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`kafka.buffer.memory`: 5 tenants share buffer.memory (4194304 bytes) equally: 838860 bytes each"),
        "{stderr}"
    );
}

/// SIGTERM under load: requests in progress finish, later ones are refused, the process
/// exits 0, and every record an answer counted is on the broker. SIGHUP reloads first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_reloads_on_sighup_and_drains_on_sigterm() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("sigterm", 3);
    let dir = config_dir(&tenant("acme", &["*"], ""));
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start(&["serve", "--config", &file]);
    let line = cmd.wait_for("serving 1 tenants", Duration::from_secs(120));
    let base = format!("http://{}", serving_address(&line));
    let http = reqwest::Client::new();
    // SIGHUP: a second tenant appears.
    write_config(
        &dir,
        &(tenant("acme", &["*"], "") + &tenant("beta", &["*"], "")),
    );
    cmd.signal(libc::SIGHUP);
    cmd.wait_for("reloaded", Duration::from_secs(60));
    let beta = post_events(&http, &base, "beta", format!("publish {topic} b beta\n")).await;
    assert_eq!(
        (beta.status, count(&beta.body, "records")),
        (200, 1),
        "{}",
        beta.body
    );
    // Load: four clients in a loop, each request 10 events that sleep and publish.
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, base, topic) = (http.clone(), base.clone(), topic.clone());
        clients.push(tokio::spawn(async move {
            let (mut records, mut refused) = (0u64, 0u64);
            for round in 0.. {
                let body = lines(10, |i| format!("sleep 5\npublish {topic} c{c} {round}-{i}"));
                let r = http
                    .post(format!("{base}/v1/tenants/acme/plugins/probe/events"))
                    .bearer_auth("acme-token")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) => {
                        let a = answer(r).await;
                        match a.status {
                            200 => records += count(&a.body, "records"),
                            503 => refused += 1,
                            s => panic!("status {s}: {}", a.body),
                        }
                    }
                    // The listener closed: the drain is over.
                    Err(_) => break,
                }
                if refused > 0 {
                    break;
                }
            }
            records
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stderr = cmd.drain().await;
    assert!(stderr.contains("drained in"), "{stderr}");
    let mut records = 1; // beta's
    for c in clients {
        records += c.await.unwrap();
    }
    assert!(records > 10, "the load ran: {records}");
    let got = read_back(&topic, records as usize);
    assert_eq!(
        got.len() as u64,
        records,
        "every record an answer counted, once"
    );
}

/// Requests per second a tenant's one client gets through in `window`, each of `events`
/// publishes.
async fn rate(s: &Serving, tenant: &str, topic: &str, window: Duration) -> (f64, u64) {
    rate_at(&s.http, &s.base, tenant, topic, window).await
}

/// [`rate`] against the server at `base`.
async fn rate_at(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    topic: &str,
    window: Duration,
) -> (f64, u64) {
    let t0 = Instant::now();
    let (mut n, mut records) = (0u64, 0u64);
    while t0.elapsed() < window {
        let r = post_events(
            http,
            base,
            tenant,
            lines(20, |i| format!("publish {topic} k{i} {n}-{i}")),
        )
        .await;
        assert_eq!((r.status, count(&r.body, "failed")), (200, 0), "{}", r.body);
        records += count(&r.body, "records");
        n += 1;
    }
    (n as f64 / t0.elapsed().as_secs_f64(), records)
}

/// A tenant spinning on every instance it has, and another flooding past its quota, beside a
/// good tenant: the good one keeps a share of the host (bounded slowdown) and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_and_flooding_tenants_leave_a_good_one_its_share() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("fair", 3);
    let flood_topic = create_topic("fair-flood", 3);
    let s = Arc::new(
        serve(
            &(tenant("spin", &["*"], "max_cpu_ms = 300\nmax_instances = 6")
                + &tenant(
                    "flood",
                    &["*"],
                    "producer_byte_rate = 100000\nmax_instances = 2",
                )
                + &tenant("good", &[&topic], "")),
        )
        .await,
    );
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate(&s, "good", &topic, window).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for (who, event) in [
        ("spin", "loop".to_string()),
        ("spin", "loop".to_string()),
        ("spin", "loop".to_string()),
        ("spin", "loop".to_string()),
        ("spin", "loop".to_string()),
        ("spin", "loop".to_string()),
        ("flood", format!("publish-size {flood_topic} 10000")),
        ("flood", format!("publish-size {flood_topic} 10000")),
    ] {
        let (s, stop) = (s.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut answers = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = s.events(who, lines(50, |_| event.clone())).await;
                assert!([200, 429].contains(&r.status), "{}", r.body);
                answers += 1;
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, more) = rate(&s, "good", &topic, window).await;
    records += more;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        assert!(a.await.unwrap() > 0);
    }
    eprintln!("good tenant: {alone:.0} requests/s alone, {attacked:.0} beside the attackers");
    // Three tenants on two cores: about a third each, whatever number of instances the
    // others keep busy (measured: 0.41 of its rate alone; 0.13 before a tenant's instances
    // shared one CPU group). A sixth is the bound: room for a noisy machine (a fifth failed
    // once in a CI run beside other builds), still above the 0.13 of the defect it guards.
    assert!(
        attacked >= alone / 6.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside the attackers"
    );
    s.producer.flush().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}

/// A client that goes away in the middle of a call does not leave a broken instance behind:
/// the body it sent still runs to its end, and the next request is served normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_call_breaks_nothing() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("hangup", 1);
    let s = serve(&tenant("acme", &["*"], "max_instances = 1")).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}/v1/tenants/acme/plugins/probe/events", s.base))
        .bearer_auth("acme-token")
        .body(format!("sleep 3000\npublish {topic} k accepted\n"))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let next = s.events("acme", format!("publish {topic} k next\n")).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(
        (count(&next.body, "failed"), count(&next.body, "records")),
        (0, 1),
        "{}",
        next.body
    );
    s.producer.flush().await;
    let got = read_back(&topic, 2);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, vec![b"accepted".to_vec(), b"next".to_vec()]);
}

/// Clients that are slow on purpose, or too many, cost a bounded time and connection each,
/// tokens or not; a tenant's requests past its `max_requests` are refused before their body
/// is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_piling_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _one = SERIAL.lock().await;
    let topic = create_topic("slow-clients", 1);
    let s = serve_with(
        "header_timeout_ms = 500\nbody_timeout_ms = 500\n",
        &tenant("acme", &["*"], "max_instances = 1\nmax_requests = 1"),
    )
    .await;
    let addr = s.server.local_addr();
    // Half a request line, then nothing: closed after the header timeout.
    let t0 = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /v1/tenants/acme/plug").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Headers, then a body that stops halfway: 408 after the body timeout.
    let t0 = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /v1/tenants/acme/plugins/probe/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer acme-token\r\ncontent-length: 100\r\n\r\nnoop\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(c);
    // max_requests = 1: a second request while one runs is refused before its body.
    let first = tokio::spawn({
        let (http, base) = (s.http.clone(), s.base.clone());
        async move { post_events(&http, &base, "acme", "sleep 3000\n".to_string()).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = s.events("acme", format!("publish {topic} k v\n")).await;
    assert_eq!(second.status, 429, "{}", second.body);
    assert!(second.retry_after.is_some());
    assert_eq!(first.await.unwrap().status, 200);
    let third = s.events("acme", format!("publish {topic} k v\n")).await;
    assert_eq!(count(&third.body, "records"), 1);
    s.producer.flush().await;
    assert_eq!(
        read_back(&topic, 1).len(),
        1,
        "the refused request published nothing"
    );
}

/// A config asking for more instances than one host's pool can reserve is refused when it is
/// read, in one line naming the key, before any address space is reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_instances_for_one_host_are_refused_at_start() {
    let _one = SERIAL.lock().await;
    let dir = config_dir(
        &(tenant("big", &["*"], "max_instances = 5000")
            + &tenant("bigger", &["*"], "max_instances = 5000")),
    );
    let e = ServeConfig::load(&dir.join("serve.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`tenants.*.max_instances`") && e.contains("at most 12000") && !e.contains('\n'),
        "{e}"
    );
    let dir = config_dir(&tenant("huge", &["*"], "max_instances = 7000"));
    let e = ServeConfig::load(&dir.join("serve.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`tenants.huge.max_instances`: 7000: at most 6000"),
        "{e}"
    );
}

/// A tenant removed by a reload while one of its requests runs: that request finishes and its
/// records are delivered; its token no longer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_removed_mid_request_keeps_what_it_sent() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("removed", 1);
    let s = serve(&(tenant("acme", &["*"], "") + &tenant("gone", &["*"], ""))).await;
    let running = tokio::spawn({
        let (http, base, topic) = (s.http.clone(), s.base.clone(), topic.clone());
        async move {
            let body = format!("publish {topic} k before\nsleep 500\npublish {topic} k after\n");
            post_events(&http, &base, "gone", body).await
        }
    });
    wait_for_metric(
        &s,
        "wafka_tenant_events_total{tenant=\"gone\",plugin=\"probe\"} 1",
    )
    .await;
    write_config(&s.dir, &tenant("acme", &["*"], ""));
    let r = s.server.reload().await.unwrap();
    assert_eq!((r.tenants, r.kept, r.removed), (1, 1, 1), "{r:?}");
    let a = running.await.unwrap();
    assert_eq!(
        (a.status, count(&a.body, "records")),
        (200, 2),
        "{}",
        a.body
    );
    let after = s.events("gone", format!("publish {topic} k late\n")).await;
    assert_eq!(after.status, 401, "{}", after.body);
    s.producer.flush().await;
    assert_eq!(read_back(&topic, 2).len(), 2);
}

/// Connections past `http.max_connections` are answered 503 with `Retry-After` and closed
/// within a second (the answer waits that long for a request), not after the header timeout
/// (long here). (A client that never reads its answers is
/// cut off by the write-stall bound: `serve::http`'s unit test; hyper itself closes a
/// connection flooded with pipelined requests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_answered_503_at_once() {
    use tokio::io::AsyncReadExt;
    let _one = SERIAL.lock().await;
    let s = serve_with(
        "header_timeout_ms = 30000\nbody_timeout_ms = 500\nmax_connections = 8\nauthenticated_share = 0\n",
        &tenant("acme", &["*"], ""),
    )
    .await;
    let addr = s.server.local_addr();
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut buf))
        .await
        .expect("closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("\r\nretry-after: 1\r\n"),
        "{answer}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "closed by the cap, not a timeout: {:?}",
        t0.elapsed()
    );
    drop(open);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.get("/healthz", None).await.status, 200, "served again");
}

/// Tenants with Kafka identities of their own (`[tenants.NAME.kafka]`) publish as themselves:
/// over SASL_SSL, each through the producer core of its SCRAM user (tenants with the same
/// identity share one), a tenant with a wrong password is refused fast with the broker's
/// words (and never its password) while the others deliver, and the records are read back
/// by librdkafka over SASL_SSL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_publish_with_their_own_credentials() {
    use wafka_tests::secure::{
        jaas, secure_broker, Secured, PASSWORD, SCRAM256_USER, SCRAM512_USER,
    };
    let _one = SERIAL.lock().await;
    let broker = secure_broker(Secured::SaslSsl);
    let topic = format!(
        "own-identity-{}",
        rand_suffix() + 1000 * std::process::id() as u64
    );
    wafka_tests::create_topic_named(&broker.addr, &topic, 3);
    let ca = broker.ca_file.display().to_string();
    let host = [
        ("bootstrap.servers", broker.addr.clone()),
        ("linger.ms", "5".into()),
        ("security.protocol", "SASL_SSL".into()),
        ("ssl.truststore.location", ca.clone()),
        ("sasl.mechanism", "SCRAM-SHA-512".into()),
        ("sasl.jaas.config", jaas(SCRAM512_USER, PASSWORD)),
    ];
    let mut text = String::from("[kafka]\n");
    for (k, v) in &host {
        text.push_str(&format!("\"{k}\" = '{v}'\n"));
    }
    text.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_sha256 = \"{}\"\n\n",
        sha(ADMIN)
    ));
    let own_256 = format!(
        "[tenants.NAME.kafka]\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.jaas.config\" = '{}'\n\"client.id\" = \"acme-client\"\n",
        jaas(SCRAM256_USER, PASSWORD)
    );
    let wrong_password = "not-the-password";
    for (name, own) in [
        // acme and delta have the same identity (SCRAM-SHA-256 user, client.id): one core;
        // beta is the host's user, gamma has a wrong password.
        ("acme", own_256.clone()),
        ("delta", own_256.clone()),
        ("beta", String::new()),
        (
            "gamma",
            format!(
                "[tenants.gamma.kafka]\n\"sasl.username\" = \"{SCRAM512_USER}\"\n\"sasl.password\" = \"{wrong_password}\"\n"
            ),
        ),
    ] {
        let t = tenant(name, &["*"], "autoflush = \"on\"").replace("PROBE", &guest("probe").display().to_string());
        // The tenant's own table goes before its plugins' array of tables.
        let (head, plugins) = t.split_once("[[tenants.").unwrap();
        let own = own.replace("[tenants.NAME.kafka]", &format!("[tenants.{name}.kafka]"));
        text.push_str(&format!("{head}{own}\n[[tenants.{plugins}"));
    }
    let dir = config_dir("");
    std::fs::write(dir.join("serve.toml"), &text).unwrap();
    let config = ServeConfig::load(&dir.join("serve.toml")).unwrap();
    assert!(
        !format!("{config:?}").contains(PASSWORD)
            && !format!("{config:?}").contains(wrong_password),
        "Debug shows a password"
    );
    let producer = Producer::from_properties(host.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    let producers = Arc::new(Producers::new(producer.clone(), Arc::new(Producer::new)));
    let server = Server::start(config, producers).await.unwrap();
    let s = Serving {
        server,
        producer,
        base: String::new(),
        http: reqwest::Client::new(),
        dir,
    };
    let s = Serving {
        base: format!("http://{}", s.server.local_addr()),
        ..s
    };
    for name in ["acme", "delta", "beta"] {
        let r = s
            .events(
                name,
                lines(10, |i| format!("publish {topic} {name} {name}{i}")),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(count(&r.body, "failed"), 0, "{name}: {}", r.body);
        assert_eq!(
            r.body["acks"].as_array().map(Vec::len),
            Some(10),
            "{}",
            r.body
        );
    }
    let started = Instant::now();
    let r = s
        .events(
            "gamma",
            lines(3, |i| format!("publish {topic} gamma gamma{i}")),
        )
        .await;
    let took = started.elapsed();
    let body = r.body.to_string();
    assert!(
        took < Duration::from_secs(10),
        "refused after {took:?}: {body}"
    );
    assert_eq!(count(&r.body, "failed"), 3, "{body}");
    assert!(body.contains("SASL_AUTHENTICATION_FAILED"), "{body}");
    assert!(body.contains(SCRAM512_USER), "{body}");
    assert!(
        !body.contains(wrong_password) && !body.contains(PASSWORD),
        "{body}"
    );
    // The host's core, the one acme and delta share, gamma's.
    wait_for_metric(&s, "wafka_producer_cores 3").await;
    let got = consume_exactly(&broker.addr, &topic, 30, Duration::from_secs(30));
    for name in ["acme", "delta", "beta"] {
        let mine = got
            .iter()
            .filter(|c| c.key.as_deref() == Some(name.as_bytes()))
            .count();
        assert_eq!(mine, 10, "{name}'s records");
    }
    assert!(got
        .iter()
        .all(|c| c.key.as_deref() != Some(b"gamma".as_slice())));

    // A reload keeps beta alone: the cores of the identities no tenant has any more close
    // after the drain timeout, and the counters they carried do not go down.
    let head = &text[..text.find("[tenants.").unwrap()];
    let beta_only = head.replace("[http]\n", "[http]\ndrain_timeout_ms = 300\n")
        + &tenant("beta", &["*"], "autoflush = \"on\"")
            .replace("PROBE", &guest("probe").display().to_string());
    std::fs::write(s.dir.join("serve.toml"), &beta_only).unwrap();
    let r = s.server.reload().await.expect("reloaded");
    assert_eq!((r.tenants, r.kept, r.removed), (1, 1, 3), "{r:?}");
    wait_for_metric(&s, "wafka_producer_cores 1\n").await;
    wait_for_metric(&s, "wafka_producer_records_acked_total 30\n").await;

    // A reload that fails after it started a core for a new identity (the tenant's plugin is
    // not a component) changes nothing: that core is retired too.
    let junk = s.dir.join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let epsilon = tenant("epsilon", &["*"], "")
        .replace("PROBE", &junk.display().to_string())
        .replacen(
            "[[tenants.",
            &format!("{}\n[[tenants.", own_256.replace("NAME", "epsilon")),
            1,
        );
    std::fs::write(s.dir.join("serve.toml"), beta_only.clone() + &epsilon).unwrap();
    let e = s
        .server
        .reload()
        .await
        .expect_err("a plugin that is not a component");
    assert!(e.to_string().contains("tenants.epsilon"), "{e}");
    wait_for_metric(&s, "wafka_producer_cores 1\n").await;
    s.server.drain(Duration::from_secs(10)).await;
}

/// A drain lets each idle instance finish (the plugin's `finish`, which may still publish)
/// before the records are flushed: the probe's `finish` record reaches the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_idle_instances_finish() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("serve-finish", 1);
    let t = tenant("acme", &["*"], "max_instances = 1").replace(
        "path = \"PROBE\"\n",
        &format!("path = \"PROBE\"\nconfig = {{ \"publish-finish\" = \"{topic}\" }}\n"),
    );
    let s = serve(&t).await;
    let r = s.events("acme", format!("publish {topic} k event\n")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let drained = s.server.drain(Duration::from_secs(10)).await;
    assert!(drained.flushed, "{drained:?}");
    let got = read_back(&topic, 2);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"event".to_vec(), b"finish".to_vec()]);
}

/// An instance busy when a reload retires its pool finishes once its request is done (within
/// the drain timeout), as the idle ones do: the probe's `finish` record reaches the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lets_an_instance_busy_at_the_time_finish_afterwards() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("serve-finish-busy", 1);
    let with_finish = |extra: &str| {
        tenant("acme", &["*"], "max_instances = 1").replace(
            "path = \"PROBE\"\n",
            &format!("path = \"PROBE\"\nconfig = {{ \"publish-finish\" = \"{topic}\"{extra} }}\n"),
        )
    };
    let s = serve(&with_finish("")).await;
    // The only instance is busy (sleeping 3 s after its first record, which shows it is
    // leased) when the reload replaces the plugin's pool.
    let busy = {
        let (http, base) = (s.http.clone(), s.base.clone());
        let body = format!("publish {topic} k before\nsleep 3000\n");
        tokio::spawn(async move { post_events(&http, &base, "acme", body).await })
    };
    let first = topic.clone();
    tokio::task::spawn_blocking(move || read_back(&first, 1))
        .await
        .unwrap();
    write_config(&s.dir, &with_finish(", \"changed\" = \"yes\""));
    let r = s.server.reload().await.expect("reloaded");
    assert_eq!(r.kept, 0, "the tenant changed: {r:?}");
    let answer = busy.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let got = read_back(&topic, 2);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"before".to_vec(), b"finish".to_vec()]);
    s.server.drain(Duration::from_secs(10)).await;
}

/// `wafka serve` loads a wasi:messaging plugin (`messenger`) through the same path: a tenant's
/// events reach its handler, its messages are published within the tenant's ACL, and a
/// refusal is the draft's `permission-denied` in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_serve_a_wasi_messaging_plugin() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("mq-events", 1);
    let table = format!(
        "[tenants.mq]\ntoken_sha256 = \"{}\"\ntopics = [\"{topic}\"]\n\n[[tenants.mq.plugins]]\nname = \"messenger\"\npath = \"{}\"\n",
        sha("mq-token"),
        guest("messenger").display()
    );
    let s = serve(&table).await;
    let mut body = lines(10, |i| format!("{topic} m{i}"));
    body.push_str("elsewhere x\n");
    let a = s.post("mq", "messenger", Some("mq-token"), body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (
            count(&a.body, "events"),
            count(&a.body, "failed"),
            count(&a.body, "records"),
            count(&a.body, "refused")
        ),
        (11, 1, 10, 1),
        "{}",
        a.body
    );
    let error = a.body["errors"][0]["error"].as_str().unwrap();
    assert!(
        error.contains(
            "permission-denied: plugin `mq/messenger` may not publish to topic `elsewhere`"
        ),
        "{error}"
    );
    s.producer.flush().await;
    let got = read_back(&topic, 10);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(
        values,
        (0..10)
            .map(|i| format!("m{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(got[3].headers[1], ("seq".to_string(), Some(b"3".to_vec())));
    s.server.drain(Duration::from_secs(10)).await;
}

/// A drain right after a reload waits for the retired pool's instance to finish (its `finish`
/// takes half a second) before it flushes: the record `finish` publishes is at the broker when
/// the drain returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_for_the_pools_a_reload_retired_to_finish() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("serve-finish-retired", 1);
    let slow_finish = tenant("acme", &["*"], "max_instances = 1").replace(
        "path = \"PROBE\"\n",
        &format!(
            "path = \"PROBE\"\nconfig = {{ \"publish-finish\" = \"{topic}\", \"sleep-finish\" = \"500\" }}\n"
        ),
    );
    let s = serve(&slow_finish).await;
    let r = s
        .events("acme", format!("publish {topic} k before\n"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The new pool's instances finish at once and publish nothing.
    write_config(&s.dir, &tenant("acme", &["*"], "max_instances = 1"));
    let r = s.server.reload().await.expect("reloaded");
    assert_eq!(r.kept, 0, "the tenant changed: {r:?}");
    let drained = s.server.drain(Duration::from_secs(10)).await;
    assert!(drained.flushed, "{drained:?}");
    // What the broker holds now, not what may arrive later.
    let got = consume_all(&brokers(), &topic, Duration::from_secs(30));
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"before".to_vec(), b"finish".to_vec()]);
}

/// `POST /v1/admin/reload` with the admin token.
async fn reload_http(http: &reqwest::Client, base: &str) -> Answer {
    let r = http
        .post(format!("{base}/v1/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("an HTTP answer");
    answer(r).await
}

/// A tenant table whose probe plugin gets `config` (TOML inline-table entries) for `init`.
fn tenant_with_config(name: &str, topics: &[&str], extra: &str, config: &str) -> String {
    tenant(name, topics, extra).replace(
        "path = \"PROBE\"\n",
        &format!("path = \"PROBE\"\nconfig = {{ {config} }}\n"),
    )
}

/// `topics = []` is a tenant with no topics yet: each of its publishes is refused (an empty
/// list is not "every topic"), and another tenant's topic gets nothing from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_no_topics_publishes_nowhere() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("no-topics", 1);
    let s = serve(&(tenant("owner", &[&topic], "") + &tenant("empty", &[], ""))).await;
    let r = s
        .events(
            "empty",
            lines(2, |i| format!("publish {topic} k stolen{i}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            count(&r.body, "records"),
            count(&r.body, "refused"),
            count(&r.body, "failed")
        ),
        (0, 2, 2),
        "{}",
        r.body
    );
    let error = r.body["errors"][0]["error"].as_str().unwrap();
    assert!(error.contains("may not publish to topic"), "{error}");
    let mine = s.events("owner", format!("publish {topic} k mine\n")).await;
    assert_eq!(count(&mine.body, "records"), 1, "{}", mine.body);
    s.producer.flush().await;
    let got = read_back(&topic, 1);
    let values: Vec<_> = got.iter().map(|c| c.value.clone().unwrap()).collect();
    assert_eq!(values, [b"mine".to_vec()], "the owner's record only");
    s.server.drain(Duration::from_secs(10)).await;
}

/// A reload whose new instances cannot start (the plugin's `init` fails) is refused, 400 with
/// the plugin's words on one line, and the running configuration stays: the tenant goes on
/// publishing through its instances, and a new tenant with such a plugin does not appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_plugin_cannot_start_is_refused() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("reload-init", 1);
    let s = serve(&tenant("acme", &["*"], "")).await;
    let failing = |name: &str| {
        tenant_with_config(
            name,
            &["*"],
            "",
            "\"fail-init\" = \"init refuses on purpose\"",
        )
    };
    write_config(&s.dir, &failing("acme"));
    let r = reload_http(&s.http, &s.base).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let e = r.body["error"].as_str().unwrap();
    assert!(
        e.contains("init refuses on purpose") && e.contains("tenants.acme") && !e.contains('\n'),
        "{e}"
    );
    let e = s.server.reload().await.unwrap_err().to_string();
    assert!(e.contains("init refuses on purpose"), "{e}");
    let ok = s
        .events("acme", lines(3, |i| format!("publish {topic} k v{i}")))
        .await;
    assert_eq!(
        (
            ok.status,
            count(&ok.body, "records"),
            count(&ok.body, "failed")
        ),
        (200, 3, 0),
        "{}",
        ok.body
    );
    // A new tenant whose plugin cannot start: the whole reload is refused.
    write_config(&s.dir, &(tenant("acme", &["*"], "") + &failing("beta")));
    let r = reload_http(&s.http, &s.base).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("tenants.beta"),
        "{}",
        r.body
    );
    let beta = s.events("beta", format!("publish {topic} k beta\n")).await;
    assert_eq!(beta.status, 401, "{}", beta.body);
    // Fixed: the reload goes through.
    write_config(
        &s.dir,
        &(tenant("acme", &["*"], "") + &tenant("beta", &["*"], "")),
    );
    let r = reload_http(&s.http, &s.base).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let beta = s.events("beta", format!("publish {topic} k beta\n")).await;
    assert_eq!(
        (beta.status, count(&beta.body, "records")),
        (200, 1),
        "{}",
        beta.body
    );
    s.producer.flush().await;
    assert_eq!(read_back(&topic, 4).len(), 4);
    let m = s.get("/metrics", Some(ADMIN)).await;
    let text = m.body.as_str().unwrap();
    assert!(!text.contains("start-failed\"} 1"), "{text}");
    s.server.drain(Duration::from_secs(10)).await;
}

/// A reload still starting its instances when a drain begins is refused (503, one line): it
/// cannot swap tenants in after the drain took the pools it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_a_drain_overtakes_is_refused() {
    let _one = SERIAL.lock().await;
    let s = serve(&tenant("acme", &["*"], "")).await;
    // beta's `init` takes 1.5 s: the reload is still starting it when the drain begins.
    write_config(
        &s.dir,
        &(tenant("acme", &["*"], "")
            + &tenant_with_config("beta", &["*"], "", "\"sleep-init\" = \"1500\"")),
    );
    let reload = tokio::spawn({
        let (http, base) = (s.http.clone(), s.base.clone());
        async move { reload_http(&http, &base).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drained = s.server.drain(Duration::from_secs(10)).await;
    assert!(drained.flushed, "{drained:?}");
    let r = tokio::time::timeout(Duration::from_secs(20), reload)
        .await
        .expect("the reload answered")
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    let e = r.body["error"].as_str().unwrap();
    assert!(e.contains("draining") && !e.contains('\n'), "{e}");
}

/// `http.body_timeout_ms` applies on reload, both its parts: a body that stops halfway gets
/// 408 after the new bound, and a client that sends requests and never reads the answers
/// loses its connection after the new bound (the answers back up in the socket buffers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_body_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _one = SERIAL.lock().await;
    let http = "header_timeout_ms = 30000\n";
    let s = serve_with(http, &tenant("acme", &["*"], "")).await;
    write_config_with(
        &s.dir,
        &format!("{http}body_timeout_ms = 500\n"),
        &tenant("acme", &["*"], ""),
    );
    let r = s.server.reload().await.unwrap();
    assert!(r.warnings.is_empty(), "{r:?}");
    let addr = s.server.local_addr();
    // A body that stops halfway: 408 after half a second, not thirty.
    let t0 = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /v1/tenants/acme/plugins/probe/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer acme-token\r\ncontent-length: 100\r\n\r\nnoop\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut head))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    drop(c);
    // Requests whose answers (about 6.6 KB each, 13 MB in all) fill a small receive window
    // and the server's send buffer, and a client that does not read: the server's writes
    // stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let c = socket.connect(addr).await.unwrap();
    let (mut c, mut w) = c.into_split();
    // Three times what the kernel lets a send buffer grow to (4 MiB by default).
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let n = (3 * wmem_max / 6_000).max(2000);
    let one = format!("GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\n\r\n");
    // (The server stops reading requests once its writes stall.)
    let writer = tokio::spawn(async move {
        let _ = w.write_all(one.repeat(n).as_bytes()).await;
        w
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&chunk[..k]),
            }
        }
    })
    .await;
    writer.abort();
    let answers = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(
        read.is_ok() && answers < n,
        "the connection stayed open past the stall bound: {answers} of {n} answers read ({} bytes)",
        got.len()
    );
    assert_eq!(s.get("/healthz", None).await.status, 200, "served again");
    s.server.drain(Duration::from_secs(10)).await;
}

/// SIGHUP: one that comes while a reload runs is not lost (one more reload follows, reading
/// the file as it is then), and a reload whose plugin cannot start is refused, logged, and
/// leaves the running configuration in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_queues_a_sighup_during_a_reload_and_refuses_a_plugin_that_cannot_start() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("sighup", 1);
    let dir = config_dir(&tenant("acme", &["*"], ""));
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start(&["serve", "--config", &file]);
    let line = cmd.wait_for("serving 1 tenants", Duration::from_secs(120));
    let base = format!("http://{}", serving_address(&line));
    let http = reqwest::Client::new();
    // beta's `init` takes 3 s: the second SIGHUP comes while the first reload starts it.
    let slow = tenant_with_config("beta", &["*"], "", "\"sleep-init\" = \"3000\"");
    write_config(&dir, &(tenant("acme", &["*"], "") + &slow));
    cmd.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    write_config(
        &dir,
        &(tenant("acme", &["*"], "") + &slow + &tenant("gamma", &["*"], "")),
    );
    cmd.signal(libc::SIGHUP);
    cmd.wait_for_count("wafka: reloaded", 2, Duration::from_secs(60));
    for name in ["beta", "gamma"] {
        let r = post_events(
            &http,
            &base,
            name,
            format!("publish {topic} {name} {name}\n"),
        )
        .await;
        assert_eq!(
            (r.status, count(&r.body, "records")),
            (200, 1),
            "{name}: {}",
            r.body
        );
    }
    // A plugin whose `init` fails: refused, with the plugin's words; acme goes on.
    write_config(
        &dir,
        &(tenant("acme", &["*"], "")
            + &tenant_with_config(
                "delta",
                &["*"],
                "",
                "\"fail-init\" = \"init refuses on purpose\"",
            )),
    );
    cmd.signal(libc::SIGHUP);
    let refused = cmd.wait_for("reload refused", Duration::from_secs(60));
    assert!(refused.contains("init refuses on purpose"), "{refused}");
    let delta = post_events(&http, &base, "delta", format!("publish {topic} d delta\n")).await;
    assert_eq!(delta.status, 401, "{}", delta.body);
    let beta = post_events(&http, &base, "beta", format!("publish {topic} b again\n")).await;
    assert_eq!(
        (beta.status, count(&beta.body, "records")),
        (200, 1),
        "the running configuration stays: {}",
        beta.body
    );
    cmd.drain().await;
    assert_eq!(read_back(&topic, 3).len(), 3);
}

/// 100 tenants with equal shares of `buffer.memory` (16 MiB, and records of 100 kB at most):
/// 40 of them publish to a partition with no leader (their records stay in the buffer until
/// `delivery.timeout.ms`) until their shares are full, and a healthy tenant beside them never
/// waits for memory: every share fits in `buffer.memory` (each at least what one of its
/// largest records takes in a batch of its own), so the stuck ones get `quota-exceeded` and
/// nobody `buffer-full` or `timed-out`. Shares that cannot all hold one largest record (the
/// same 100 tenants with records up to `max.request.size`, 1 MiB) are refused, with the
/// numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_tenants_cannot_fill_the_buffer_for_a_healthy_one() {
    let _one = SERIAL.lock().await;
    let stuck = create_topic("stuck", 1);
    let healthy = create_topic("healthy", 1);
    let proxy = wafka_tests::Proxy::start(&brokers(), 2);
    proxy.set_leader(&stuck, 0, -1);
    let buffer = 16usize << 20;
    let tenants = |extra: &str| {
        let mut text = String::new();
        for i in 0..40 {
            text += &tenant(&format!("stuck{i:02}"), &[&stuck], extra);
        }
        for i in 40..99 {
            text += &tenant(&format!("idle{i:02}"), &[&healthy], extra);
        }
        text + &tenant("good", &[&healthy], &format!("{extra}\nautoflush = \"on\""))
    };
    let start = |extra: &str| {
        let dir = config_dir("");
        let text = format!(
            "[kafka]\nbootstrap.servers = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_sha256 = \"{}\"\n\n{}",
            proxy.bootstrap(),
            sha(ADMIN),
            tenants(extra).replace("PROBE", &guest("probe").display().to_string())
        );
        std::fs::write(dir.join("serve.toml"), text).unwrap();
        let config = ServeConfig::load(&dir.join("serve.toml")).unwrap();
        let producer = Producer::from_properties([
            ("bootstrap.servers", proxy.bootstrap().as_str()),
            ("linger.ms", "5"),
            ("buffer.memory", &buffer.to_string()),
            ("max.block.ms", "1000"),
        ])
        .unwrap();
        let producers = Arc::new(Producers::new(producer.clone(), Arc::new(Producer::new)));
        (dir, producer, producers, config)
    };
    // Records of 100 kB at most: 100 shares of 167 kB fit.
    let (dir, producer, producers, config) = start("max_instances = 1\nmax_record_bytes = 100000");
    let server = Server::start(config, producers).await.unwrap();
    let s = Serving {
        base: format!("http://{}", server.local_addr()),
        server,
        producer,
        http: reqwest::Client::new(),
        dir,
    };
    let t0 = Instant::now();
    let mut fill = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (http, base, stuck) = (s.http.clone(), s.base.clone(), stuck.clone());
        fill.spawn(async move {
            let body = lines(12, |_| format!("publish-size {stuck} 90000"));
            post_events(&http, &base, &format!("stuck{i:02}"), body).await
        });
    }
    let filled = fill.join_all().await;
    eprintln!("40 stuck tenants filled their shares in {:?}", t0.elapsed());
    let t0 = Instant::now();
    // Records as large as the stuck ones: each needs that much free memory.
    let good = s
        .events(
            "good",
            lines(10, |_| format!("publish-size {healthy} 90000")),
        )
        .await;
    let took = t0.elapsed();
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(
        (count(&good.body, "records"), count(&good.body, "failed")),
        (10, 0),
        "{}",
        good.body
    );
    assert_eq!(
        good.body["acks"].as_array().map(Vec::len),
        Some(10),
        "{}",
        good.body
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let got = read_back(&healthy, 10);
    assert_eq!(got.len(), 10);
    // The stuck tenants were stopped by their shares, each after one record at least.
    let mut held = 0;
    for r in filled {
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(count(&r.body, "records") >= 1, "{}", r.body);
        held += count(&r.body, "records");
        let text = r.body.to_string();
        assert!(text.contains("quota exceeded"), "{text}");
        assert!(
            !text.contains("buffer full") && !text.contains("timed out"),
            "{text}"
        );
    }
    eprintln!("the 40 stuck tenants hold {held} records of 90 kB");
    // The stuck records stay until delivery.timeout.ms: not waited for.
    s.server.drain(Duration::from_millis(500)).await;
    // Records up to max.request.size (1 MiB): 100 of them do not fit in 16 MiB.
    let (_, _, producers, config) = start("max_instances = 1");
    let e = Server::start(config, producers)
        .await
        .err()
        .expect("shares that do not fit")
        .to_string();
    assert!(
        e.contains("buffer.memory")
            && e.contains("16777216")
            && e.contains("100 tenants")
            && !e.contains('\n'),
        "{e}"
    );
}

/// One HTTP/1.1 connection kept open across requests, written by hand (reqwest opens new
/// connections at will): what a client that authenticated holds.
struct KeepAlive {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl KeepAlive {
    async fn connect(addr: std::net::SocketAddr) -> KeepAlive {
        KeepAlive {
            stream: tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
        }
    }

    /// `POST path` with `token` and `body`; the answer (the connection stays open).
    async fn post(&mut self, path: &str, token: &str, body: &str) -> Answer {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: wafka\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("the kept connection is open");
        let (mut status, mut length, mut retry_after) = (0u16, 0usize, None);
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).await.unwrap();
            assert!(n > 0, "the kept connection was closed");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().unwrap();
            } else if let Some((name, value)) = line.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "retry-after" => retry_after = value.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        let mut text = vec![0u8; length];
        self.stream.read_exact(&mut text).await.unwrap();
        let text = String::from_utf8(text).unwrap();
        Answer {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    async fn events(&mut self, tenant: &str, body: &str) -> Answer {
        let path = format!("/v1/tenants/{tenant}/plugins/probe/events");
        self.post(&path, &format!("{tenant}-token"), body).await
    }
}

/// Raises this process's descriptor limit (as `wafka serve` does): a flood's clients hold their
/// descriptors here, and so does a server started in this process.
fn enough_descriptors() {
    let l = wafka::serve::fds::raise().expect("raise RLIMIT_NOFILE");
    assert!(
        l.soft >= 8192,
        "floods need 8,192 descriptors; the hard limit is {} (ulimit -Hn)",
        l.hard
    );
}

/// Connections opened and left idle, by what the server did with them.
struct Flood {
    /// Still open, nothing answered: the server holds them.
    open: Vec<tokio::net::TcpStream>,
    /// Answered 503 with `Retry-After`, then closed.
    refused: usize,
    /// Closed with no answer.
    silent: usize,
    /// Not even opened within 2 s (the listen queue is full: the server stopped accepting).
    hung: usize,
    /// Anything else (the first bytes).
    other: Vec<String>,
}

/// Opens `n` connections from each `(address, n)` of `sources` (127.0.0.0/8 is all loopback),
/// one after the other, sends nothing, and sorts them by what the server did within `wait`
/// of each opening.
async fn flood(
    to: std::net::SocketAddr,
    sources: &[(std::net::Ipv4Addr, usize)],
    wait: Duration,
) -> Flood {
    use tokio::io::AsyncReadExt;
    enum Seen {
        Open(tokio::net::TcpStream),
        Answer(String),
        Closed,
    }
    let mut f = Flood {
        open: Vec::new(),
        refused: 0,
        silent: 0,
        hung: 0,
        other: Vec::new(),
    };
    let mut watching = tokio::task::JoinSet::new();
    for &(from, n) in sources {
        for tried in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((from, 0).into()).unwrap();
            // A server that no longer accepts leaves connections in its listen queue, and
            // once that is full, connecting waits: the rest of this source is not tried.
            let Ok(c) = tokio::time::timeout(Duration::from_secs(2), socket.connect(to)).await
            else {
                f.hung += n - tried;
                break;
            };
            let mut c = c.expect("connected");
            watching.spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    match tokio::time::timeout(wait, c.read(&mut buf)).await {
                        Err(_) if seen.is_empty() => return Seen::Open(c),
                        Err(_) => return Seen::Answer(String::from_utf8_lossy(&seen).into()),
                        Ok(Ok(0)) | Ok(Err(_)) if seen.is_empty() => return Seen::Closed,
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            return Seen::Answer(String::from_utf8_lossy(&seen).into())
                        }
                        Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    }
    while let Some(seen) = watching.join_next().await {
        match seen.unwrap() {
            Seen::Open(c) => f.open.push(c),
            Seen::Closed => f.silent += 1,
            Seen::Answer(a) => {
                let lower = a.to_ascii_lowercase();
                if lower.starts_with("http/1.1 503") && lower.contains("\r\nretry-after: ") {
                    f.refused += 1;
                } else {
                    f.other.push(a.chars().take(200).collect());
                }
            }
        }
    }
    f
}

/// `wafka serve` under a low descriptor limit (soft 256, hard 512, set on the child): it raises
/// its soft limit to the hard one and keeps descriptors in reserve for the producer and reloads.
/// Idle connections past what the descriptors allow (from an address that never
/// authenticated, then from one that did) are answered 503, not left hanging in the listen
/// queue; meanwhile an authenticated keep-alive connection is still served, a reload still
/// reads its files and starts a tenant with a Kafka identity of its own (a producer core: new
/// connections to the broker), and every record reaches the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_keeps_descriptors_for_the_producer_and_reloads() {
    let _one = SERIAL.lock().await;
    enough_descriptors();
    let topic = create_topic("descriptors", 1);
    let http = "header_timeout_ms = 60000\n";
    let acme = tenant("acme", &["*"], "autoflush = \"on\"");
    let dir = config_dir(&acme);
    write_config_with(&dir, http, &acme);
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start_with_nofile(&["serve", "--config", &file], 256, 512);
    let line = cmd.wait_for("serving 1 tenants", Duration::from_secs(120));
    let addr: std::net::SocketAddr = serving_address(&line).parse().unwrap();
    // The limits are logged at start: raised, and what is left for connections.
    let limits = cmd.wait_for("wafka: descriptors", Duration::from_secs(1));
    assert!(limits.contains("limit 512 (raised from 256)"), "{limits}");
    let budget: usize = limits
        .rsplit("at most ")
        .next()
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{limits}"));
    assert!(budget < 512 - 64, "a reserve is kept: {limits}");
    let mut kept = KeepAlive::connect(addr).await;
    let a = kept
        .events("acme", &format!("publish {topic} k before\n"))
        .await;
    assert_eq!(
        (a.status, count(&a.body, "records")),
        (200, 1),
        "{}",
        a.body
    );
    // 700 idle connections from an address that never authenticated, 300 from acme's: more
    // than the hard limit.
    let stranger = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let wait = Duration::from_secs(2);
    let flood = flood(
        addr,
        &[(stranger, 700), (std::net::Ipv4Addr::LOCALHOST, 300)],
        wait,
    )
    .await;
    eprintln!(
        "{} open, {} refused, {} closed silently, {} not accepted",
        flood.open.len(),
        flood.refused,
        flood.silent,
        flood.hung
    );
    assert!(
        flood.refused > 0 && flood.silent + flood.hung == 0 && flood.other.is_empty(),
        "connections past the descriptors are answered 503: {} open, {} refused, {} closed silently, {} not accepted, {:?}",
        flood.open.len(),
        flood.refused,
        flood.silent,
        flood.hung,
        flood.other
    );
    // Held: every connection the budget allows, up to the reserve (a few less if the producer
    // opened more since the start), and no more.
    let held = flood.open.len() + 1;
    assert!(
        held <= budget && held + 16 >= budget,
        "{held} connections held, {budget} allowed"
    );
    // The kept connection is served.
    let b = kept
        .events("acme", &format!("publish {topic} k during\n"))
        .await;
    assert_eq!(
        (b.status, count(&b.body, "records")),
        (200, 1),
        "{}",
        b.body
    );
    // A reload reads its files and starts a tenant with its own producer core.
    let beta = tenant(
        "beta",
        &["*"],
        "autoflush = \"on\"\n[tenants.beta.kafka]\n\"client.id\" = \"beta-client\"",
    );
    write_config_with(&dir, http, &(acme.clone() + &beta));
    cmd.signal(libc::SIGHUP);
    let reloaded = cmd.wait_for("wafka: reload", Duration::from_secs(60));
    assert!(reloaded.contains("reloaded"), "{reloaded}");
    let c = kept
        .events("beta", &format!("publish {topic} k beta\n"))
        .await;
    assert_eq!(
        (
            c.status,
            count(&c.body, "records"),
            count(&c.body, "failed")
        ),
        (200, 1, 0),
        "{}",
        c.body
    );
    drop(flood);
    drop(kept);
    cmd.drain().await;
    let values: Vec<_> = read_back(&topic, 3)
        .iter()
        .map(|c| c.value.clone().unwrap())
        .collect();
    assert_eq!(values, [&b"before"[..], b"during", b"beta"]);
}

/// A flood of 2,000 idle connections beside a good tenant, 1,000 from one address and 1,000
/// from ten others: past `http.max_connections_per_address` (a tenth of `max_connections` by
/// default, at least 100), and past the share of `max_connections` that connections not yet authenticated
/// may hold (three quarters by default), connections are answered 503 with `Retry-After` at
/// once. The good tenant's connection, and new ones from its address (it authenticated), are
/// served at its rate; a new client from an address that never authenticated gets the 503;
/// every record the good tenant sent is on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_2000_idle_connections_leaves_a_good_tenant_its_rate() {
    let _one = SERIAL.lock().await;
    enough_descriptors();
    let topic = create_topic("idle-flood", 3);
    let s = serve_with(
        "header_timeout_ms = 30000\nmax_connections = 1000\n",
        &tenant("good", &[&topic], ""),
    )
    .await;
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate(&s, "good", &topic, window).await;
    let mut sources = vec![(std::net::Ipv4Addr::new(127, 0, 0, 2), 1000)];
    for i in 3..13 {
        sources.push((std::net::Ipv4Addr::new(127, 0, 0, i), 100));
    }
    let t0 = Instant::now();
    let flood = flood(s.server.local_addr(), &sources, Duration::from_secs(2)).await;
    eprintln!(
        "{} open, {} refused, {} closed silently in {:?}",
        flood.open.len(),
        flood.refused,
        flood.silent,
        t0.elapsed()
    );
    assert_eq!(
        (flood.silent, flood.hung, &flood.other),
        (0, 0, &Vec::<String>::new()),
        "every connection over a cap is answered ({} open, {} refused)",
        flood.open.len(),
        flood.refused
    );
    // 100 from the first address, 650 more from the others: three quarters of 1,000.
    assert_eq!((flood.open.len(), flood.refused), (750, 1250));
    // A new client from the good tenant's address is served...
    let fresh = reqwest::Client::new();
    let r = post_events(
        &fresh,
        &s.base,
        "good",
        format!("publish {topic} k fresh\n"),
    )
    .await;
    assert_eq!(
        (r.status, count(&r.body, "records")),
        (200, 1),
        "{}",
        r.body
    );
    records += 1;
    // ... one from an address that never authenticated is told to come back.
    // (Ten of them: an answer written before the client's request would read as a broken
    // connection to it.)
    for i in 0..10u8 {
        let stranger = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 1, i]))
            .build()
            .unwrap();
        let r = answer(
            stranger
                .get(format!("{}/healthz", s.base))
                .send()
                .await
                .expect("an answer, not a dropped connection"),
        )
        .await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.retry_after.is_some_and(|s| s >= 1));
    }
    let (attacked, more) = rate(&s, "good", &topic, window).await;
    records += more;
    eprintln!("good tenant: {alone:.0} requests/s alone, {attacked:.0} beside the flood");
    // Idle connections cost nothing once counted (measured: the same rate); a fifth is the
    // bound, for a noisy machine.
    assert!(
        attacked >= alone / 5.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside the flood"
    );
    drop(flood);
    s.producer.flush().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}

/// Headers past `http.max_header_bytes` (16 KiB by default) are answered 431 and the connection
/// closed without reading the rest; a flood of 300 KB headers beside a good tenant leaves it its
/// rate, and every record it sent is on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_300_kb_headers_gets_431_beside_a_good_tenant() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("big-headers", 3);
    let s = Arc::new(serve(&tenant("good", &[&topic], "")).await);
    let big = "x".repeat(300_000);
    let healthz = format!("{}/healthz", s.base);
    let one = s
        .http
        .get(&healthz)
        .header("x-filler", &big)
        .send()
        .await
        .expect("an answer");
    assert_eq!(one.status().as_u16(), 431);
    let fits = s
        .http
        .get(&healthz)
        .header("x-filler", "x".repeat(15_000))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status().as_u16(), 200, "just under the limit");
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate(&s, "good", &topic, window).await;
    // Four clients from another address, each sending one request after the other on a new
    // connection, as fast as they can: raw bytes made once (building a 300 KB header in
    // reqwest, unoptimized, costs more than the server spends on it).
    let request: Arc<[u8]> = format!(
        "POST /v1/tenants/good/plugins/probe/events HTTP/1.1\r\nhost: x\r\nx-filler: {big}\r\ncontent-length: 5\r\n\r\nnoop\n"
    )
    .into_bytes()
    .into();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (stop, request, to) = (stop.clone(), request.clone(), s.server.local_addr());
        attackers.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut answers, mut errors) = (std::collections::BTreeMap::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
                let mut c = socket.connect(to).await.unwrap();
                // (The server may close before taking it all: the answer is read anyway.)
                let _ = c.write_all(&request).await;
                let mut head = [0u8; 12];
                match c.read_exact(&mut head).await {
                    Ok(_) => {
                        *answers
                            .entry(String::from_utf8_lossy(&head[9..]).to_string())
                            .or_insert(0u64) += 1
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (answers, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, more) = rate(&s, "good", &topic, window).await;
    records += more;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answers, mut errors) = (std::collections::BTreeMap::new(), Vec::new());
    for a in attackers {
        let (a, e) = a.await.unwrap();
        for (status, n) in a {
            *answers.entry(status).or_insert(0) += n;
        }
        errors.extend(e);
    }
    eprintln!(
        "good tenant: {alone:.0} requests/s alone, {attacked:.0} beside the flood; flood answers {answers:?}, {} errors",
        errors.len()
    );
    assert!(
        answers.keys().all(|s| s == "431") && answers.get("431").is_some_and(|n| *n > 10),
        "{answers:?}"
    );
    assert!(errors.is_empty(), "{errors:?}");
    // Each attack costs the server a connection and about 16 KiB read (measured: 0.28 to 0.54
    // of its rate alone beside 1,500 to 3,000 attacks a second, all on the same two cores). An
    // eighth is the bound, for a noisy machine.
    assert!(
        attacked >= alone / 8.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside the flood"
    );
    s.producer.flush().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}

/// Headers trickled a byte at a time are cut off `http.header_timeout_ms` after the request
/// began, however steadily they come: hyper's `header_read_timeout` is a deadline for the whole
/// head, not an idle timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _one = SERIAL.lock().await;
    let s = serve_with("header_timeout_ms = 500\n", &tenant("acme", &["*"], "")).await;
    let c = tokio::net::TcpStream::connect(s.server.local_addr())
        .await
        .unwrap();
    let (mut r, mut w) = c.into_split();
    let t0 = Instant::now();
    let closed = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf).await;
        t0.elapsed()
    });
    let head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ";
    w.write_all(head).await.unwrap();
    let mut sent = 0;
    while !closed.is_finished() && t0.elapsed() < Duration::from_secs(10) {
        if w.write_all(b"y").await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = closed.await.unwrap();
    assert!(
        after < Duration::from_secs(5),
        "closed after {after:?}, {sent} bytes trickled"
    );
    assert_eq!(
        s.get("/healthz", None).await.status,
        200,
        "others are served"
    );
}

// ---- Every tenant's outcome (issue 19 items 9–11): delivery counts, readiness, logs, crashes.

/// A server in this process whose producer goes through `bootstrap` (a proxy) with `props`
/// over `linger.ms = 5`, `[http]` lines `http` and the tenants `tenants`.
async fn serve_through(
    bootstrap: &str,
    props: &[(&str, &str)],
    http: &str,
    tenants: &str,
) -> Serving {
    let dir = config_dir("");
    let text = format!(
        "[kafka]\nbootstrap.servers = \"{bootstrap}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_sha256 = \"{}\"\n{http}\n\n{}",
        sha(ADMIN),
        tenants.replace("PROBE", &guest("probe").display().to_string())
    );
    std::fs::write(dir.join("serve.toml"), text).unwrap();
    let config = ServeConfig::load(&dir.join("serve.toml")).unwrap();
    let mut all = vec![("bootstrap.servers", bootstrap), ("linger.ms", "5")];
    all.extend_from_slice(props);
    let producer = Producer::from_properties(all).unwrap();
    let producers = Arc::new(Producers::new(producer.clone(), Arc::new(Producer::new)));
    let server = Server::start(config, producers).await.unwrap();
    Serving {
        base: format!("http://{}", server.local_addr()),
        server,
        producer,
        http: reqwest::Client::new(),
        dir,
    }
}

/// Under `autoflush = "off"` a 200 means queued: records that fail afterwards (a partition
/// with no leader, until `delivery.timeout.ms`) are counted for their tenant and plugin, by
/// kind, beside another tenant's delivered records; answers and their latency per tenant,
/// reloads by outcome, and the throttle time as a counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_outcomes_are_counted_per_tenant_and_plugin() {
    let _one = SERIAL.lock().await;
    let lost = create_topic("lost", 1);
    let kept = create_topic("kept", 1);
    let proxy = wafka_tests::Proxy::start(&brokers(), 2);
    proxy.set_leader(&lost, 0, -1);
    let tenants = tenant("stuck", &[&lost], "") + &tenant("fine", &[&kept], "");
    let s = serve_through(
        &proxy.bootstrap(),
        &[
            ("request.timeout.ms", "1000"),
            ("delivery.timeout.ms", "2000"),
        ],
        "",
        &tenants,
    )
    .await;
    let r = s
        .events("stuck", lines(3, |i| format!("publish {lost} k v{i}")))
        .await;
    assert_eq!(
        (r.status, count(&r.body, "records")),
        (200, 3),
        "{}",
        r.body
    );
    let r = s
        .events("fine", lines(2, |i| format!("publish {kept} k v{i}")))
        .await;
    assert_eq!(
        (r.status, count(&r.body, "records")),
        (200, 2),
        "{}",
        r.body
    );
    assert_eq!(read_back(&kept, 2).len(), 2);
    let r = s
        .post("fine", "nope", Some("fine-token"), "noop\n".into())
        .await;
    assert_eq!(r.status, 404);
    // The queued records of `stuck` fail at delivery.timeout.ms: its own series say so.
    wait_for_metric(
        &s,
        "wafka_tenant_records_failed_total{tenant=\"stuck\",plugin=\"probe\",kind=\"timed-out\"} 3\n",
    )
    .await;
    wait_for_metric(
        &s,
        "wafka_tenant_records_delivered_total{tenant=\"fine\",plugin=\"probe\"} 2\n",
    )
    .await;
    // Reloads by outcome: one applied, one refused.
    assert_eq!(reload_http(&s.http, &s.base).await.status, 200);
    let file = s.dir.join("serve.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{good}\nnot toml [")).unwrap();
    assert_eq!(reload_http(&s.http, &s.base).await.status, 400);
    std::fs::write(&file, good).unwrap();
    let text = s.get("/metrics", Some(ADMIN)).await.body;
    let text = text.as_str().unwrap();
    for line in [
        "wafka_tenant_records_delivered_total{tenant=\"stuck\",plugin=\"probe\"} 0\n",
        "wafka_tenant_records_failed_total{tenant=\"fine\",plugin=\"probe\",kind=\"timed-out\"} 0\n",
        "wafka_tenant_requests_total{tenant=\"fine\",code=\"200\"} 1\n",
        "wafka_tenant_requests_total{tenant=\"fine\",code=\"404\"} 1\n",
        "wafka_tenant_requests_total{tenant=\"stuck\",code=\"200\"} 1\n",
        "wafka_tenant_request_seconds_count{tenant=\"stuck\"} 1\n",
        "wafka_reloads_total{outcome=\"applied\"} 1\n",
        "wafka_reloads_total{outcome=\"refused\"} 1\n",
        "# TYPE wafka_tenant_throttled_seconds counter\n",
        "wafka_tenant_throttled_seconds_total{tenant=\"fine\"} 0",
        "wafka_producer_records_failed_total 3\n",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    s.server.drain(Duration::from_millis(500)).await;
}

/// With `http.readyz_checks_cluster`, `/readyz` answers 503 while no broker answers (the
/// proxy closes every connection) and 200 again once one does; `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_can_say_whether_the_cluster_answers() {
    let _one = SERIAL.lock().await;
    let proxy = wafka_tests::Proxy::start(&brokers(), 1);
    let s = serve_through(
        &proxy.bootstrap(),
        &[],
        "readyz_checks_cluster = true",
        &tenant("acme", &["*"], ""),
    )
    .await;
    let until = |want: u16| {
        let s = &s;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = s.get("/readyz", None).await;
                if r.status == want {
                    return r;
                }
                assert!(
                    Instant::now() < deadline,
                    "/readyz stays {}: {}",
                    r.status,
                    r.body
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until(200).await;
    proxy.set_fault(1, wafka_tests::Fault::Refuse);
    proxy.drop_connections(1);
    let t0 = Instant::now();
    let r = until(503).await;
    eprintln!("not ready after {:?}: {}", t0.elapsed(), r.body);
    assert!(r.body.to_string().contains("cluster"), "{}", r.body);
    assert_eq!(s.get("/healthz", None).await.status, 200);
    proxy.set_fault(1, wafka_tests::Fault::None);
    let t0 = Instant::now();
    until(200).await;
    eprintln!("ready again after {:?}", t0.elapsed());
    s.server.drain(Duration::from_secs(5)).await;
}

/// `--log-format json`: every stderr line is a JSON object; each request gets an id (the
/// client's `X-Request-Id`, or one made), echoed in the answer, carried by the plugin's own
/// log lines and by the request's access line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_logs_json_with_request_ids() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("jsonlog", 1);
    let dir = config_dir(&tenant("acme", &["*"], ""));
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start(&["serve", "--config", &file, "--log-format", "json"]);
    let line = cmd.wait_for("serving 1 tenants", Duration::from_secs(120));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let message = v["fields"]["message"].as_str().unwrap().to_string();
    let base = format!("http://{}", serving_address(&message));
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/tenants/acme/plugins/probe/events");
    let r = http
        .post(&url)
        .bearer_auth("acme-token")
        .header("X-Request-Id", "req-test-42")
        .body(format!(
            "print hello-from-the-plugin\npublish {topic} k v\n"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-test-42");
    // Without one, an id is made and echoed.
    let r = http
        .post(&url)
        .bearer_auth("acme-token")
        .body("noop\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!made.is_empty() && made != "req-test-42", "{made}");
    cmd.wait_for_count("\"status\":200", 2, Duration::from_secs(30));
    let stderr = cmd.drain().await;
    let logged: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let id_of = |v: &Value| {
        v["span"]["request_id"]
            .as_str()
            .or(v["fields"]["request_id"].as_str())
            .map(str::to_string)
    };
    let plugin = logged
        .iter()
        .find(|v| v["fields"]["message"] == "hello-from-the-plugin")
        .unwrap_or_else(|| panic!("no plugin line in:\n{stderr}"));
    assert_eq!(id_of(plugin).as_deref(), Some("req-test-42"), "{plugin}");
    let access: Vec<&Value> = logged
        .iter()
        .filter(|v| v["target"] == "wafka::access")
        .collect();
    let first = access
        .iter()
        .find(|v| v["fields"]["request_id"] == "req-test-42")
        .unwrap_or_else(|| panic!("no access line for req-test-42 in:\n{stderr}"));
    let f = &first["fields"];
    assert_eq!(
        (
            &f["tenant"],
            &f["plugin"],
            &f["status"],
            &f["events"],
            &f["records"]
        ),
        (
            &Value::from("acme"),
            &Value::from("probe"),
            &Value::from(200),
            &Value::from(2),
            &Value::from(1)
        ),
        "{first}"
    );
    assert!(f["duration_ms"].is_number(), "{first}");
    assert!(
        access
            .iter()
            .any(|v| v["fields"]["request_id"] == made.as_str()),
        "no access line for {made} in:\n{stderr}"
    );
    assert!(stderr.contains("drained in"), "{stderr}");
}

/// Under `autoflush = "on"` every record in an answer's `acks` is on the broker, whatever
/// happens to the process next: SIGKILL right after answers with acks, then every acked
/// offset read back with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_records_acked_under_autoflush_survive_sigkill() {
    let _one = SERIAL.lock().await;
    let topic = create_topic("sigkill", 3);
    let dir = config_dir(&tenant("acme", &["*"], "autoflush = \"on\""));
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start(&["serve", "--config", &file]);
    let line = cmd.wait_for("serving 1 tenants", Duration::from_secs(120));
    let base = format!("http://{}", serving_address(&line));
    let http = reqwest::Client::new();
    let (tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, i64, String)>();
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, base, topic, tx) = (http.clone(), base.clone(), topic.clone(), tx.clone());
        clients.push(tokio::spawn(async move {
            for round in 0.. {
                let body = lines(5, |i| format!("publish {topic} c{c} c{c}-{round}-{i}"));
                let Ok(r) = http
                    .post(format!("{base}/v1/tenants/acme/plugins/probe/events"))
                    .bearer_auth("acme-token")
                    .body(body)
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(text) = r.text().await else {
                    return;
                };
                let Ok(a) = serde_json::from_str::<Value>(&text) else {
                    return;
                };
                let acks = a["acks"].as_array().cloned().unwrap_or_default();
                for (i, ack) in acks.iter().enumerate() {
                    let _ = tx.send((
                        ack["partition"].as_i64().unwrap(),
                        ack["offset"].as_i64().unwrap(),
                        format!("c{c}-{round}-{i}"),
                    ));
                }
            }
        }));
    }
    drop(tx);
    // Kill as soon as enough answers came back, while the clients keep sending.
    let mut acked = Vec::new();
    while acked.len() < 100 {
        let a = tokio::time::timeout(Duration::from_secs(30), acked_rx.recv())
            .await
            .expect("acks within 30 s")
            .expect("the clients run");
        acked.push(a);
    }
    cmd.signal(libc::SIGKILL);
    for c in clients {
        let _ = c.await;
    }
    while let Ok(a) = acked_rx.try_recv() {
        acked.push(a);
    }
    let (ok, _) = cmd.finish(Duration::from_secs(10));
    assert!(!ok, "killed");
    let got = consume_all(&brokers(), &topic, Duration::from_secs(30));
    for (p, o, value) in &acked {
        let c = got
            .iter()
            .find(|c| c.partition as i64 == *p && c.offset == *o)
            .unwrap_or_else(|| panic!("acked {p}/{o} ({value}) is not on the broker"));
        assert_eq!(c.value.as_deref(), Some(value.as_bytes()), "{p}/{o}");
    }
    eprintln!(
        "{} records acked before SIGKILL, all on the broker ({} there in all)",
        acked.len(),
        got.len()
    );
}

/// The value of the series `name{labels}` in a `/metrics` text (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Keeps posting `event` (one a request) as `tenant` until `stop`; the answers by status.
fn keep_posting(
    http: &reqwest::Client,
    base: &str,
    tenant: &'static str,
    event: &'static str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    let (http, base, stop) = (http.clone(), base.to_string(), stop.clone());
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let a = post_events(&http, &base, tenant, format!("{event}\n")).await;
            // A refused start (429) says when to come back; an attacker does not wait.
            answers.push(a);
        }
        answers
    })
}

/// A `wafka serve` process with tenants `noisy` (the probe, no topics, `noisy` more lines of
/// its table) and `good` (the probe, publishing to `topic`), its address, and an HTTP client
/// whose requests give up after 20 s.
fn serve_noisy_and_good(topic: &str, noisy: &str) -> (Command, String, reqwest::Client) {
    let dir = config_dir(
        &(tenant("noisy", &[], &format!("max_instances = 2\n{noisy}"))
            + &tenant("good", &[topic], "")),
    );
    let file = dir.join("serve.toml").display().to_string();
    let mut cmd = Command::start(&["serve", "--config", &file]);
    let line = cmd.wait_for("serving 2 tenants", Duration::from_secs(120));
    let base = format!("http://{}", serving_address(&line));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (cmd, base, http)
}

/// A plugin writing 4 MiB to stderr on every call, beside a good tenant: the host's log grows
/// by the noisy tenant's output rate (64 KiB/s and a 256 KiB burst by default), not by 1 MiB a
/// call; what is dropped is counted in `wafka_tenant_output_dropped_bytes_total`, with one
/// warning per 10 s; the good tenant keeps its rate and every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_a_plugin_flooding_stderr_leaves_the_log_bounded() {
    use std::sync::atomic::Ordering::Relaxed;
    let _one = SERIAL.lock().await;
    let topic = create_topic("stderr-flood", 3);
    let (cmd, base, http) = serve_noisy_and_good(&topic, "");
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate_at(&http, &base, "good", &topic, window).await;
    let logged_before = cmd.stderr_bytes.load(Relaxed);
    let t0 = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..2)
        .map(|_| keep_posting(&http, &base, "noisy", "stderr 4096", &stop))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, more) = rate_at(&http, &base, "good", &topic, window).await;
    records += more;
    stop.store(true, Relaxed);
    let mut calls = 0u64;
    for f in flood {
        for a in f.await.unwrap() {
            assert_eq!((a.status, count(&a.body, "failed")), (200, 0), "{}", a.body);
            calls += 1;
        }
    }
    let took = t0.elapsed();
    // What was queued reaches the log.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logged = cmd.stderr_bytes.load(Relaxed) - logged_before;
    let m = answer(
        http.get(format!("{base}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    let dropped = metric(
        &text,
        "wafka_tenant_output_dropped_bytes_total{tenant=\"noisy\"}",
    );
    let warnings = cmd
        .stderr
        .lock()
        .unwrap()
        .lines()
        .filter(|l| l.contains("output rate"))
        .count();
    eprintln!(
        "{calls} calls of 4 MiB in {took:?}: {logged} bytes of log, {dropped} dropped, {warnings} warnings; good tenant: {alone:.0} requests/s alone, {attacked:.0} beside"
    );
    assert!(calls >= 4, "the flood ran: {calls} calls");
    // The burst and the rate over the flood, with the log's framing: ten times over is the
    // bound (measured before the rate: 1 MiB a call).
    let expected = (256 << 10) as f64 + 65_536.0 * took.as_secs_f64();
    assert!(
        (logged as f64) < 10.0 * expected,
        "{logged} bytes of log for {calls} calls of 4 MiB in {took:?} (expected about {expected:.0})"
    );
    assert!(
        dropped >= (calls * (3 << 20)) as f64,
        "{dropped} bytes counted as dropped of {calls} calls of 4 MiB:\n{text}"
    );
    assert!(
        (1..=2 + took.as_secs() as usize / 10).contains(&warnings),
        "{warnings} warnings in {took:?}"
    );
    assert!(
        attacked >= alone / 5.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside the flood"
    );
    cmd.drain().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}

/// A log that does not take what the host writes (its pipe full: nobody reads it) while a
/// plugin floods stderr stalls no runtime thread: the good tenant keeps its rate and every
/// record, and what could not be written is counted as dropped. The noisy tenant's output rate
/// is out of the way (a gigabyte a second): the log's queue fills, and drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cli_a_stalled_log_stalls_no_tenant() {
    use std::sync::atomic::Ordering::Relaxed;
    let _one = SERIAL.lock().await;
    let topic = create_topic("stalled-log", 3);
    let (cmd, base, http) = serve_noisy_and_good(
        &topic,
        "output_bytes_per_second = 1000000000\noutput_burst_bytes = 1000000000",
    );
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate_at(&http, &base, "good", &topic, window).await;
    cmd.stderr_paused.store(true, Relaxed);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..2)
        .map(|_| keep_posting(&http, &base, "noisy", "stderr 4096", &stop))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, more) = rate_at(&http, &base, "good", &topic, window).await;
    records += more;
    stop.store(true, Relaxed);
    let mut calls = 0u64;
    for f in flood {
        for a in f.await.unwrap() {
            assert_eq!((a.status, count(&a.body, "failed")), (200, 0), "{}", a.body);
            calls += 1;
        }
    }
    eprintln!("good tenant: {alone:.0} requests/s alone, {attacked:.0} beside a stalled log");
    assert!(
        attacked >= alone / 5.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside a stalled log"
    );
    let m = answer(
        http.get(format!("{base}/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    let (logged, dropped) = (
        metric(&text, "wafka_tenant_output_bytes_total{tenant=\"noisy\"}"),
        metric(
            &text,
            "wafka_tenant_output_dropped_bytes_total{tenant=\"noisy\"}",
        ),
    );
    eprintln!("{calls} calls: {logged} bytes queued for the stalled log, {dropped} dropped");
    // The host's own lines (an access line per request) met the full queue too: dropped and
    // counted, not waited for.
    let host_dropped = metric(&text, "wafka_log_lines_dropped_total");
    assert!(
        host_dropped > 0.0,
        "host lines dropped: {host_dropped}\n{text}"
    );
    // Each call passes 1 MiB (its budget) on to the log: past the queue (4 MiB) and what the
    // pipe took (64 KiB), the queue drops; a call's other 3 MiB are dropped at once.
    assert!(calls >= 10, "the flood ran: {calls} calls");
    assert!(
        logged < (8 << 20) as f64 && logged + dropped >= (calls * (4 << 20)) as f64 * 0.99,
        "{calls} calls of 4 MiB: {logged} bytes queued, {dropped} dropped:\n{text}"
    );
    cmd.stderr_paused.store(false, Relaxed);
    cmd.drain().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}

/// A tenant whose plugin traps on every event, from more clients than it has instances,
/// beside a good tenant: its instances start at its start rate (10 a second and a burst of 10
/// by default; its requests wait for a start, or get 429 with `Retry-After`), and the starts
/// are counted in `wafka_tenant_instance_starts_total`; the good tenant keeps its rate and
/// every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_trapping_on_every_event_is_held_to_its_start_rate() {
    use std::sync::atomic::Ordering::Relaxed;
    let _one = SERIAL.lock().await;
    let topic = create_topic("trap-loop", 3);
    let s = Arc::new(
        serve(&(tenant("trapper", &[], "max_instances = 4") + &tenant("good", &[&topic], "")))
            .await,
    );
    let window = Duration::from_secs(2);
    let (alone, mut records) = rate(&s, "good", &topic, window).await;
    let t0 = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..6)
        .map(|_| keep_posting(&s.http, &s.base, "trapper", "trap", &stop))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (attacked, more) = rate(&s, "good", &topic, window).await;
    records += more;
    stop.store(true, Relaxed);
    let (mut traps, mut refused) = (0u64, 0u64);
    for a in attackers {
        for a in a.await.unwrap() {
            match a.status {
                200 => {
                    let error = a.body["errors"][0]["error"].as_str().unwrap_or_default();
                    assert!(error.contains("panicked"), "{}", a.body);
                    traps += 1;
                }
                429 => {
                    assert!(a.retry_after.is_some_and(|s| s >= 1), "{}", a.body);
                    refused += 1;
                }
                s => panic!("status {s}: {}", a.body),
            }
        }
    }
    let took = t0.elapsed();
    let m = s.get("/metrics", Some(ADMIN)).await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    let starts = metric(
        &text,
        "wafka_tenant_instance_starts_total{tenant=\"trapper\"}",
    );
    eprintln!(
        "{traps} traps, {refused} refused in {took:?} ({starts} starts counted); good tenant: {alone:.0} requests/s alone, {attacked:.0} beside"
    );
    // The burst, then 10 a second (the one started ahead at start came out of the burst):
    // ten times over is the bound.
    let expected = 10.0 + 10.0 * took.as_secs_f64();
    assert!(
        (traps as f64) < 10.0 * expected,
        "{traps} traps (each a new instance) in {took:?}, expected about {expected:.0}"
    );
    assert!(traps > 0, "{traps} traps, {refused} refused");
    assert!(
        starts >= traps as f64 && starts < 10.0 * expected,
        "{starts} starts counted for {traps} traps:\n{text}"
    );
    assert!(
        attacked >= alone / 5.0,
        "{alone:.0} requests/s alone, {attacked:.0} beside the trapping tenant"
    );
    s.producer.flush().await;
    assert_eq!(read_back(&topic, records as usize).len() as u64, records);
}
