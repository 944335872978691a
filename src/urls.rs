//! The URL cache: hands out a presigned URL for a known hash with at least `refresh_before`
//! of validity left, presigning afresh (once, however many requests ask at the same moment)
//! when the cached one is missing or about to expire. The cache itself is the
//! `presigned_urls` table, so it survives restarts and memory stays flat with history size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;
use crate::presign::{PresignError, Presigner};
use crate::store::{CachedUrl, Store, StoreError};
use crate::types::WeightsHash;

/// Why no URL could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Signing failed (usually: no credentials).
    #[error(transparent)]
    Presign(#[from] PresignError),
    /// The cache table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Presigned URLs for known hashes, cached in the store.
#[derive(Debug)]
pub struct UrlCache {
    store: Store,
    presigner: Arc<Presigner>,
    refresh_before: Duration,
    metrics: Arc<Metrics>,
    /// One lock per hash being refreshed; entries are dropped when the last user leaves.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Whether a URL expiring at `expires_at` (unix seconds) still has `refresh_before` left at
/// `now` (since the epoch), compared to the nanosecond: whole seconds would hand out a URL
/// with up to a second less than promised.
fn fresh(expires_at: i64, now: Duration, refresh_before: Duration) -> bool {
    u64::try_from(expires_at).is_ok_and(|e| Duration::from_secs(e) >= now.saturating_add(refresh_before))
}

impl UrlCache {
    /// Builds the cache.
    pub fn new(store: Store, presigner: Arc<Presigner>, refresh_before: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            presigner,
            refresh_before,
            metrics,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `url` has at least `refresh_before` of validity left.
    pub fn is_fresh(&self, url: &CachedUrl) -> bool {
        self.is_fresh_at(url.expires_at)
    }

    /// How much validity a URL handed out must still have.
    pub fn refresh_before(&self) -> Duration {
        self.refresh_before
    }

    /// Whether a URL expiring at `expires_at` (unix seconds) has `refresh_before` left.
    pub fn is_fresh_at(&self, expires_at: i64) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        fresh(expires_at, now, self.refresh_before)
    }

    /// A fresh URL for `hash`, which the caller has checked is a known, indexed hash.
    /// `cached` is what the caller already read from the store, if anything.
    pub async fn resolve(&self, hash: &WeightsHash, cached: Option<CachedUrl>) -> Result<CachedUrl, UrlError> {
        if let Some(c) = cached.filter(|c| self.is_fresh(c)) {
            self.metrics.cache_hits.inc();
            return Ok(c);
        }
        let lock = self.lock_for(hash.as_str());
        let result = {
            let _guard = lock.lock().await;
            // Someone may have refreshed it while we waited for the lock.
            match self.store.cached_url(hash.as_str()).await? {
                Some(c) if self.is_fresh(&c) => {
                    self.metrics.cache_hits.inc();
                    Ok(c)
                }
                _ => self.refresh(hash).await,
            }
        };
        self.release(hash.as_str(), lock);
        result
    }

    async fn refresh(&self, hash: &WeightsHash) -> Result<CachedUrl, UrlError> {
        self.metrics.cache_misses.inc();
        let presigned = self.presigner.presign(hash).await.inspect_err(|_| {
            self.metrics.presign_failures.inc();
        })?;
        self.metrics.presigns.inc();
        let url = CachedUrl {
            url: presigned.url,
            expires_at: presigned.expires_at,
        };
        self.store.put_url(hash.as_str(), &url).await?;
        Ok(url)
    }

    fn lock_for(&self, hash: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inflight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(hash.to_owned()).or_default().clone()
    }

    fn release(&self, hash: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.inflight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two references left (the map's and ours): nobody else is waiting.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_fresh_only_with_the_whole_margin_left() {
        let margin = Duration::from_secs(10);
        assert!(fresh(100, Duration::from_secs(90), margin), "exactly the margin left");
        assert!(
            !fresh(100, Duration::from_millis(90_500), margin),
            "9.5 s left of a 10 s margin"
        );
        assert!(fresh(100, Duration::from_millis(89_999), margin));
        assert!(!fresh(100, Duration::from_secs(101), margin), "expired");
        assert!(!fresh(-1, Duration::ZERO, margin), "a nonsense expiry is never fresh");
    }
}
