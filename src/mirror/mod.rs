//! The Hedera mirror node client: one page of contract logs per call, with the pagination
//! rules and the retry policy the mirror node needs (see `reference/mirror-node/NOTES.md`).
//!
//! It speaks only `GET /api/v1/contracts/{contract}/results/logs?order=asc&limit=N` with a
//! keyset cursor `timestamp=gte:T&index=gt:I`, follows a relative `links.next` only when it
//! continues from the page just read, and waits out throttling (honouring `Retry-After`),
//! 5xx, timeouts, resets and malformed bodies with capped exponential backoff and jitter.
//! It does not decode logs or touch the database.

pub mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use url::Url;

use crate::metrics::Metrics;
use crate::types::{ConsensusTimestamp, Cursor};
pub use wire::{LogsPage, WireLog};

/// A failure the caller must act on (transient faults are retried inside [`MirrorClient::fetch`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MirrorError {
    /// 400: a bug in the query or a bad setting; retrying the same request will not help.
    #[error(
        "the mirror node rejected the request {path} (400): {message}; check [mirror] contract and start_timestamp"
    )]
    BadRequest {
        /// Path and query sent.
        path: String,
        /// The mirror node's messages.
        message: String,
    },
    /// 404: the contract (EVM address) does not exist on this network.
    #[error(
        "the mirror node does not know contract {contract} (404: {message}); check [mirror] contract and base_url (testnet vs mainnet)"
    )]
    NotFound {
        /// The configured contract.
        contract: String,
        /// The mirror node's message.
        message: String,
    },
    /// Another 4xx that retrying will not fix (401, 403, ...).
    #[error("the mirror node refused the request {path} ({status}): {message}")]
    Refused {
        /// Path and query sent.
        path: String,
        /// Status code.
        status: u16,
        /// Body excerpt.
        message: String,
    },
    /// A transient fault, still failing after the allowed attempts.
    #[error("mirror node unavailable after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last fault.
        last: String,
    },
    /// Shutdown was requested.
    #[error("cancelled")]
    Cancelled,
}

/// How transient faults are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff delay.
    pub initial: Duration,
    /// Backoff cap.
    pub max: Duration,
    /// Give up after this many attempts (`None`: never, the daemon's live mode).
    pub max_attempts: Option<u32>,
    /// Longest `Retry-After` honoured; a larger one is clamped (and logged).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            max_attempts: None,
            max_retry_after: Duration::from_secs(600),
        }
    }
}

/// Which page to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    /// The first page of an empty database: every log at or after `start`.
    From(ConsensusTimestamp),
    /// Every log after `cursor`, in (timestamp, index) order.
    After(Cursor),
    /// A `links.next` path that was checked to continue from the last page.
    Next(String),
    /// Logs in `(from, to]` by (timestamp, index), `to` a timestamp: the late-arrival sweep
    /// re-reads a window behind the cursor with this.
    Between(Cursor, ConsensusTimestamp),
}

/// A page, as served.
#[derive(Debug)]
pub struct Page {
    /// The logs.
    pub logs: Vec<WireLog>,
    /// The server's `links.next`.
    pub next: Option<String>,
}

/// A transient fault, reported to the caller before each wait.
#[derive(Debug, Clone)]
pub struct RetryNotice {
    /// What went wrong.
    pub reason: String,
    /// How long until the next attempt.
    pub wait: Duration,
    /// Attempts so far.
    pub attempt: u32,
}

/// Largest body accepted: a page of 100 logs is ~100 kB; anything near this is not a page.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MirrorClient {
    http: reqwest::Client,
    base: Url,
    contract: String,
    page_limit: u32,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

enum Fault {
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(MirrorError),
}

impl MirrorClient {
    /// Builds the client; `base` has no trailing slash.
    pub fn new(
        base: Url,
        contract: String,
        page_limit: u32,
        request_timeout: Duration,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("weights-watcher/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(request_timeout.min(Duration::from_secs(5)))
            .timeout(request_timeout)
            // A `next` link is followed by us, never by a redirect to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base,
            contract,
            page_limit,
            retry,
            metrics,
        })
    }

    /// The logs path of the configured contract.
    fn logs_path(&self) -> String {
        format!("/api/v1/contracts/{}/results/logs", self.contract)
    }

    /// The path and query for `req`.
    pub fn path_for(&self, req: &PageRequest) -> String {
        let base = format!("{}?order=asc&limit={}", self.logs_path(), self.page_limit);
        match req {
            PageRequest::From(start) => format!("{base}&timestamp=gte:{start}"),
            PageRequest::After(c) => format!("{base}&timestamp=gte:{}&index=gt:{}", c.timestamp, c.index),
            PageRequest::Next(path) => path.clone(),
            PageRequest::Between(from, to) => format!(
                "{base}&timestamp=gte:{}&index=gt:{}&timestamp=lte:{to}",
                from.timestamp, from.index
            ),
        }
    }

    /// Whether `next` (a server's `links.next`) is a relative link on this contract's logs
    /// path that continues exactly after `cursor`. A link to another host, another path, or
    /// back to a page already read is not followed: the caller builds its own continuation.
    pub fn continues_after(&self, next: &str, cursor: &Cursor) -> bool {
        let Some((path, query)) = next.split_once('?') else {
            return false;
        };
        if !next.starts_with('/') || next.starts_with("//") || path != self.logs_path() {
            return false;
        }
        let mut ts_ok = false;
        let mut index_ok = false;
        let mut order_asc = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "timestamp" => {
                    // Keep any upper bound; the lower bound must be the cursor's.
                    if let Some(t) = v.strip_prefix("gte:") {
                        ts_ok = t.parse::<ConsensusTimestamp>().is_ok_and(|t| t == cursor.timestamp);
                    }
                }
                "index" => index_ok = v == format!("gt:{}", cursor.index),
                "order" => order_asc = v == "asc",
                _ => {}
            }
        }
        ts_ok && index_ok && order_asc
    }

    /// Fetches one page, retrying transient faults per the policy. `on_retry` is told about
    /// each fault before the wait (for status and logs).
    pub async fn fetch(
        &self,
        req: &PageRequest,
        cancel: &CancellationToken,
        mut on_retry: impl FnMut(&RetryNotice),
    ) -> Result<Page, MirrorError> {
        let path = self.path_for(req);
        let url = format!("{}{}", self.base.as_str().trim_end_matches('/'), path);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.initial)
            .with_max_delay(self.retry.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = tokio::select! {
                () = cancel.cancelled() => return Err(MirrorError::Cancelled),
                r = self.attempt(&url, &path) => r,
            };
            let (reason, retry_after) = match result {
                Ok(page) => return Ok(page),
                Err(Fault::Fatal(e)) => return Err(e),
                Err(Fault::Retry { reason, retry_after }) => (reason, retry_after),
            };
            if self.retry.max_attempts.is_some_and(|max| attempt >= max) {
                return Err(MirrorError::Exhausted {
                    attempts: attempt,
                    last: reason,
                });
            }
            let delay = backoff.next().unwrap_or(self.retry.max);
            let wait = match retry_after {
                // Never send before the server said we may (an absurd value is clamped); the
                // backoff keeps growing underneath for the faults that carry no Retry-After.
                Some(ra) => {
                    if ra > self.retry.max_retry_after {
                        warn!(retry_after_s = ra.as_secs(), "Retry-After clamped");
                    }
                    // "Retry-After: 0" from a throttling proxy must not become a busy loop.
                    ra.min(self.retry.max_retry_after).max(self.retry.initial)
                }
                None => delay,
            };
            on_retry(&RetryNotice {
                reason: reason.clone(),
                wait,
                attempt,
            });
            warn!(%path, attempt, wait_ms = wait.as_millis() as u64, %reason, "mirror request failed; retrying");
            tokio::select! {
                () = cancel.cancelled() => return Err(MirrorError::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, url: &str, path: &str) -> Result<Page, Fault> {
        let retry = |reason: String| Fault::Retry {
            reason,
            retry_after: None,
        };
        let response = match self.http.get(url).header("accept", "application/json").send().await {
            Ok(r) => r,
            Err(e) => {
                let outcome = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                self.metrics.mirror_request(outcome);
                return Err(retry(format!("{outcome}: {}", error_chain(&e))));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = match read_limited(response, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(reason) => {
                self.metrics.mirror_request("body");
                return Err(retry(reason));
            }
        };
        debug!(%path, status = status.as_u16(), bytes = body.len(), "mirror response");
        match status.as_u16() {
            200 => match serde_json::from_slice::<LogsPage>(&body) {
                Ok(page) => {
                    self.metrics.mirror_request("ok");
                    Ok(Page {
                        logs: page.logs,
                        next: page.links.next,
                    })
                }
                Err(e) => {
                    self.metrics.mirror_request("malformed");
                    Err(retry(format!("malformed page ({} bytes): {e}", body.len())))
                }
            },
            429 | 503 => {
                self.metrics
                    .mirror_request(if status.as_u16() == 429 { "http_429" } else { "http_5xx" });
                Err(Fault::Retry {
                    reason: format!("HTTP {status}: {}", wire::error_text(&body)),
                    retry_after,
                })
            }
            500..=599 | 408 | 425 => {
                self.metrics.mirror_request(if status.is_server_error() {
                    "http_5xx"
                } else {
                    "http_4xx"
                });
                Err(retry(format!("HTTP {status}: {}", wire::error_text(&body))))
            }
            400 => {
                self.metrics.mirror_request("http_4xx");
                Err(Fault::Fatal(MirrorError::BadRequest {
                    path: path.to_owned(),
                    message: wire::error_text(&body),
                }))
            }
            404 => {
                self.metrics.mirror_request("http_4xx");
                Err(Fault::Fatal(MirrorError::NotFound {
                    contract: self.contract.clone(),
                    message: wire::error_text(&body),
                }))
            }
            code => {
                self.metrics.mirror_request("http_4xx");
                Err(Fault::Fatal(MirrorError::Refused {
                    path: path.to_owned(),
                    status: code,
                    message: wire::error_text(&body),
                }))
            }
        }
    }

    /// `GET /api/v1/contracts/{contract}`: whether the contract exists (for `check`).
    pub async fn contract_exists(&self) -> Result<bool, String> {
        let url = format!(
            "{}/api/v1/contracts/{}",
            self.base.as_str().trim_end_matches('/'),
            self.contract
        );
        let response = self.http.get(url).send().await.map_err(|e| error_chain(&e))?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(format!("HTTP {s}")),
        }
    }

    /// The newest log of the contract (one unretried request, for `check`).
    pub async fn newest_log(&self) -> Result<Option<WireLog>, String> {
        let url = format!(
            "{}{}?order=desc&limit=1",
            self.base.as_str().trim_end_matches('/'),
            self.logs_path()
        );
        let response = self.http.get(url).send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = read_limited(response, MAX_BODY_BYTES).await?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", wire::error_text(&body)));
        }
        let page: LogsPage = serde_json::from_slice(&body).map_err(|e| format!("malformed page: {e}"))?;
        Ok(page.logs.into_iter().next())
    }
}

/// Reads a body, refusing anything larger than `limit` without buffering it.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!(
            "response body of {} bytes exceeds the {limit}-byte limit",
            response.content_length().unwrap_or(0)
        ));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(format!("response body exceeds the {limit}-byte limit"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("body: {}", error_chain(&e))),
        }
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now"; an HTTP date has whole seconds, so round up.
    Some(
        when.duration_since(SystemTime::now())
            .map(|d| d + Duration::from_secs(1))
            .unwrap_or_default(),
    )
}

/// An error with its causes, for logs (reqwest's URL is the mirror's: no secret in it).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let in_5s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
        let d = parse_retry_after(&in_5s).expect("date");
        assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn next_links_are_followed_only_when_they_continue_the_cursor() {
        let client = MirrorClient::new(
            Url::parse("http://127.0.0.1:1").expect("url"),
            "0.0.5005".into(),
            100,
            Duration::from_secs(1),
            RetryPolicy::default(),
            Arc::new(Metrics::new()),
        )
        .expect("client");
        let cursor = Cursor {
            timestamp: "1639010141.000000000".parse().expect("ts"),
            index: 1,
        };
        let good =
            "/api/v1/contracts/0.0.5005/results/logs?limit=100&order=asc&timestamp=gte:1639010141.000000000&index=gt:1";
        assert!(client.continues_after(good, &cursor));
        assert!(
            !client.continues_after(&good.replace("gt:1", "gt:0"), &cursor),
            "repeats a page"
        );
        assert!(
            !client.continues_after(&format!("http://203.0.113.1{good}"), &cursor),
            "another host"
        );
        assert!(
            !client.continues_after(&format!("//203.0.113.1{good}"), &cursor),
            "protocol-relative"
        );
        assert!(
            !client.continues_after(&good.replace("0.0.5005", "0.0.1"), &cursor),
            "another contract"
        );
        assert!(!client.continues_after(&good.replace("asc", "desc"), &cursor));
    }
}
