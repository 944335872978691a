//! The only writer of ingested data: fetch a page -> decode each log -> presign new hashes
//! -> commit submissions, rejected logs, URLs and the cursor in one transaction. Because the
//! cursor moves only inside that transaction, a crash at any moment loses nothing and doubles
//! nothing: the uncommitted page is fetched again and inserts are idempotent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::events::{Decoded, EventSpec};
use crate::metrics::Metrics;
use crate::mirror::{MirrorClient, MirrorError, Page, PageRequest};
use crate::presign::Presigner;
use crate::status::PollStatus;
use crate::store::{CachedUrl, NewRejected, NewSubmission, PageBatch, Store, StoreError};
use crate::types::{ConsensusTimestamp, Cursor};

/// Why a catch-up stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The mirror node failed in a way retrying did not fix.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mirror node served something no correct server would.
    #[error("mirror node protocol error: {0}")]
    Protocol(String),
}

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Submissions newly stored.
    pub indexed: u64,
    /// Logs newly quarantined.
    pub rejected: u64,
    /// The cursor afterwards.
    pub cursor: Option<Cursor>,
}

/// The ingest loop.
#[derive(Debug, Clone)]
pub struct Poller {
    client: MirrorClient,
    store: Store,
    spec: Arc<EventSpec>,
    presigner: Arc<Presigner>,
    contract: String,
    start: ConsensusTimestamp,
    interval: Duration,
    status: Arc<PollStatus>,
    metrics: Arc<Metrics>,
    rescan: RescanPolicy,
}

/// The late-arrival sweep: the mirror node serves logs in consensus order, but a log can
/// become visible after later ones (a record file imported late). Every `every`, once caught
/// up, the poller re-reads the `window` behind its cursor; inserts are idempotent, so only
/// logs that were missed are added, and the cursor does not move.
#[derive(Debug, Clone, Copy)]
pub struct RescanPolicy {
    /// How often to sweep (live mode only).
    pub every: Duration,
    /// How far behind the cursor to look.
    pub window: Duration,
}

impl Default for RescanPolicy {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            window: Duration::from_secs(300),
        }
    }
}

/// Which of a page's hashes are presigned at ingest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presign {
    /// Every hash of a page read for the first time (a cache lookup per hash would slow the
    /// backfill; a hash that repeats across pages is re-signed, which is harmless).
    EveryHash,
    /// Only hashes with no cached URL: the late-arrival sweep re-reads logs already indexed.
    UncachedOnly,
}

/// A transaction of whole pages running while the next page is fetched.
struct PendingCommit {
    handle: tokio::task::JoinHandle<Result<crate::store::PageOutcome, StoreError>>,
    cursor: Cursor,
}

/// The most pages grouped into one transaction.
const MAX_PAGES_PER_COMMIT: usize = 20;

/// The commit pipeline of a catch-up: at most one transaction running, and the pages decoded
/// since it started.
#[derive(Default)]
struct Commits {
    pending: Option<PendingCommit>,
    buffered: Option<PageBatch>,
    pages: usize,
}

impl Commits {
    fn buffer(&mut self, batch: PageBatch) {
        self.pages += 1;
        match &mut self.buffered {
            None => self.buffered = Some(batch),
            Some(b) => {
                b.submissions.extend(batch.submissions);
                b.rejected.extend(batch.rejected);
                b.urls.extend(batch.urls);
                b.cursor = batch.cursor;
            }
        }
    }

    /// Whether to commit the buffer now: nothing is running (or it just finished), or the
    /// buffer is as large as a transaction should get.
    fn ready(&self) -> bool {
        self.buffered.is_some()
            && (self.pending.as_ref().is_none_or(|p| p.handle.is_finished()) || self.pages >= MAX_PAGES_PER_COMMIT)
    }

    /// Starts committing the buffer (the caller settled the previous commit).
    fn start(&mut self, store: &Store, contract: &str) {
        let Some(batch) = self.buffered.take() else { return };
        let Some(cursor) = batch.cursor else { return };
        self.pages = 0;
        let (store, contract) = (store.clone(), contract.to_owned());
        let handle = tokio::spawn(async move { store.commit_page(&contract, &batch).await });
        self.pending = Some(PendingCommit { handle, cursor });
    }
}

/// A catch-up storing at least this many rows (a backfill, not a live poll) hands its memory
/// back to the operating system when it reaches the head.
const RELEASE_MEMORY_AFTER_ROWS: u64 = 1_000;

/// How many pages in a row may bring nothing new before the server is deemed broken.
const MAX_STALLED_PAGES: u32 = 3;

impl Poller {
    /// Builds the poller.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: MirrorClient,
        store: Store,
        spec: Arc<EventSpec>,
        presigner: Arc<Presigner>,
        contract: String,
        start: ConsensusTimestamp,
        interval: Duration,
        status: Arc<PollStatus>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            store,
            spec,
            presigner,
            contract,
            start,
            interval,
            status,
            metrics,
            rescan: RescanPolicy::default(),
        }
    }

    /// Replaces the late-arrival sweep policy.
    pub fn with_rescan(mut self, rescan: RescanPolicy) -> Self {
        self.rescan = rescan;
        self
    }

    /// Polls until shutdown: catch up, wait `poll_interval`, repeat. Faults are logged and
    /// waited out; this returns only when `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut failures = 0u32;
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let wait = match self.catch_up(&cancel).await {
                Ok(c) => {
                    failures = 0;
                    if last_sweep.elapsed() >= self.rescan.every
                        && let Some(cursor) = c.cursor
                    {
                        last_sweep = tokio::time::Instant::now();
                        match self.sweep(cursor, &cancel).await {
                            Ok(0) => {}
                            Ok(found) => warn!(found, "late-arrival sweep stored logs older than the cursor"),
                            Err(PollError::Mirror(MirrorError::Cancelled)) => return,
                            Err(e) => warn!(error = %e, "late-arrival sweep failed; the next one retries"),
                        }
                    }
                    if c.indexed > 0 || c.rejected > 0 {
                        info!(indexed = c.indexed, rejected = c.rejected, cursor = ?c.cursor.map(|c| c.to_string()), "caught up");
                    }
                    if c.indexed + c.rejected >= RELEASE_MEMORY_AFTER_ROWS {
                        // A backfill's caches and buffers are not needed to wait for the next log.
                        self.store.release_memory().await;
                    }
                    self.interval
                }
                Err(PollError::Mirror(MirrorError::Cancelled)) => return,
                Err(e) => {
                    failures += 1;
                    error!(error = %e, failures, "poll failed");
                    self.status.failed(e.to_string());
                    // Back off on errors that retrying the same request cannot fix quickly.
                    self.interval
                        .saturating_mul(1 << failures.min(6))
                        .min(Duration::from_secs(300))
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fetches and commits pages until the mirror node's head (a page with no `next`).
    pub async fn catch_up(&self, cancel: &CancellationToken) -> Result<CatchUp, PollError> {
        let committed = self.store.cursor(&self.contract).await?;
        self.status.set_cursor(committed);
        let mut total = CatchUp {
            cursor: committed,
            ..CatchUp::default()
        };
        // `cursor` is the last log decoded. The store's cursor trails it: one commit runs
        // while the next page is fetched (still one request in flight), and pages decoded
        // meanwhile are grouped into the next transaction. Each transaction holds whole pages
        // and their cursor, so a crash at any moment leaves whole pages committed.
        let mut cursor = committed;
        let mut request = match cursor {
            Some(c) => PageRequest::After(c),
            None => PageRequest::From(self.start),
        };
        let mut commits = Commits::default();
        let mut stalled = 0u32;
        loop {
            let fetched = self
                .client
                .fetch(&request, cancel, |n| {
                    self.status
                        .failed(format!("{} (retry {} in {:?})", n.reason, n.attempt, n.wait))
                })
                .await;
            let page = match fetched {
                Ok(page) => page,
                Err(e) => {
                    // Keep what was already fetched: commit it before reporting the failure.
                    self.drain(&mut commits, &mut total).await?;
                    return Err(e.into());
                }
            };
            let served = page.logs.len();
            let before = cursor;
            let (batch, next) = self.build_batch(page, cursor, Presign::EveryHash).await?;
            if let Some(c) = batch.cursor {
                cursor = Some(c);
                commits.buffer(batch);
            }
            let Some(next) = next else {
                self.drain(&mut commits, &mut total).await?;
                self.status.page_ok(total.cursor, true);
                return Ok(total);
            };
            if commits.ready() {
                if let Some(p) = commits.pending.take() {
                    self.settle(p, &mut total).await?;
                }
                commits.start(&self.store, &self.contract);
            }
            debug!(served, cursor = ?cursor.map(|c| c.to_string()), "page decoded");
            // A full page always has a `next`; follow it only if it continues from our cursor.
            let Some(c) = cursor else {
                return Err(PollError::Protocol("a page with a next link but no logs".into()));
            };
            if cursor == before {
                stalled += 1;
                if stalled >= MAX_STALLED_PAGES {
                    self.drain(&mut commits, &mut total).await?;
                    return Err(PollError::Protocol(format!(
                        "{stalled} pages in a row brought no log after cursor {c}; the mirror node is not paging"
                    )));
                }
            } else {
                stalled = 0;
            }
            request = if self.client.continues_after(&next, &c) {
                PageRequest::Next(next)
            } else {
                warn!(cursor = %c, "not following a next link that does not continue from the cursor; resuming from the cursor");
                PageRequest::After(c)
            };
        }
    }

    /// Settles the running commit, then commits whatever is buffered, and waits for it.
    async fn drain(&self, commits: &mut Commits, total: &mut CatchUp) -> Result<(), PollError> {
        if let Some(p) = commits.pending.take() {
            self.settle(p, total).await?;
        }
        commits.start(&self.store, &self.contract);
        if let Some(p) = commits.pending.take() {
            self.settle(p, total).await?;
        }
        Ok(())
    }

    /// Waits for a page's commit and accounts for it.
    async fn settle(&self, pending: PendingCommit, total: &mut CatchUp) -> Result<(), PollError> {
        let outcome = pending
            .handle
            .await
            .map_err(|e| PollError::Protocol(format!("the page commit task failed: {e}")))??;
        total.indexed += outcome.inserted;
        total.rejected += outcome.rejected;
        total.cursor = Some(pending.cursor);
        self.metrics.submissions_indexed.inc_by(outcome.inserted);
        self.metrics.logs_rejected.inc_by(outcome.rejected);
        self.status.page_ok(total.cursor, false);
        Ok(())
    }

    /// Re-reads the window behind `cursor` and stores any log missing from it, without moving
    /// the cursor. Returns how many submissions and rejections were new.
    pub async fn sweep(&self, cursor: Cursor, cancel: &CancellationToken) -> Result<u64, PollError> {
        let window_ns = i64::try_from(self.rescan.window.as_nanos()).unwrap_or(i64::MAX);
        let from = ConsensusTimestamp::from_nanos(cursor.timestamp.as_nanos().saturating_sub(window_ns));
        // (from, index -1] is not expressible; start just before `from` instead.
        let mut position = Cursor {
            timestamp: ConsensusTimestamp::from_nanos(from.as_nanos() - 1),
            index: u32::MAX,
        };
        let mut found = 0;
        loop {
            let request = PageRequest::Between(position, cursor.timestamp);
            let page = self.client.fetch(&request, cancel, |_| {}).await?;
            // Most of the window was indexed already: only a late arrival's hash needs a URL.
            let (mut batch, next) = self.build_batch(page, Some(position), Presign::UncachedOnly).await?;
            let Some(last) = batch.cursor.take() else {
                return Ok(found);
            };
            let outcome = self.store.commit_page(&self.contract, &batch).await?;
            found += outcome.inserted + outcome.rejected;
            self.metrics.submissions_indexed.inc_by(outcome.inserted);
            self.metrics.logs_rejected.inc_by(outcome.rejected);
            if next.is_none() || last >= cursor {
                return Ok(found);
            }
            position = last;
        }
    }

    /// Decodes a page into a batch. Logs at or before `cursor` were handled already (a retry,
    /// an overlapping or repeated page) and are skipped.
    async fn build_batch(
        &self,
        page: Page,
        cursor: Option<Cursor>,
        presign: Presign,
    ) -> Result<(PageBatch, Option<String>), PollError> {
        let mut batch = PageBatch::default();
        let mut last = cursor;
        let mut new_hashes = BTreeMap::new();
        for log in &page.logs {
            let timestamp: ConsensusTimestamp = log
                .timestamp
                .parse()
                .map_err(|e| PollError::Protocol(format!("log index {}: {e}", log.index)))?;
            let position = Cursor {
                timestamp,
                index: log.index,
            };
            if cursor.is_some_and(|c| position <= c) {
                continue;
            }
            if last.is_none_or(|l| position > l) {
                last = Some(position);
            }
            let topics = log.topics.as_deref().unwrap_or_default();
            match self.spec.decode(topics, log.data.as_deref()) {
                Decoded::Ignored => {}
                Decoded::Submission(s) => {
                    new_hashes.entry(s.hash.clone()).or_insert(());
                    batch.submissions.push(NewSubmission {
                        task_id: s.task_id,
                        trainer: s.trainer,
                        weights_hash: s.hash.as_str().to_owned(),
                        timestamp,
                        log_index: log.index,
                        transaction_hash: log.transaction_hash.clone(),
                        block_number: log.block_number,
                        contract_id: log.contract_id.clone().unwrap_or_else(|| self.contract.clone()),
                        fields_json: serde_json::to_string(&s.fields).unwrap_or_else(|_| "{}".into()),
                    });
                }
                Decoded::Rejected(reason) => {
                    warn!(timestamp = %timestamp, index = log.index, %reason, "log quarantined in rejected_logs");
                    batch.rejected.push(NewRejected {
                        timestamp,
                        log_index: log.index,
                        transaction_hash: log.transaction_hash.clone(),
                        reason,
                        raw_json: serde_json::to_string(log).unwrap_or_default(),
                    });
                }
            }
        }
        // Presign at ingest so the first click is a cache hit. A failure loses nothing: the
        // submission is stored and its URL is made on the first lookup.
        for hash in new_hashes.into_keys() {
            if presign == Presign::UncachedOnly && self.store.cached_url(hash.as_str()).await?.is_some() {
                continue;
            }
            match self.presigner.presign(&hash).await {
                Ok(u) => {
                    self.metrics.presigns.inc();
                    batch.urls.push((
                        hash.as_str().to_owned(),
                        CachedUrl {
                            url: u.url,
                            expires_at: u.expires_at,
                        },
                    ));
                }
                Err(e) => {
                    self.metrics.presign_failures.inc();
                    debug!(error = %e, "presign at ingest failed; the URL will be made on first lookup");
                    break;
                }
            }
        }
        batch.cursor = if last != cursor { last } else { None };
        Ok((batch, page.next))
    }
}
