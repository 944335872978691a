//! Prometheus metrics, registered once and shared (`Arc<Metrics>`) by the poller, the mirror
//! client, the URL cache and the HTTP layer. Exposition uses `prometheus-client`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of mirror requests: how the request ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `http_429`, `http_5xx`, `http_4xx`, `timeout`, `connect`, `body`, `malformed`.
    pub outcome: &'static str,
}

/// Labels of HTTP requests served.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    /// The matched route template (or `unmatched`).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Submissions stored by this process.
    pub submissions_indexed: Counter,
    /// Logs quarantined by this process.
    pub logs_rejected: Counter,
    /// Mirror node requests by outcome.
    pub mirror_requests: Family<OutcomeLabel, Counter>,
    /// Seconds between now and the newest indexed log's consensus time, at the last poll.
    pub poll_lag_seconds: Gauge<f64, AtomicU64>,
    /// URLs presigned.
    pub presigns: Counter,
    /// Presign attempts that failed.
    pub presign_failures: Counter,
    /// Lookups answered from the URL cache.
    pub cache_hits: Counter,
    /// Lookups that needed a fresh URL.
    pub cache_misses: Counter,
    /// HTTP requests by route and status.
    pub http_requests: Family<HttpLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `weights_watcher` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weights_watcher");
        let m = Self {
            submissions_indexed: Counter::default(),
            logs_rejected: Counter::default(),
            mirror_requests: Family::default(),
            poll_lag_seconds: Gauge::default(),
            presigns: Counter::default(),
            presign_failures: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            http_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "submissions_indexed",
            "WeightsSubmitted events stored",
            m.submissions_indexed.clone(),
        );
        registry.register(
            "logs_rejected",
            "Logs that matched topic0 but did not decode",
            m.logs_rejected.clone(),
        );
        registry.register(
            "mirror_requests",
            "Mirror node requests by outcome",
            m.mirror_requests.clone(),
        );
        registry.register(
            "poll_lag_seconds",
            "Seconds between now and the consensus time of the newest log seen",
            m.poll_lag_seconds.clone(),
        );
        registry.register("presigns", "Presigned URLs made", m.presigns.clone());
        registry.register(
            "presign_failures",
            "Presign attempts that failed",
            m.presign_failures.clone(),
        );
        registry.register(
            "url_cache_hits",
            "URL lookups answered from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "url_cache_misses",
            "URL lookups that presigned afresh",
            m.cache_misses.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one mirror request.
    pub fn mirror_request(&self, outcome: &'static str) {
        self.mirror_requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
