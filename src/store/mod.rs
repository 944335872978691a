//! The SQLite store: the only place with SQL. It owns the schema (embedded migrations), the
//! page commit that makes ingest exactly-once, the URL cache rows and the read queries behind
//! the HTTP API. It knows nothing about HTTP, the mirror node or signing.
//!
//! Three pools over one file: a single-connection writer (SQLite allows one writer at a time;
//! queueing in the pool is cheaper and fairer than spinning on `SQLITE_BUSY`), a small reader
//! pool that WAL lets run alongside it, and a checkpointer that copies committed WAL frames into
//! the database file (with its fsync) off the writer's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use crate::types::{ConsensusTimestamp, Cursor};

/// Store failures. Callers branch only on "the database is unusable" vs a query failing, so
/// this stays small.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be created or opened for writing.
    #[error(
        "cannot open database {path:?}: {reason}; check that its directory exists, is writable by this user and is not on a full or read-only file system"
    )]
    Open {
        /// The database path.
        path: PathBuf,
        /// What went wrong (the cause's text, printed once rather than again as a source).
        reason: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// A decoded submission ready to insert.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// Task id text.
    pub task_id: String,
    /// Trainer address, if configured.
    pub trainer: Option<String>,
    /// Object key (without prefix).
    pub weights_hash: String,
    /// Consensus timestamp of the log.
    pub timestamp: ConsensusTimestamp,
    /// Log index.
    pub log_index: u32,
    /// Transaction hash as served.
    pub transaction_hash: Option<String>,
    /// Block number as served.
    pub block_number: Option<i64>,
    /// Contract id as served (or configured).
    pub contract_id: String,
    /// Other decoded parameters, a JSON object of strings.
    pub fields_json: String,
}

/// A quarantined log.
#[derive(Debug, Clone)]
pub struct NewRejected {
    /// Consensus timestamp of the log.
    pub timestamp: ConsensusTimestamp,
    /// Log index.
    pub log_index: u32,
    /// Transaction hash as served.
    pub transaction_hash: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The log as JSON.
    pub raw_json: String,
}

/// A presigned URL and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CachedUrl {
    /// The full presigned URL (a bearer credential: never log it).
    pub url: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Everything one page of logs produced, committed atomically with the cursor.
#[derive(Debug, Default)]
pub struct PageBatch {
    /// New submissions.
    pub submissions: Vec<NewSubmission>,
    /// Quarantined logs.
    pub rejected: Vec<NewRejected>,
    /// URLs presigned at ingest: (hash, url) — inserted only where no URL is cached yet.
    pub urls: Vec<(String, CachedUrl)>,
    /// The last log of the page, if it had any.
    pub cursor: Option<Cursor>,
}

/// What a page commit changed (duplicates already stored are not counted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageOutcome {
    /// Submissions newly stored.
    pub inserted: u64,
    /// Logs newly quarantined.
    pub rejected: u64,
}

/// One submission with its cached URL, as the API and `task` print it.
#[derive(Debug, Clone, FromRow)]
pub struct WeightRow {
    /// Task id.
    pub task_id: String,
    /// Trainer address.
    pub trainer: Option<String>,
    /// Object key.
    pub weights_hash: String,
    /// "seconds.nanos".
    pub consensus_timestamp: String,
    /// Log index.
    pub log_index: i64,
    /// Transaction hash.
    pub transaction_hash: Option<String>,
    /// JSON object of strings.
    pub fields: String,
    /// Cached URL, if any.
    pub url: Option<String>,
    /// Its expiry, unix seconds.
    pub expires_at: Option<i64>,
}

/// A task's weights as one JSON array, with the URL freshness summary.
#[derive(Debug, Clone, FromRow)]
pub struct TaskWeightsJson {
    /// `[Weight, …]`, oldest first; `expires_at` already RFC 3339.
    pub weights: String,
    /// Number of submissions.
    pub submissions: i64,
    /// The earliest URL expiry (unix seconds), if any URL is cached.
    pub earliest_expiry: Option<i64>,
    /// Submissions whose hash has no cached URL yet.
    pub missing_urls: i64,
}

/// A row of the task list.
#[derive(Debug, Clone, FromRow)]
pub struct TaskSummary {
    /// Task id.
    pub task_id: String,
    /// Number of submissions.
    pub submissions: i64,
    /// Newest submission's timestamp.
    pub latest_consensus_timestamp: String,
}

/// A submission of one hash, for `/v1/weights/{hash}`.
#[derive(Debug, Clone, FromRow)]
pub struct HashSubmission {
    /// Task id.
    pub task_id: String,
    /// Trainer address.
    pub trainer: Option<String>,
    /// "seconds.nanos".
    pub consensus_timestamp: String,
    /// Transaction hash.
    pub transaction_hash: Option<String>,
    /// Log index.
    pub log_index: i64,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    write: SqlitePool,
    read: SqlitePool,
    checkpointer: Checkpointer,
    /// Tells in-memory renderings of API answers whether the database changed since.
    generation: Arc<Generation>,
}

/// Counts the commits that can change an API answer (new submissions, new URLs). While one is
/// under way its rows may already be visible to readers, so there is no current generation.
#[derive(Debug, Default)]
struct Generation {
    changes: AtomicU64,
    in_flight: AtomicU64,
}

impl Generation {
    fn current(&self) -> Option<u64> {
        // Read twice around the in-flight count: a change that ended in between is seen.
        let before = self.changes.load(Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) != 0 {
            return None;
        }
        (self.changes.load(Ordering::SeqCst) == before).then_some(before)
    }

    /// Marks a change as under way until the guard drops (after its commit, or on failure).
    fn change(&self) -> ChangeGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        ChangeGuard(self)
    }
}

struct ChangeGuard<'a>(&'a Generation);

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        self.0.changes.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rows committed since the last checkpoint that start the next one (about 4,000 WAL pages
/// at the two random-order index pages each row dirties).
const CHECKPOINT_AFTER_ROWS: u64 = 2_000;

/// The writer's own checkpoint, a backstop in case the checkpointer falls behind: it runs
/// inside a commit, so it should rarely have anything left to do (pages: 128 MiB of WAL).
/// A backfill's WAL file reaches about this plus one transaction (~170 MB at 1 M logs) and
/// keeps that size, rewound and reused, until shutdown removes it. (`journal_size_limit`,
/// which cuts it back at each rewind, cost about 10% of backfill speed in regrowing it.)
const WRITER_AUTOCHECKPOINT_PAGES: &str = "32768";

/// Background WAL checkpoints on a connection of their own. A checkpoint fsyncs the database
/// file; done by the writer inside a commit (SQLite's default) it stalled ingest for about 40%
/// of a long backfill. PASSIVE checkpoints never block the writer or readers, so moving them
/// here changes no guarantee: commits are still durable the same way (WAL, synchronous=NORMAL).
#[derive(Debug, Clone)]
struct Checkpointer {
    pool: SqlitePool,
    rows_since: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Counts `rows` as committed and starts a checkpoint when enough have piled up and none
    /// is running. Never waits.
    fn committed(&self, rows: u64) {
        let total = self.rows_since.fetch_add(rows, Ordering::AcqRel) + rows;
        if total >= CHECKPOINT_AFTER_ROWS {
            self.start();
        }
    }

    /// Starts a checkpoint unless one is running. Never waits.
    fn start(&self) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.rows_since.store(0, Ordering::Release);
        let this = self.clone();
        tokio::spawn(async move {
            // The pool is closed at shutdown: the connection's close checkpoints anyway.
            let result = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&this.pool)
                .await;
            match result {
                Ok((_, wal_pages, copied)) => tracing::trace!(wal_pages, copied, "checkpoint"),
                Err(e) if this.pool.is_closed() => tracing::trace!(error = %e, "checkpoint skipped at shutdown"),
                // Not fatal: the writer's own checkpoint is the backstop; a failing disk shows
                // in the next commit.
                Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
            }
            this.running.store(false, Ordering::Release);
        });
    }
}

/// Rows per multi-row INSERT: 11 parameters a row stays far below SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 500;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating with mode 0600 if missing) the database at `path`. Does not migrate.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        create_private(path).map_err(|e| open_err(&e))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives any process crash (kill -9); after a power cut the
            // last commits may roll back, which the cursor makes harmless: their pages are
            // fetched again.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Statement journals (multi-row upserts) and sorts stay in memory, not temp files.
            .pragma("temp_store", "memory");
        // The writer gets a larger page cache and checkpoints less often: a backfill rewrites
        // the same index pages page after page, and each checkpoint copies them and fsyncs.
        // Both stay bounded (8 MiB of cache, a WAL of about 16 MiB between checkpoints).
        let writer = options
            .clone()
            .pragma("cache_size", "-8192")
            .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(writer)
            .await
            .map_err(|e| open_err(&e))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(&e))?;
        // Opened on first use: `run` needs it, one-shot commands never do.
        let checkpointer = Checkpointer {
            pool: SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(Duration::from_secs(60))
                .connect_lazy_with(options.pragma("cache_size", "-64")),
            rows_since: Arc::new(AtomicU64::new(0)),
            running: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self {
            write,
            read,
            checkpointer,
            generation: Arc::new(Generation::default()),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.write).await?;
        Ok(())
    }

    /// Versions of embedded migrations not yet applied (for `check`).
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        // No migrations table yet means nothing is applied.
        let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(&self.read)
            .await
            .unwrap_or_default();
        Ok(sqlx::migrate!("./migrations")
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.iter().any(|(a,)| a == v))
            .collect())
    }

    /// Checks that the database answers and is writable.
    pub async fn ping_writable(&self) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS ww_ping (x)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO ww_ping VALUES (1)").execute(&mut *tx).await?;
        tx.rollback().await?;
        Ok(())
    }

    /// The write generation: it changes whenever an answer of the API may have changed, and
    /// is `None` while such a change is being committed. An answer rendered from the database
    /// may be reused while the generation is still the one read before rendering it.
    pub fn generation(&self) -> Option<u64> {
        self.generation.current()
    }

    /// Checks that the database answers a read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The committed cursor of `contract`, if it has one.
    pub async fn cursor(&self, contract: &str) -> Result<Option<Cursor>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT consensus_timestamp, log_index FROM poller_cursor WHERE contract_id = ?")
                .bind(contract)
                .fetch_optional(&self.write)
                .await?;
        Ok(row.and_then(|(ts, index)| {
            Some(Cursor {
                timestamp: ts.parse().ok()?,
                index: u32::try_from(index).ok()?,
            })
        }))
    }

    /// Commits one page: its submissions, rejected logs, ingest-time URLs and the cursor, in
    /// one transaction. Inserts are idempotent on (consensus_timestamp, log_index), so a page
    /// fetched twice (retries, restarts, overlapping pages) stores each log once.
    pub async fn commit_page(&self, contract: &str, batch: &PageBatch) -> Result<PageOutcome, StoreError> {
        let now = now_secs();
        let mut outcome = PageOutcome::default();
        let mut tx = self.write.begin().await?;
        // One multi-row statement per table: a page costs five statements, not hundreds
        // (each statement is a round trip to sqlx's SQLite worker thread).
        for chunk in batch.submissions.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO weights_submissions (task_id, trainer, weights_hash, consensus_timestamp, log_index, \
                 transaction_hash, block_number, contract_id, fields, consensus_ns, indexed_at) ",
            );
            insert.push_values(chunk, |mut row, s| {
                row.push_bind(&s.task_id)
                    .push_bind(&s.trainer)
                    .push_bind(&s.weights_hash)
                    .push_bind(s.timestamp.to_string())
                    .push_bind(i64::from(s.log_index))
                    .push_bind(&s.transaction_hash)
                    .push_bind(s.block_number)
                    .push_bind(&s.contract_id)
                    .push_bind(&s.fields_json)
                    .push_bind(s.timestamp.as_nanos())
                    .push_bind(now);
            });
            // RETURNING lists only the rows actually inserted: duplicates are skipped.
            insert.push(" ON CONFLICT (consensus_timestamp, log_index) DO NOTHING RETURNING task_id, consensus_ns");
            let inserted: Vec<(String, i64)> = insert.build_query_as().fetch_all(&mut *tx).await?;
            outcome.inserted += inserted.len() as u64;
            // Fold the new rows into the per-task summary: count and newest timestamp.
            let mut per_task: std::collections::BTreeMap<String, (i64, i64)> = std::collections::BTreeMap::new();
            for (task, ns) in inserted {
                let entry = per_task.entry(task).or_insert((0, i64::MIN));
                entry.0 += 1;
                entry.1 = entry.1.max(ns);
            }
            if per_task.is_empty() {
                continue;
            }
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tasks (task_id, submissions, latest_consensus_timestamp, latest_ns) ",
            );
            upsert.push_values(&per_task, |mut row, (task, (count, ns))| {
                row.push_bind(task)
                    .push_bind(*count)
                    .push_bind(ConsensusTimestamp::from_nanos(*ns).to_string())
                    .push_bind(*ns);
            });
            upsert.push(
                " ON CONFLICT (task_id) DO UPDATE SET submissions = tasks.submissions + excluded.submissions, \
                 latest_consensus_timestamp = CASE WHEN excluded.latest_ns > tasks.latest_ns \
                    THEN excluded.latest_consensus_timestamp ELSE tasks.latest_consensus_timestamp END, \
                 latest_ns = MAX(tasks.latest_ns, excluded.latest_ns)",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        for chunk in batch.rejected.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO rejected_logs (consensus_timestamp, log_index, transaction_hash, reason, raw, rejected_at) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(r.timestamp.to_string())
                    .push_bind(i64::from(r.log_index))
                    .push_bind(&r.transaction_hash)
                    .push_bind(&r.reason)
                    .push_bind(&r.raw_json)
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (consensus_timestamp, log_index) DO NOTHING");
            outcome.rejected += insert.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in batch.urls.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO presigned_urls (weights_hash, url, expires_at, presigned_at) ",
            );
            insert.push_values(chunk, |mut row, (hash, url)| {
                row.push_bind(hash)
                    .push_bind(&url.url)
                    .push_bind(url.expires_at)
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (weights_hash) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        if let Some(c) = batch.cursor {
            sqlx::query(
                "INSERT INTO poller_cursor (contract_id, consensus_timestamp, log_index, updated_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (contract_id) DO UPDATE SET consensus_timestamp = excluded.consensus_timestamp, \
                 log_index = excluded.log_index, updated_at = excluded.updated_at",
            )
            .bind(contract)
            .bind(c.timestamp.to_string())
            .bind(i64::from(c.index))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let changes_answers = outcome.inserted > 0 || !batch.urls.is_empty();
        let change = changes_answers.then(|| self.generation.change());
        tx.commit().await?;
        drop(change);
        self.checkpointer.committed(outcome.inserted + outcome.rejected);
        Ok(outcome)
    }

    /// A task's submissions with their cached URLs, oldest first.
    pub async fn task_weights(&self, task_id: &str) -> Result<Vec<WeightRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.task_id, s.trainer, s.weights_hash, s.consensus_timestamp, s.log_index, s.transaction_hash, \
             s.fields, p.url, p.expires_at FROM weights_submissions AS s \
             LEFT JOIN presigned_urls AS p ON p.weights_hash = s.weights_hash \
             WHERE s.task_id = ? ORDER BY s.consensus_ns, s.log_index",
        )
        .bind(task_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// A task's weights rendered as a JSON array by SQLite itself, in one row (one round trip
    /// to the SQLite thread instead of one per row), with what the caller needs to decide
    /// whether every URL in it is fresh. `None` when the task has no submission.
    pub async fn task_weights_json(&self, task_id: &str) -> Result<Option<TaskWeightsJson>, StoreError> {
        let row: TaskWeightsJson = sqlx::query_as(
            "SELECT json_group_array(json_object(\
                'task_id', s.task_id, 'hash', s.weights_hash, 'trainer', s.trainer, \
                'consensus_timestamp', s.consensus_timestamp, 'transaction_hash', s.transaction_hash, \
                'log_index', s.log_index, 'fields', json(s.fields), 'url', p.url, \
                'expires_at', strftime('%Y-%m-%dT%H:%M:%SZ', p.expires_at, 'unixepoch')) \
                ORDER BY s.consensus_ns, s.log_index) AS weights, \
             COUNT(*) AS submissions, MIN(p.expires_at) AS earliest_expiry, \
             COALESCE(SUM(p.url IS NULL), 0) AS missing_urls \
             FROM weights_submissions AS s LEFT JOIN presigned_urls AS p ON p.weights_hash = s.weights_hash \
             WHERE s.task_id = ?",
        )
        .bind(task_id)
        .fetch_one(&self.read)
        .await?;
        Ok((row.submissions > 0).then_some(row))
    }

    /// Tasks, newest submission first, ties by task id.
    pub async fn tasks(&self, limit: u32) -> Result<Vec<TaskSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT task_id, submissions, latest_consensus_timestamp FROM tasks \
             ORDER BY latest_ns DESC, length(task_id), task_id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?)
    }

    /// Every submission that recorded `hash`, oldest first (empty when the hash is unknown).
    pub async fn hash_submissions(&self, hash: &str) -> Result<Vec<HashSubmission>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT task_id, trainer, consensus_timestamp, transaction_hash, log_index FROM weights_submissions \
             WHERE weights_hash = ? ORDER BY consensus_ns, log_index",
        )
        .bind(hash)
        .fetch_all(&self.read)
        .await?)
    }

    /// Whether `hash` was seen in an indexed submission.
    pub async fn hash_known(&self, hash: &str) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM weights_submissions WHERE weights_hash = ? LIMIT 1")
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    /// The cached URL of `hash`, if any (a new read transaction sees every committed refresh).
    pub async fn cached_url(&self, hash: &str) -> Result<Option<CachedUrl>, StoreError> {
        Ok(
            sqlx::query_as("SELECT url, expires_at FROM presigned_urls WHERE weights_hash = ?")
                .bind(hash)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    /// Stores a freshly presigned URL for `hash`, replacing the old one.
    pub async fn put_url(&self, hash: &str, url: &CachedUrl) -> Result<(), StoreError> {
        let _change = self.generation.change();
        sqlx::query(
            "INSERT INTO presigned_urls (weights_hash, url, expires_at, presigned_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (weights_hash) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at, \
             presigned_at = excluded.presigned_at",
        )
        .bind(hash)
        .bind(&url.url)
        .bind(url.expires_at)
        .bind(now_secs())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// (submissions stored, logs rejected).
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        Ok(
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM weights_submissions), (SELECT COUNT(*) FROM rejected_logs)")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Hands memory back to the operating system after a backfill: the writer's page cache
    /// (up to 8 MiB) and whatever the allocator kept of the pages and buffers freed since. The
    /// cache refills on demand; this costs the next commit a few page reads.
    pub async fn release_memory(&self) {
        if let Err(e) = sqlx::query("PRAGMA shrink_memory").execute(&self.write).await {
            tracing::debug!(error = %e, "shrink_memory failed");
        }
        trim_heap();
        // And copy the backfill's last pages into the database file, so the WAL can rewind.
        self.checkpointer.start();
    }

    /// Closes every pool, checkpointing the WAL; on return no connection holds the file open.
    pub async fn close(&self) {
        close_pool(&self.checkpointer.pool).await;
        close_pool(&self.read).await;
        close_pool(&self.write).await;
    }
}

/// Returns the allocator's free pages to the operating system. glibc keeps freed memory in
/// its per-thread arenas (a backfill's buffers stay resident after they are dropped);
/// `malloc_trim` releases every arena's free pages. Other allocators need nothing here.
#[allow(unsafe_code)] // the crate's only unsafe: one FFI call with no preconditions
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's own free lists; it has no
    // preconditions and is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Closes `pool` and every connection in it. sqlx's `Pool::close` can return with one connection
/// still open: a connection whose return to the pool (a spawned task, run after its query's
/// caller has already answered) passed the "closed?" check before `close` began lands in the idle
/// queue after `close` last looked at it. A further `close` pops and closes it; the loop is
/// bounded in case a connection is checked out for longer (then it closes on its return).
async fn close_pool(pool: &SqlitePool) {
    pool.close().await;
    for _ in 0..1_000 {
        if pool.size() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        pool.close().await;
    }
}

/// Creates the database file with mode 0600 if it does not exist, and tightens an existing
/// file's mode: it holds presigned URLs, which are bearer credentials.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Opening for writing names the real problem (a read-only file system, say) where
            // SQLite would only say "unable to open database file".
            std::fs::OpenOptions::new().write(true).open(path)?;
            let meta = std::fs::metadata(path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(task: &str, secs: u64, index: u32, hash: &str) -> NewSubmission {
        NewSubmission {
            task_id: task.into(),
            trainer: Some("0xabc".into()),
            weights_hash: hash.into(),
            timestamp: ConsensusTimestamp::new(secs, 5).expect("valid"),
            log_index: index,
            transaction_hash: Some("0x01".into()),
            block_number: Some(7),
            contract_id: "0.0.1".into(),
            fields_json: r#"{"round":"1"}"#.into(),
        }
    }

    /// A rendered API answer may be reused only while the generation read before rendering it
    /// is still current: it changes with every commit that can change an answer, and there is
    /// none while such a commit is under way (its rows may already be visible).
    #[tokio::test]
    async fn the_generation_changes_with_answers_and_is_unknown_mid_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        store.migrate().await.expect("migrate");
        let cursor = |secs| {
            Some(Cursor {
                timestamp: ConsensusTimestamp::new(secs, 0).expect("ts"),
                index: 0,
            })
        };
        let g0 = store.generation().expect("no write under way");
        let nothing_new = PageBatch {
            cursor: cursor(1_000),
            ..PageBatch::default()
        };
        store.commit_page("0.0.1", &nothing_new).await.expect("commit");
        assert_eq!(store.generation(), Some(g0), "a cursor move changes no answer");

        let change = store.generation.change();
        assert_eq!(store.generation(), None, "a change under way");
        drop(change);
        let g1 = store.generation().expect("the change ended");
        assert_ne!(g1, g0);

        let new_row = PageBatch {
            submissions: vec![submission("1", 1_001, 0, &"a".repeat(64))],
            cursor: cursor(1_001),
            ..PageBatch::default()
        };
        store.commit_page("0.0.1", &new_row).await.expect("commit");
        let g2 = store.generation().expect("committed");
        assert_ne!(g2, g1, "a new submission");
        let url = CachedUrl {
            url: "https://example.invalid/x".into(),
            expires_at: 1,
        };
        store.put_url(&"a".repeat(64), &url).await.expect("put");
        assert_ne!(store.generation(), Some(g2), "a new URL");
        store.close().await;
    }

    /// Commits reach the database file through the background checkpointer long before the
    /// writer's own backstop (32,768 WAL pages) would copy them.
    #[tokio::test]
    async fn committed_pages_are_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let store = Store::open(&path).await.expect("open");
        store.migrate().await.expect("migrate");
        let db_size = || std::fs::metadata(&path).expect("db file").len();
        let before = db_size();
        let rows = CHECKPOINT_AFTER_ROWS as u32 + 100;
        let page = PageBatch {
            submissions: (0..rows)
                .map(|i| submission(&(i / 10).to_string(), 1_000 + u64::from(i), 0, &format!("{i:064x}")))
                .collect(),
            cursor: Some(Cursor {
                timestamp: ConsensusTimestamp::new(1_000 + u64::from(rows), 0).expect("ts"),
                index: 0,
            }),
            ..PageBatch::default()
        };
        store.commit_page("0.0.1", &page).await.expect("commit");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while db_size() < before + 500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {} bytes: no checkpoint ran",
                db_size()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;
    }

    /// Regression: `Store::close` returned while a reader was still on its way back to the pool,
    /// so the file stayed open for a few milliseconds more (the storage-fault test saw its
    /// read-only remount refused as "busy" after the daemon had stopped).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_leaves_no_connection_open_even_with_a_query_just_answered() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let open_fds = || {
            std::fs::read_dir("/proc/self/fd")
                .expect("fds")
                .flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir.path())))
                .count()
        };
        for round in 0..50 {
            let store = Store::open(&path).await.expect("open");
            store.migrate().await.expect("migrate");
            // The answer arrives before the connection is back in the pool; close right then.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let reader = store.clone();
            tokio::spawn(async move {
                let _ = tx.send(reader.counts().await);
            });
            rx.await.expect("answered").expect("counts");
            store.close().await;
            assert_eq!(
                (store.read.size(), store.write.size(), open_fds()),
                (0, 0, 0),
                "round {round}: a connection outlived close"
            );
        }
    }

    #[tokio::test]
    async fn pages_commit_exactly_once_with_their_cursor_and_task_summary() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        store.migrate().await.expect("migrate");
        let cursor = |secs, index| {
            Some(Cursor {
                timestamp: ConsensusTimestamp::new(secs, 5).expect("ts"),
                index,
            })
        };
        let page = PageBatch {
            submissions: vec![
                submission("7", 10, 0, "a"),
                submission("7", 10, 1, "b"),
                submission("8", 11, 0, "c"),
            ],
            rejected: vec![NewRejected {
                timestamp: ConsensusTimestamp::new(12, 0).expect("ts"),
                log_index: 0,
                transaction_hash: None,
                reason: "bad".into(),
                raw_json: "{}".into(),
            }],
            urls: vec![(
                "a".into(),
                CachedUrl {
                    url: "https://u/a?sig".into(),
                    expires_at: 99,
                },
            )],
            cursor: cursor(12, 0),
        };
        assert_eq!(
            store.commit_page("0.0.1", &page).await.expect("commit"),
            PageOutcome {
                inserted: 3,
                rejected: 1
            }
        );
        // The same page again (a retry) and an overlapping one change nothing but the new row.
        assert_eq!(
            store.commit_page("0.0.1", &page).await.expect("commit"),
            PageOutcome::default()
        );
        let overlap = PageBatch {
            submissions: vec![
                submission("7", 10, 1, "b"),
                submission("7", 13, 0, "d"),
                submission("7", 13, 0, "d"),
            ],
            cursor: cursor(13, 0),
            ..PageBatch::default()
        };
        assert_eq!(store.commit_page("0.0.1", &overlap).await.expect("commit").inserted, 1);
        assert_eq!(store.cursor("0.0.1").await.expect("cursor"), cursor(13, 0));
        assert_eq!(store.cursor("0.0.2").await.expect("cursor"), None);
        assert_eq!(store.counts().await.expect("counts"), (4, 1));
        let tasks = store.tasks(10).await.expect("tasks");
        let summary: Vec<(String, i64, String)> = tasks
            .into_iter()
            .map(|t| (t.task_id, t.submissions, t.latest_consensus_timestamp))
            .collect();
        assert_eq!(
            summary,
            [
                ("7".into(), 3, "13.000000005".into()),
                ("8".into(), 1, "11.000000005".into())
            ]
        );
        let rows = store.task_weights("7").await.expect("rows");
        let hashes: Vec<&str> = rows.iter().map(|r| r.weights_hash.as_str()).collect();
        assert_eq!(hashes, ["a", "b", "d"]);
        assert_eq!(rows[0].url.as_deref(), Some("https://u/a?sig"));
        assert_eq!(rows[1].url, None);
        assert_eq!(rows[0].fields, r#"{"round":"1"}"#);
        assert!(store.hash_known("c").await.expect("known"));
        assert!(!store.hash_known("zz").await.expect("known"));
        assert_eq!(store.hash_submissions("b").await.expect("subs").len(), 1);
        // A refreshed URL replaces the old one; an ingest-time URL never does.
        store
            .put_url(
                "a",
                &CachedUrl {
                    url: "https://u/a?new".into(),
                    expires_at: 200,
                },
            )
            .await
            .expect("put");
        let again = PageBatch {
            urls: vec![(
                "a".into(),
                CachedUrl {
                    url: "https://u/a?old".into(),
                    expires_at: 1,
                },
            )],
            ..PageBatch::default()
        };
        store.commit_page("0.0.1", &again).await.expect("commit");
        assert_eq!(
            store.cached_url("a").await.expect("url").map(|u| u.expires_at),
            Some(200)
        );
        assert!(store.pending_migrations().await.expect("pending").is_empty());
        store.ping_writable().await.expect("writable");
        store.close().await;
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("t.db")).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
