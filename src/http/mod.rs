//! The HTTP API (SPEC §6): the router, its handlers and middleware. It reads the store,
//! asks the URL cache for download links and reports the poller's status; it never writes
//! ingested data and never presigns a hash that no indexed event recorded.

mod error;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;

use crate::metrics::{HttpLabel, Metrics};
use crate::status::PollStatus;
use crate::store::{Store, WeightRow};
use crate::types::{TaskId, WeightsHash};
use crate::urls::UrlCache;

/// Largest request body accepted (the only body is `{"hash": "…"}`).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A request taking longer than this is answered 408 (slow clients included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The database.
    pub store: Store,
    /// Presigned URLs.
    pub urls: Arc<UrlCache>,
    /// The poller's health.
    pub status: Arc<PollStatus>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The configured contract.
    pub contract: String,
    /// `/readyz` fails when no poll succeeded within this long.
    pub ready_window: Duration,
    /// Rendered task answers.
    pub answers: Arc<AnswerCache>,
}

/// Rendered `GET /v1/tasks/{id}/weights` bodies, so a warm lookup is a hash-map read. An
/// entry is served only while the store's write generation is the one it was rendered at
/// (no new submission or URL since) and before its earliest URL enters `refresh_before`.
/// Bounded by total bytes: when full it is emptied and refills with what is asked for.
#[derive(Debug, Default)]
pub struct AnswerCache {
    entries: std::sync::RwLock<(std::collections::HashMap<String, Answer>, usize)>,
}

#[derive(Debug, Clone)]
struct Answer {
    body: Bytes,
    generation: u64,
    /// Unix seconds after which a URL in it has less than `refresh_before` left.
    fresh_until: i64,
}

/// The most bytes of rendered answers kept.
const ANSWER_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl AnswerCache {
    fn get(&self, task_id: &str, generation: Option<u64>, now: i64) -> Option<Bytes> {
        let generation = generation?;
        let entries = self.entries.read().ok()?;
        let answer = entries.0.get(task_id)?;
        (answer.generation == generation && now < answer.fresh_until).then(|| answer.body.clone())
    }

    fn put(&self, task_id: &str, answer: Answer) {
        // A std lock is right: held for a map operation, never across an `.await`.
        let Ok(mut entries) = self.entries.write() else { return };
        if entries.1 + answer.body.len() > ANSWER_CACHE_BYTES {
            entries.0.clear();
            entries.1 = 0;
        }
        entries.1 += answer.body.len();
        if let Some(old) = entries.0.insert(task_id.to_owned(), answer) {
            entries.1 -= old.body.len();
        }
    }
}

/// Builds the router with CORS for `allowed_origins` only.
pub fn router(state: ApiState, allowed_origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{task_id}/weights", get(task_weights))
        .route("/v1/weights/{hash}", get(weight_by_hash))
        .route("/v1/weights/{hash}/download", get(download))
        .route("/generate-presigned-url", post(generate_presigned_url))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("no such route; see the README for the API".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Innermost first: limits, then JSON errors + metrics around them, CORS outermost so
        // that error answers carry CORS headers too.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(cors)
        .with_state(state)
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        // Layers and extractors (body limit, timeout) answer in plain text; every error of
        // this API is JSON, so replace the body with the status's own reason.
        let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
        let mut json = axum::Json(serde_json::json!({ "error": reason })).into_response();
        *json.status_mut() = status;
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                json.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response = json;
    }
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabel {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

fn rfc3339(unix_secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A path segment, or 400 when it is not valid percent-encoded UTF-8.
fn segment(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|_| ApiError::BadRequest("the path is not valid percent-encoded UTF-8".into()))
}

fn parse_hash(s: &str) -> Result<WeightsHash, ApiError> {
    WeightsHash::parse(s).map_err(|e| ApiError::BadRequest(format!("invalid hash: {e}")))
}

#[derive(Serialize)]
struct Weight {
    task_id: String,
    hash: String,
    trainer: Option<String>,
    consensus_timestamp: String,
    transaction_hash: Option<String>,
    log_index: i64,
    fields: Box<RawValue>,
    url: Option<String>,
    expires_at: Option<String>,
}

impl Weight {
    fn new(row: WeightRow, url: Option<crate::store::CachedUrl>) -> Self {
        Self {
            task_id: row.task_id,
            hash: row.weights_hash,
            trainer: row.trainer,
            consensus_timestamp: row.consensus_timestamp,
            transaction_hash: row.transaction_hash,
            log_index: row.log_index,
            fields: RawValue::from_string(row.fields).unwrap_or_else(|_| empty_object()),
            expires_at: url.as_ref().map(|u| rfc3339(u.expires_at)),
            url: url.map(|u| u.url),
        }
    }
}

/// A task's weights as stored, without refreshing URLs (for the `task` command): the API's
/// shape, with `url`/`expires_at` as cached (possibly expired, or null if never presigned).
pub fn task_json(task_id: &str, rows: Vec<WeightRow>) -> serde_json::Value {
    let weights: Vec<Weight> = rows
        .into_iter()
        .map(|mut row| {
            let cached = cached_of(&mut row);
            Weight::new(row, cached)
        })
        .collect();
    serde_json::json!({ "task_id": task_id, "weights": weights })
}

fn cached_of(row: &mut WeightRow) -> Option<crate::store::CachedUrl> {
    match (row.url.take(), row.expires_at.take()) {
        (Some(url), Some(expires_at)) => Some(crate::store::CachedUrl { url, expires_at }),
        _ => None,
    }
}

async fn to_weight(state: &ApiState, mut row: WeightRow) -> Result<Weight, ApiError> {
    let hash = WeightsHash::parse(&row.weights_hash)
        .map_err(|e| ApiError::Unavailable(format!("stored hash {:?} is invalid: {e}", row.weights_hash)))?;
    let cached = cached_of(&mut row);
    let url = state.urls.resolve(&hash, cached).await?;
    Ok(Weight::new(row, Some(url)))
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("\"{}\" is valid JSON")
}

async fn task_weights(
    State(state): State<ApiState>,
    task_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let raw = segment(task_id)?;
    let task_id = TaskId::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let json = |body: Bytes| {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response()
    };
    // Fastest: this answer was rendered since the last write and its URLs are still fresh.
    // Read before the database: an answer is kept only if no write began meanwhile.
    let generation = state.store.generation();
    let now = unix_now();
    if let Some(body) = state.answers.get(task_id.as_str(), generation, now) {
        state.metrics.cache_hits.inc();
        return Ok(json(body));
    }
    // Fast: SQLite renders the whole answer in one row; usable when every URL is fresh.
    let Some(rendered) = state.store.task_weights_json(task_id.as_str()).await? else {
        return Err(ApiError::NotFound(format!("no weights submitted for task {task_id}")));
    };
    if rendered.missing_urls == 0
        && let Some(earliest) = rendered.earliest_expiry
        && state.urls.is_fresh_at(earliest)
    {
        state.metrics.cache_hits.inc();
        let body = Bytes::from(format!(
            "{{\"task_id\":\"{}\",\"weights\":{}}}",
            task_id.as_str(),
            rendered.weights
        ));
        // Kept only if no write began or ended while it was read: it is then the current answer.
        if let Some(generation) = generation
            && state.store.generation() == Some(generation)
        {
            let fresh_until = earliest - state.urls.refresh_before().as_secs() as i64;
            state.answers.put(
                task_id.as_str(),
                Answer {
                    body: body.clone(),
                    generation,
                    fresh_until,
                },
            );
        }
        return Ok(json(body));
    }
    // Some URL is missing or about to expire: refresh each as needed.
    let rows = state.store.task_weights(task_id.as_str()).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!("no weights submitted for task {task_id}")));
    }
    let mut weights = Vec::with_capacity(rows.len());
    for row in rows {
        weights.push(to_weight(&state, row).await?);
    }
    Ok(Json(serde_json::json!({ "task_id": task_id.as_str(), "weights": weights })).into_response())
}

async fn list_tasks(State(state): State<ApiState>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let mut limit = 50u32;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "limit" {
            limit = value
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=500).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be an integer from 1 to 500, got {value:?}"))
                })?;
        }
    }
    let tasks: Vec<_> = state
        .store
        .tasks(limit)
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "task_id": t.task_id,
                "submissions": t.submissions,
                "latest_consensus_timestamp": t.latest_consensus_timestamp,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "tasks": tasks })).into_response())
}

async fn weight_by_hash(
    State(state): State<ApiState>,
    hash: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&segment(hash)?)?;
    let submissions = state.store.hash_submissions(hash.as_str()).await?;
    if submissions.is_empty() {
        return Err(ApiError::NotFound(format!(
            "hash {hash} was not recorded by any indexed submission"
        )));
    }
    let cached = state.store.cached_url(hash.as_str()).await?;
    let url = state.urls.resolve(&hash, cached).await?;
    let submissions: Vec<_> = submissions
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "task_id": s.task_id,
                "trainer": s.trainer,
                "consensus_timestamp": s.consensus_timestamp,
                "transaction_hash": s.transaction_hash,
                "log_index": s.log_index,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "hash": hash.as_str(),
        "url": url.url,
        "expires_at": rfc3339(url.expires_at),
        "submissions": submissions,
    }))
    .into_response())
}

/// A fresh URL for a hash that an indexed event recorded; 404 for any other.
async fn known_url(state: &ApiState, hash: &WeightsHash) -> Result<String, ApiError> {
    if !state.store.hash_known(hash.as_str()).await? {
        return Err(ApiError::NotFound(format!(
            "hash {hash} was not recorded by any indexed submission"
        )));
    }
    let cached = state.store.cached_url(hash.as_str()).await?;
    Ok(state.urls.resolve(hash, cached).await?.url)
}

async fn download(
    State(state): State<ApiState>,
    hash: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&segment(hash)?)?;
    let url = known_url(&state, &hash).await?;
    let location =
        HeaderValue::from_str(&url).map_err(|_| ApiError::Unavailable("presigned URL is not a valid header".into()))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

async fn generate_presigned_url(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // No Content-Type is accepted (the existing UI's call may omit it); any other must be
    // application/json. Defect found by tests/api/hostile.rs: a Content-Type that was not
    // visible ASCII (`application/\xffjson`) failed `to_str` and was treated as absent, so the
    // body was parsed as JSON anyway; now it is a wrong content type like any other (415).
    let json_type = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
    });
    if json_type == Some(false) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let hash = match value.get("hash") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(ApiError::BadRequest("hash parameter required".into())),
    };
    let hash = parse_hash(hash)?;
    let url = known_url(&state, &hash).await?;
    let mut response =
        Json(serde_json::json!({ "status": "ok", "presignedUrl": url, "hash": hash.as_str() })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn status(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let (submissions, rejected) = state.store.counts().await?;
    let s = state.status.snapshot();
    Ok(Json(serde_json::json!({
        "contract": state.contract,
        "cursor": s.cursor.map(|c| serde_json::json!({ "timestamp": c.timestamp.to_string(), "index": c.index })),
        "submissions_indexed": submissions,
        "logs_rejected": rejected,
        "last_poll_at": s.last_poll_at.map(|t| {
            rfc3339(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
        }),
        "last_poll_ok": s.last_poll_ok,
        "last_error": s.last_error,
        "lag_seconds": s.lag_seconds,
    }))
    .into_response())
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Result<Response, ApiError> {
    if let Err(e) = state.store.ping().await {
        return Err(ApiError::Unavailable(format!("database: {e}")));
    }
    match state.status.not_ready_reason(state.ready_window) {
        None => Ok(Json(serde_json::json!({ "status": "ready" })).into_response()),
        Some(reason) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": reason })),
        )
            .into_response()),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// How long a client may take to send its request headers before the connection is closed
/// (slow-loris clients would otherwise hold a connection, and a file descriptor, forever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` fires, then stops accepting and waits for open
/// connections to finish (the caller bounds that wait). hyper-util's connection builder is
/// used instead of `axum::serve` for its header-read timeout.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: tokio_util::sync::CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not an error worth logging.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
