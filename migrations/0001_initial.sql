-- weights-watcher schema. Never edit a migration that has shipped: add a new one.

-- One row per decoded WeightsSubmitted log, exactly once.
CREATE TABLE weights_submissions (
    id                  INTEGER PRIMARY KEY,
    task_id             TEXT    NOT NULL,            -- decimal for integer ids
    trainer             TEXT,                        -- lower-case 0x address
    weights_hash        TEXT    NOT NULL,            -- the object key (without key_prefix)
    consensus_timestamp TEXT    NOT NULL,            -- "seconds.nanos", nine nano digits
    log_index           INTEGER NOT NULL,
    transaction_hash    TEXT,
    block_number        INTEGER,
    contract_id         TEXT    NOT NULL,
    fields              TEXT    NOT NULL DEFAULT '{}', -- other decoded parameters, JSON object of strings
    consensus_ns        INTEGER NOT NULL,            -- the timestamp as nanoseconds, for ordering
    indexed_at          INTEGER NOT NULL,            -- unix seconds
    UNIQUE (consensus_timestamp, log_index)
);
CREATE INDEX weights_submissions_task ON weights_submissions (task_id, consensus_ns, log_index);
CREATE INDEX weights_submissions_hash ON weights_submissions (weights_hash);

-- Per-task summary for the newest-first task list, maintained with each insert.
CREATE TABLE tasks (
    task_id                     TEXT    PRIMARY KEY,
    submissions                 INTEGER NOT NULL,
    latest_consensus_timestamp  TEXT    NOT NULL,
    latest_ns                   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tasks_latest ON tasks (latest_ns DESC, task_id);

-- The presigned URL cache: one current URL per object key.
CREATE TABLE presigned_urls (
    weights_hash TEXT    PRIMARY KEY,
    url          TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,   -- unix seconds
    presigned_at INTEGER NOT NULL    -- unix seconds
);

-- Logs that matched topic0 but could not be decoded, quarantined once each.
CREATE TABLE rejected_logs (
    id                  INTEGER PRIMARY KEY,
    consensus_timestamp TEXT    NOT NULL,
    log_index           INTEGER NOT NULL,
    transaction_hash    TEXT,
    reason              TEXT    NOT NULL,
    raw                 TEXT    NOT NULL,   -- the log as the mirror node served it, JSON
    rejected_at         INTEGER NOT NULL,
    UNIQUE (consensus_timestamp, log_index)
);

-- Where the poller resumes, written in the same transaction as the rows it covers.
CREATE TABLE poller_cursor (
    contract_id         TEXT    PRIMARY KEY,
    consensus_timestamp TEXT    NOT NULL,
    log_index           INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- What operators query by hand: each submission with its cached URL.
CREATE VIEW task_weights AS
SELECT
    s.task_id,
    s.trainer,
    s.weights_hash,
    s.consensus_timestamp,
    s.log_index,
    s.transaction_hash,
    s.block_number,
    s.contract_id,
    s.fields,
    p.url,
    strftime('%Y-%m-%dT%H:%M:%SZ', p.expires_at, 'unixepoch') AS expires_at,
    CASE WHEN p.expires_at > CAST(strftime('%s', 'now') AS INTEGER) THEN 1 ELSE 0 END AS url_valid
FROM weights_submissions AS s
LEFT JOIN presigned_urls AS p ON p.weights_hash = s.weights_hash;
