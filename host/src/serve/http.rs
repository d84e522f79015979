//! The HTTP interface of `wafka serve` (axum on hyper).
//!
//! Owns the routes, authentication and the answers:
//! - `POST /v1/tenants/{tenant}/plugins/{plugin}/events` (bearer token): the body's lines are
//!   events for the plugin's `handle`; the JSON answer counts them and carries the errors
//!   (and, under autoflush, every acknowledged record's partition and offset). 401 without a
//!   valid token, 403 with another tenant's, 404 for a plugin the tenant does not have, 413
//!   for a body over the limit, 429 with `Retry-After` over quota or with every instance busy,
//!   503 while draining.
//! - `GET /metrics` (admin token), `POST /v1/admin/reload` (admin token), `GET /healthz`,
//!   `GET /readyz`.
//!
//! Tokens are compared by their SHA-256 in constant time. It must not decide limits or
//! quotas itself (see `tenant`, `quota`) nor run plugins except through a pool's lease.

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
use crate::serve::pool::LeaseError;
use crate::serve::server::State;
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
        .with_state(state)
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
        refuse(StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        "ready\n".into_response()
    }
}

async fn metrics(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r.into_response();
    }
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

async fn reload(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&state, &headers) {
        return r.into_response();
    }
    if state.is_draining() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.reload().await {
        Ok(r) => {
            tracing::info!(?r, "reloaded");
            Json(r).into_response()
        }
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
    /// Events of the body not handed to the plugin (after a trap, a timeout, or the quota).
    not_run: u64,
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(_in_flight) = state.begin() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: try another host",
        );
    };
    let tenant = match authorize(&state, &tenant, &headers) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
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
    let limit = tenant.config.max_body_bytes.unwrap_or_else(|| {
        state
            .http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .max_body_bytes
    });
    let body = match read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
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
    };
    let acks = tenant.config.autoflush != Autoflush::Off;
    let metrics = pool.metrics.clone();
    let instance = lease.instance();
    instance.collect_acks(acks);
    let before = instance.stats();
    let mut answer = EventsAnswer::default();
    let mut lines = body.split(|b| *b == b'\n').collect::<Vec<_>>();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let total = lines.len() as u64;
    let mut over_quota = Duration::ZERO;
    for (n, line) in lines.into_iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let started = Instant::now();
        let r = instance.handle(line).await;
        metrics.events.inc();
        metrics
            .event_seconds
            .observe(started.elapsed().as_secs_f64());
        answer.events += 1;
        let event = n as u64 + 1;
        match r {
            Ok(()) => {}
            Err(e) => {
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
        if tenant.throttle.is_limited() && event < total {
            over_quota = tenant.throttle.remaining(Instant::now());
            if !over_quota.is_zero() {
                break;
            }
        }
    }
    answer.not_run = total - answer.events;
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
    let r = Json(&answer).into_response();
    if over_quota.is_zero() {
        r
    } else {
        let (mut parts, body) = r.into_parts();
        parts.status = StatusCode::TOO_MANY_REQUESTS;
        retry_after(Response::from_parts(parts, body), over_quota)
    }
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
