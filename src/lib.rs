//! weights-watcher: indexes `WeightsSubmitted` events of a training contract from a Hedera
//! mirror node into SQLite and serves presigned download URLs for the recorded weights.
//!
//! Dependencies point one way: `main -> app -> {poller, http} -> {mirror, events, presign,
//! store, urls}`; `types`, `metrics` and `status` are shared leaves.
//!
//! - [`config`]: `config.toml` + `WW_*` environment overrides, validated into typed settings.
//! - [`types`]: validated values: consensus timestamps, the cursor, hashes, task ids.
//! - [`events`]: pure ABI decoding of a log into a submission (or a rejection).
//! - [`mirror`]: the mirror node client: one page per call, pagination rules, retries.
//! - [`presign`]: object key -> SigV4 presigned GET URL, locally, no network.
//! - [`store`]: SQLite: schema, exactly-once page commits, URL cache rows, API queries.
//! - [`urls`]: the URL cache policy: refresh before expiry, presign once per hash at a time.
//! - [`poller`]: the only writer of ingested data: fetch -> decode -> commit with the cursor.
//! - [`http`]: the HTTP API (axum): routes, errors, CORS, limits.
//! - [`status`] and [`metrics`]: the poller's health and Prometheus metrics.
//! - [`app`]: builds the components once and runs them until shutdown; systemd notify.
//! - [`check`]: the `check` command's probes.
//! - [`telemetry`]: tracing setup.

pub mod app;
pub mod check;
pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod mirror;
pub mod poller;
pub mod presign;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod types;
pub mod urls;
