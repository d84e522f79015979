//! The HTTP interface of `wafka serve` (axum on hyper).
//!
//! Owns the routes, authentication and the answers:
//! - `POST /v1/tenants/{tenant}/plugins/{plugin}/events` (bearer token): the body's lines are
//!   events for the plugin's `handle`; the JSON answer counts them and carries the errors
//!   (and, under autoflush, every acknowledged record's partition and offset). 401 without a
//!   valid token, 403 with another tenant's, 404 for a plugin the tenant does not have, 413
//!   for a body over the limit, 429 with `Retry-After` over quota or with every instance busy,
//!   503 while draining.
//! - `GET /metrics` (admin token), `POST /v1/admin/reload` (admin token: 400 with the reason
//!   when refused, 503 once a drain began), `GET /healthz`, `GET /readyz` (503 while
//!   draining, and with `http.readyz_checks_cluster` while no broker answers).
//!
//! Every request gets an id (its `X-Request-Id` when it carries a usable one, else one made),
//! echoed in the answer's `X-Request-Id`; the request runs in a log span carrying it (so do
//! its plugin's log lines), and ends with one access line (`wafka::access`: tenant, plugin,
//! status, events, records, duration) and its tenant's counts (`request_scope`).
//!
//! Tokens are compared by their SHA-256 in constant time; a request that authenticates tells its
//! connection's admission so. The listener serves connections `admission` admits (431 for a
//! head over `http.max_header_bytes`). It must not decide limits or quotas itself (see
//! `tenant`, `quota`, `admission`) nor run plugins except through a pool's lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as Extract};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::runtime::options::{Autoflush, RecordAck};
use crate::runtime::plugin::PluginError;
use crate::serve::admission::{Admission, Admitted};
use crate::serve::pool::{LeaseError, PluginPool};
use crate::serve::server::{ReloadError, State};
use crate::serve::tenant::Tenant;

/// Errors listed one by one in an answer; the rest are counted.
const SHOWN_ERRORS: usize = 100;

type Shared = Arc<State>;

/// The routes.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/tenants/{tenant}/plugins/{plugin}/events", post(events))
        .route("/v1/admin/reload", post(reload))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_scope,
        ))
        .with_state(state)
}

/// How long a write to a client may stall, asked when a stall begins: `http.body_timeout_ms`
/// as last reloaded.
pub(crate) type WriteBound = Arc<dyn Fn() -> Duration + Send + Sync>;

/// What the listener holds connections to.
pub(crate) struct Listening {
    /// Which connections are served.
    pub(crate) admission: Arc<Admission>,
    /// Where refusals are counted.
    pub(crate) metrics: Arc<crate::serve::metrics::Metrics>,
    /// How long a client may take to send a request's head (and stay idle between requests).
    pub(crate) header_timeout: Duration,
    /// How long a write to the client may stall (the bound in force when the stall begins).
    pub(crate) write_timeout: WriteBound,
    /// Largest request head; larger: 431 (hyper's `max_header_size`).
    pub(crate) max_header_bytes: usize,
}

/// Serves `app` on `listener` until `stop` turns true: HTTP/1.1 through hyper, with a bound
/// on the time a client may take to send its headers (a deadline for the whole head, however
/// it trickles; idle keep-alive connections are closed after it too), on their size (431
/// past it), on how long a write may stall (a client that does not read its answers; the bound in
/// force when the stall begins), and on
/// the connections held (`admission`: the others are answered 503 and closed as they come).
/// Each request carries its connection's [`Admitted`], for the routes to say it authenticated.
/// When stopped, open connections finish the request they are in and close.
pub(crate) async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    listening: Listening,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use std::os::fd::AsRawFd;
    use tower::ServiceExt;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors past the reserve, say: wait a little rather
                    // than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let fd = stream.as_raw_fd().max(0) as usize;
        let admitted = match listening.admission.admit(peer.ip(), fd) {
            Ok(a) => Arc::new(a),
            Err(why) => {
                listening.metrics.connection_refused(why.label());
                listening.admission.refuse(stream, why);
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut r: hyper::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(admitted.clone());
                r
            },
        ));
        let mut stop = stop.clone();
        let (header_timeout, write_timeout, max_header_bytes) = (
            listening.header_timeout,
            listening.write_timeout.clone(),
            listening.max_header_bytes,
        );
        tasks.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_header_size(max_header_bytes)
                .serve_connection(TokioIo::new(Stalling::new(stream, write_timeout)), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// A connection whose writes may not stall longer than a bound: a client that sends requests
/// and never reads the answers loses its connection (and the connection slot and buffers it
/// held) after `limit` (asked when a stall begins, so a reload's bound applies to the
/// connections open too), instead of keeping them forever.
struct Stalling<T> {
    io: T,
    limit: WriteBound,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Stalling<T> {
    fn new(io: T, limit: WriteBound) -> Self {
        Stalling {
            io,
            limit,
            stalled: None,
        }
    }

    /// `Pending` from the socket starts (or continues) the stall clock; anything else stops it.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future;
        match r {
            std::task::Poll::Pending => {
                let limit = &self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit())));
                if sleep.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client took no data for too long",
                    )));
                }
                std::task::Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Stalling<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Stalling<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

/// Counts every answer by status.
async fn count(Extract(state): Extract<Shared>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    state.metrics.answered(r.status().as_u16());
    r
}

/// An error answer: `{"error": "..."}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Refusal {
        error: String,
    }
    let mut r = (
        status,
        Json(Refusal {
            error: message.into(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn retry_after(mut r: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// The SHA-256 of the request's bearer token, if it has one.
fn bearer(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return None;
    }
    Some(Sha256::digest(token.trim().as_bytes()).into())
}

/// The request's connection, as admitted (absent only when the router is served otherwise).
type Connection = Option<axum::Extension<Arc<Admitted>>>;

/// Says that a request on `conn` authenticated: the connection, and for a while its address,
/// leave the clients not yet authenticated (see `admission`).
fn authenticated(conn: &Connection) {
    if let Some(axum::Extension(c)) = conn {
        c.authenticated();
    }
}

/// A refusal before any work: its status and message (see [`refuse`]).
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refuse(self.0, self.1)
    }
}

/// Whether the request carries the admin token.
fn admin(state: &State, headers: &HeaderMap) -> Result<(), Refused> {
    let want = state
        .http
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .admin_token_sha256;
    let Some(want) = want else {
        return Err(Refused(
            StatusCode::FORBIDDEN,
            "this server has no admin token (http.admin_token_sha256)".into(),
        ));
    };
    match bearer(headers) {
        Some(got) if bool::from(got.ct_eq(&want)) => Ok(()),
        Some(_) => Err(Refused(StatusCode::FORBIDDEN, "not the admin token".into())),
        None => Err(Refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required".into(),
        )),
    }
}

async fn ready(Extract(state): Extract<Shared>) -> Response {
    if state.is_draining() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    let checks_cluster = state
        .http
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .readyz_checks_cluster;
    if checks_cluster {
        // One metadata request through the host's producer core (its security settings
        // too); probes at the same time share it.
        if let Err(why) = state.producers.host().probe(CLUSTER_PROBE).await {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the cluster does not answer: {}",
                    crate::runtime::trap::one_line(&why)
                ),
            );
        }
    }
    "ready\n".into_response()
}

/// How long `/readyz` waits for the cluster to answer (`http.readyz_checks_cluster`).
const CLUSTER_PROBE: Duration = Duration::from_secs(2);

async fn metrics(
    Extract(state): Extract<Shared>,
    conn: Connection,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r.into_response();
    }
    authenticated(&conn);
    let m = &state.metrics;
    m.clear_gauges();
    for t in state.tenants().iter() {
        m.set_tenant(
            &t.name,
            t.share.buffered_bytes(),
            t.throttle.throttled_total(),
        );
        for (name, pool) in &t.plugins {
            m.set_instances(&t.name, name, pool.live());
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn reload(Extract(state): Extract<Shared>, conn: Connection, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r.into_response();
    }
    authenticated(&conn);
    if state.is_draining() {
        state.metrics.reloaded("draining");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reload refused: {}", ReloadError::Draining),
        );
    }
    // On a task of its own: a client hanging up must not cancel a reload halfway (the
    // producer cores a failed reload started are retired when it ends).
    let running = state.clone();
    let result = match tokio::spawn(async move { running.reload().await }).await {
        Ok(r) => r,
        Err(e) => Err(ReloadError::Config(crate::serve::ConfigError::Read {
            file: state.file.display().to_string(),
            reason: format!("the reload stopped: {e}"),
        })),
    };
    match result {
        Ok(r) => {
            tracing::info!(?r, "reloaded");
            Json(r).into_response()
        }
        Err(e @ ReloadError::Draining) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reload refused: {e}"),
        ),
        Err(e) => {
            tracing::warn!("reload refused, the running configuration stays: {e}");
            refuse(
                StatusCode::BAD_REQUEST,
                format!("reload refused, the running configuration stays: {e}"),
            )
        }
    }
}

/// The answer to an events request.
#[derive(Debug, Default, Serialize)]
struct EventsAnswer {
    /// Events handed to the plugin.
    events: u64,
    /// Events the plugin failed (or that stopped it).
    failed: u64,
    /// Records queued (under autoflush: acknowledged or failed).
    records: u64,
    /// Records refused (ACL, limits, quotas, producer).
    refused: u64,
    /// Events of the body not handed to the plugin (after a trap, a timeout, the quota, or
    /// when the host began draining): send them again.
    not_run: u64,
    /// When the quota stopped the body: how long the tenant is throttled (also in
    /// `Retry-After`).
    #[serde(skip_serializing_if = "is_zero")]
    throttled_ms: u64,
    /// The first failures: the event's line number (from 1) and what happened.
    errors: Vec<EventError>,
    /// Failures past those listed.
    errors_not_shown: u64,
    /// Under autoflush: each acknowledged record.
    #[serde(skip_serializing_if = "Option::is_none")]
    acks: Option<Vec<RecordAck>>,
    /// Acknowledged records past those listed.
    #[serde(skip_serializing_if = "is_zero")]
    acks_not_shown: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Serialize)]
struct EventError {
    event: u64,
    error: String,
}

impl EventsAnswer {
    fn error(&mut self, event: u64, error: String) {
        if self.errors.len() < SHOWN_ERRORS {
            self.errors.push(EventError { event, error });
        } else {
            self.errors_not_shown += 1;
        }
    }
}

/// Finds the tenant the request may act for: 401 without a valid token, 403 with another
/// tenant's (the path's tenant is not revealed to a stranger: an unknown tenant is 401 or
/// 403 too).
fn authorize(state: &State, tenant: &str, headers: &HeaderMap) -> Result<Arc<Tenant>, Refused> {
    let Some(token) = bearer(headers) else {
        return Err(Refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required".into(),
        ));
    };
    let tenants = state.tenants();
    if let Some(t) = tenants.get(tenant) {
        if t.owns(&token) {
            return Ok(t.clone());
        }
    }
    if tenants.by_token(&token).is_some() {
        Err(Refused(
            StatusCode::FORBIDDEN,
            format!("this token may not act for tenant `{}`", shown(tenant)),
        ))
    } else {
        Err(Refused(StatusCode::UNAUTHORIZED, "unknown token".into()))
    }
}

/// A name from a URL as shown in errors.
fn shown(name: &str) -> String {
    crate::runtime::trap::one_line(&name.chars().take(64).collect::<String>())
}

async fn events(
    Extract(state): Extract<Shared>,
    Path((tenant, plugin)): Path<(String, String)>,
    conn: Connection,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.is_draining() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: try another host",
        );
    }
    let tenant = match authorize(&state, &tenant, &headers) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    authenticated(&conn);
    drop(conn);
    let served = Served {
        tenant: tenant.name.clone(),
        plugin: tenant
            .plugins
            .get_key_value(&plugin)
            .map(|(name, _)| name.clone()),
    };
    let mut r = tenant_events(state, tenant, plugin, headers, body).await;
    r.extensions_mut().insert(served);
    r
}

/// The events of a request authenticated as `tenant`'s.
async fn tenant_events(
    state: Shared,
    tenant: Arc<Tenant>,
    plugin: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(pool) = tenant.plugins.get(&plugin).cloned() else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "tenant `{}` has no plugin `{}`",
                tenant.name,
                shown(&plugin)
            ),
        );
    };
    let throttled = tenant.throttle.remaining(Instant::now());
    if !throttled.is_zero() {
        return retry_after(
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant `{}` is over its quota ({}): throttled for {} ms",
                    tenant.name,
                    tenant.throttle.describe(),
                    throttled.as_millis()
                ),
            ),
            throttled,
        );
    }
    // A tenant's requests past its instances (and a few waiting for one) are refused before
    // their bodies are read: waiting requests cannot pile up bodies in the host's memory.
    let Ok(admitted) = tenant.requests.clone().try_acquire_owned() else {
        return retry_after(
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "tenant `{}` has {} requests in progress, its most",
                    tenant.name, tenant.max_requests
                ),
            ),
            Duration::from_secs(1),
        );
    };
    let (limit, body_timeout) = {
        let http = state.http.read().unwrap_or_else(|e| e.into_inner());
        (
            tenant.config.max_body_bytes.unwrap_or(http.max_body_bytes),
            http.body_timeout,
        )
    };
    let body = match tokio::time::timeout(body_timeout, read_body(&headers, body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(r)) => return r,
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body took longer than {} ms", body_timeout.as_millis()),
            )
        }
    };
    // From here the events are accepted: they run to their end on a task of their own even if
    // the client goes away (a call abandoned midway would leave its instance unusable), and a
    // drain waits for them.
    let Some(in_flight) = state.begin() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: try another host",
        );
    };
    // In the request's span: the plugin's log lines carry its id.
    let run = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let r = run_events(&state, &tenant, &pool, &body).await;
            drop((in_flight, admitted));
            r
        },
        tracing::Span::current(),
    ));
    match run.await {
        Ok(r) => r,
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the events' task failed: {e}"),
        ),
    }
}

/// Hands each line of `body` to an instance of `pool`, in order; stops at a trap or timeout,
/// when the tenant goes over its quota, or when the host starts draining.
async fn run_events(
    state: &State,
    tenant: &Tenant,
    pool: &Arc<PluginPool>,
    body: &[u8],
) -> Response {
    let wait = Duration::from_millis(tenant.config.max_call_ms);
    let mut lease = match pool.lease(wait).await {
        Ok(l) => l,
        Err(e @ LeaseError::Busy(_)) => {
            return retry_after(
                refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
                Duration::from_secs(1),
            )
        }
        Err(LeaseError::Start(e)) => {
            pool.metrics.error("start-failed");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(
            e @ LeaseError::Throttled {
                retry_after: wait, ..
            },
        ) => return retry_after(refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string()), wait),
    };
    let acks = tenant.config.autoflush != Autoflush::Off;
    let metrics = &pool.metrics;
    let instance = lease.instance();
    instance.collect_acks(acks);
    let before = instance.stats();
    let mut answer = EventsAnswer::default();
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let total = if body.is_empty() {
        0
    } else {
        body.iter().filter(|b| **b == b'\n').count() as u64 + 1
    };
    let mut throttled = Duration::ZERO;
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        if total == 0 {
            break;
        }
        // Before each event, the first too (the request may have waited for an instance): a
        // drain or the tenant's quota stops the body here.
        if state.is_draining() {
            break;
        }
        if tenant.throttle.is_limited() {
            throttled = tenant.throttle.remaining(Instant::now());
            if !throttled.is_zero() {
                break;
            }
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let started = Instant::now();
        let r = instance.handle(line).await;
        metrics.events.inc();
        metrics
            .event_seconds
            .observe(started.elapsed().as_secs_f64());
        answer.events += 1;
        let event = n as u64 + 1;
        if let Err(e) = r {
            answer.failed += 1;
            let kind = match &e {
                PluginError::Failed { .. } => "event-failed",
                PluginError::TimedOut { .. } => "timed-out",
                _ => "trapped",
            };
            metrics.error(kind);
            let stops = !matches!(e, PluginError::Failed { .. });
            answer.error(event, e.to_string());
            if stops {
                metrics.traps.inc();
                break;
            }
        }
    }
    answer.not_run = total - answer.events;
    answer.throttled_ms = throttled.as_millis() as u64;
    let after = instance.stats();
    answer.records = after.records - before.records;
    answer.refused = after.refused - before.refused;
    if acks {
        let (list, dropped) = instance.take_acks();
        answer.acks = Some(list);
        answer.acks_not_shown = dropped;
        instance.collect_acks(false);
    }
    drop(lease);
    let mut r = Json(&answer).into_response();
    r.extensions_mut().insert(Ran {
        events: answer.events,
        records: answer.records,
    });
    if answer.events == 0 && total > 0 {
        // Nothing ran: the whole body can be sent again.
        *r.status_mut() = if throttled.is_zero() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
    }
    if throttled.is_zero() {
        r
    } else {
        // The events that ran stand; the header says when to send the rest.
        retry_after(r, throttled)
    }
}

// ---- Request ids, access lines and each tenant's answers (issue 19 items 9 and 10): kept
// apart from the routes above so that each can grow on its own.

/// Who a request was served for (an answer's extension): the tenant it authenticated as and
/// the plugin, when the tenant has one by that name (never a name only the URL gave).
#[derive(Clone, Debug)]
struct Served {
    tenant: String,
    plugin: Option<String>,
}

/// What a request's events did (an answer's extension).
#[derive(Clone, Copy, Debug)]
struct Ran {
    events: u64,
    records: u64,
}

/// Longest `X-Request-Id` taken from a client; a longer one (or one with other than visible
/// ASCII, quotes and backslashes excluded) is replaced by one made here.
const MAX_REQUEST_ID: usize = 128;

/// The client's `X-Request-Id` if it is usable, else a new one: 16 hex digits unique to this
/// process (a random start, then a count).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_graphic() && *c != b'"' && *c != b'\\')
        {
            return v.clone();
        }
    }
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        AtomicU64::new(h.finish())
    });
    let n = next.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{n:016x}")).unwrap_or(HeaderValue::from_static("-"))
}

/// Runs a request in a span carrying its id (the plugin's log lines inherit it), echoes the
/// id in the answer, counts the answer for its tenant (when it authenticated as one) and logs
/// one access line.
async fn request_scope(Extract(state): Extract<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let shown = id.to_str().unwrap_or("-").to_string();
    // At ERROR level so that it is on whenever anything is logged: its events are filtered
    // by their own levels.
    let span = tracing::error_span!("request", request_id = %shown);
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut r = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let took = started.elapsed();
    r.headers_mut().insert("x-request-id", id);
    let status = r.status().as_u16();
    let served = r.extensions().get::<Served>().cloned();
    let ran = r.extensions().get::<Ran>().copied();
    if let Some(s) = &served {
        state.metrics.tenant_answered(&s.tenant, status, took);
    }
    let _in = span.enter();
    tracing::info!(
        target: "wafka::access",
        request_id = %shown,
        method = %method,
        path = %path,
        tenant = served.as_ref().map_or("", |s| s.tenant.as_str()),
        plugin = served.as_ref().and_then(|s| s.plugin.as_deref()).unwrap_or(""),
        status,
        events = ran.map_or(0, |r| r.events),
        records = ran.map_or(0, |r| r.records),
        duration_ms = took.as_micros() as f64 / 1000.0,
        "request"
    );
    r
}

/// The body, at most `limit` bytes (else 413).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body may have at most {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {inner}"),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the writes stall, and after the bound the write fails (hyper
    /// then closes the connection) instead of waiting forever.
    #[tokio::test]
    async fn a_stalled_write_fails_after_the_bound() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut io = Stalling::new(near, Arc::new(|| Duration::from_millis(200)));
        let t0 = Instant::now();
        let big = vec![0u8; 1 << 20];
        let r = tokio::time::timeout(Duration::from_secs(10), io.write_all(&big))
            .await
            .expect("the write ended");
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    /// A peer that reads slowly but steadily is not cut off: the clock restarts at each write.
    #[tokio::test]
    async fn a_slow_reader_is_served() {
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while let Ok(n) = far.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            total
        });
        let mut io = Stalling::new(near, Arc::new(|| Duration::from_millis(200)));
        io.write_all(&vec![1u8; 64 * 1024]).await.unwrap();
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap(), 64 * 1024);
    }
}
