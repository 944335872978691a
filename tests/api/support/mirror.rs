#![allow(dead_code)]
//! A fake Hedera mirror node serving `GET /api/v1/contracts/{contractIdOrAddress}/results/logs`
//! with the documented semantics (validation, keyset pagination on (timestamp, index), topic
//! filters, relative `next` links) and `GET /api/v1/contracts/{contractIdOrAddress}` (the
//! contract entity, which `check` asks for), plus fault injection for tests.
//!
//! Self-contained: only tokio, axum 0.8, serde_json, ethabi 18, hex, rand 0.9, http 1, tracing and
//! hyper-util 0.1 (its `service` module, which reqwest's `client-legacy` feature enables).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use ethabi::{ParamType, Token};
use http::{HeaderValue, StatusCode, header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// Value of a `Retry-After` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(u64),
    HttpDate(SystemTime),
}

/// A fault applied to one request instead of (or on top of) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429; with `html_body` the body is an nginx-style HTML page (text/html), else an `_status` JSON body.
    TooManyRequests {
        retry_after: Option<RetryAfter>,
        html_body: bool,
    },
    /// 500 with an `_status` JSON body.
    ServerError,
    /// 503 with an `_status` JSON body.
    Unavailable { retry_after: Option<RetryAfter> },
    /// Read the request, send nothing for this long, then close the connection.
    Hang(Duration),
    /// Read the request, then close the TCP connection without any response bytes.
    Reset,
    /// 200, JSON content type, the real body cut in half (Content-Length matches the cut body).
    TruncatedJson,
    /// 200 with the correct page, but `links.next` is the request's own path and query.
    RepeatPage,
    /// 200 with the correct page, but `links.next` is an absolute URL on another host
    /// (`http://203.0.113.1/api/v1/...`). Never follow it: the address is not ours.
    ForeignNext,
    /// 200 with a JSON body of exactly this many bytes, sent chunked (no Content-Length).
    HugeBody(usize),
}

/// One request as seen by the fake.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub path_and_query: String,
    pub received: Instant,
    /// HTTP status answered; 0 when no HTTP response was sent (Reset, Hang) or not finished yet.
    pub status: u16,
    pub fault: Option<Fault>,
}

/// Start options.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    pub shard: u64,
    pub realm: u64,
    pub contract_num: u64,
    /// Server-side maximum page size (`response.limit.max`), default 100.
    pub max_limit: usize,
    /// Page size when the client sends no `limit`, default 25.
    pub default_limit: usize,
    /// Listen address, default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Delay added before answering every request.
    pub latency: Duration,
    /// Seed of the RNG used by `set_fault_rate`.
    pub fault_seed: u64,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            shard: 0,
            realm: 0,
            contract_num: 5005,
            max_limit: 100,
            default_limit: 25,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            fault_seed: 0x5eed,
        }
    }
}

/// One contract log, stored compactly and serialised on response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub timestamp: (u64, u32),
    pub index: u32,
    /// topic0.. in order; the mirror drops null topics, so a short list is a "missing" topic.
    pub topics: Vec<[u8; 32]>,
    /// `None` is served as JSON null; bytes are served `0x`-hex left-padded to >= 32 bytes, empty as "0x".
    pub data: Option<Vec<u8>>,
    pub transaction_hash: [u8; 32],
    pub block_number: u64,
    pub transaction_index: u32,
    /// Emitting address; `None` = the fake contract's long-zero address.
    pub address: Option<[u8; 20]>,
    /// Served as `0x`-hex ("0x" when empty).
    pub bloom: Vec<u8>,
    /// `None` = the fake contract's id ("0.0.5005"); `Some("")` is served as JSON null.
    pub root_contract_id: Option<String>,
}

impl Log {
    /// A log with no topics and no data; transaction hash, block number and transaction index
    /// are derived deterministically from the timestamp (so logs sharing a timestamp share a tx).
    pub fn new(timestamp: (u64, u32), index: u32) -> Log {
        let ns = ts_nanos(timestamp);
        let mut sm = SplitMix(ns as u64 ^ 0x7478_6861_7368);
        let mut transaction_hash = [0u8; 32];
        for chunk in transaction_hash.chunks_mut(8) {
            chunk.copy_from_slice(&sm.next().to_be_bytes());
        }
        Log {
            timestamp,
            index,
            topics: Vec::new(),
            data: None,
            transaction_hash,
            block_number: timestamp.0 / 2,
            transaction_index: (sm.next() % 20) as u32,
            address: None,
            bloom: vec![0],
            root_contract_id: None,
        }
    }

    /// The timestamp as the mirror prints it: "secs.nnnnnnnnn".
    pub fn timestamp_string(&self) -> String {
        format_timestamp(self.timestamp)
    }

    fn key(&self) -> u128 {
        key_of(ts_nanos(self.timestamp), self.index as u64)
    }
}

/// What a correct watcher must extract from the generated history.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    pub timestamp: String,
    pub index: u32,
    pub task_id: String,
    /// lower-case 0x + 40 hex
    pub trainer: String,
    pub hash: String,
}

pub const WEIGHTS_SUBMITTED_SIG: &str = "WeightsSubmitted(uint256,address,string,uint256)";
pub const TASK_CREATED_SIG: &str = "TaskCreated(uint256,string)";
/// The host used by `Fault::ForeignNext` (TEST-NET-3, never routed).
pub const FOREIGN_HOST: &str = "http://203.0.113.1";

/// keccak256("WeightsSubmitted(uint256,address,string,uint256)")
pub fn weights_submitted_topic0() -> [u8; 32] {
    static T: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        ethabi::long_signature(
            "WeightsSubmitted",
            &[
                ParamType::Uint(256),
                ParamType::Address,
                ParamType::String,
                ParamType::Uint(256),
            ],
        )
        .0
    })
}

/// keccak256("TaskCreated(uint256,string)")
pub fn task_created_topic0() -> [u8; 32] {
    static T: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *T.get_or_init(|| ethabi::long_signature("TaskCreated", &[ParamType::Uint(256), ParamType::String]).0)
}

fn u64_word(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

fn address_word(a: [u8; 20]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(&a);
    w
}

/// WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)
pub fn weights_submitted(ts: (u64, u32), index: u32, task_id: u64, trainer: [u8; 20], hash: &str, when: u64) -> Log {
    let mut log = Log::new(ts, index);
    log.topics = vec![weights_submitted_topic0(), u64_word(task_id), address_word(trainer)];
    log.data = Some(abi_encode_string_uint(hash, when));
    log
}

/// `ethabi::encode(&[Token::String(s), Token::Uint(v)])`, written out by hand because the
/// history generator calls it a million times (ethabi is ~4x slower in debug builds).
/// A self-test checks it against ethabi::encode.
pub fn abi_encode_string_uint(s: &str, v: u64) -> Vec<u8> {
    let padded = s.len().div_ceil(32) * 32;
    let mut out = Vec::with_capacity(96 + padded);
    out.extend_from_slice(&u64_word(0x40));
    out.extend_from_slice(&u64_word(v));
    out.extend_from_slice(&u64_word(s.len() as u64));
    out.extend_from_slice(s.as_bytes());
    out.resize(96 + padded, 0);
    out
}

/// TaskCreated(uint256 indexed taskId, string name): another event of the same contract.
pub fn other_event(ts: (u64, u32), index: u32, task_id: u64) -> Log {
    let mut log = Log::new(ts, index);
    log.topics = vec![task_created_topic0(), u64_word(task_id)];
    log.data = Some(ethabi::encode(&[Token::String(format!("task-{task_id}"))]));
    log
}

/// Number of distinct `poison` kinds (kind is taken modulo this).
pub const POISON_KINDS: u8 = 5;

/// A log whose topic0 is WeightsSubmitted but that must be rejected. `kind % 5`:
/// 0 truncated data (string bytes missing), 1 missing indexed trainer topic,
/// 2 string offset out of range, 3 hash "../x" (not a valid object key), 4 null data.
pub fn poison(ts: (u64, u32), index: u32, kind: u8) -> Log {
    let trainer = [0x11u8; 20];
    let good_hash = "ab".repeat(32);
    let mut log = weights_submitted(ts, index, 7, trainer, &good_hash, ts.0);
    match kind % POISON_KINDS {
        0 => {
            if let Some(d) = log.data.as_mut() {
                d.truncate(96);
            }
        }
        1 => {
            log.topics.truncate(2);
        }
        2 => {
            if let Some(d) = log.data.as_mut() {
                d[..32].copy_from_slice(&u64_word(0x0010_0000));
            }
        }
        3 => {
            log.data = Some(ethabi::encode(&[
                Token::String("../x".to_owned()),
                Token::Uint(ethabi::Uint::from(ts.0)),
            ]));
        }
        _ => {
            log.data = None;
        }
    }
    log
}

/// Deterministic ground-truth history: `n` logs spread over `span_secs` from `start_secs`,
/// multi-log transactions sharing a timestamp (index 0,1,2.., sometimes starting at 1),
/// ~85% WeightsSubmitted, ~10% TaskCreated, ~5% poison.
/// Returns (logs sorted by (timestamp, index), expected submissions in that order, poison (timestamp, index)).
pub fn history(seed: u64, n: usize, start_secs: u64, span_secs: u64) -> (Vec<Log>, Vec<Expected>, Vec<(String, u32)>) {
    let mut rng = SplitMix(seed ^ 0x0068_6973_746f_7279);
    let n_tasks = (n / 6).clamp(1, 1000) as u64;
    let trainers: Vec<[u8; 20]> = (0..8)
        .map(|_| {
            let mut a = [0u8; 20];
            for c in a.chunks_mut(4) {
                c.copy_from_slice(&(rng.next() as u32).to_be_bytes()[..c.len()]);
            }
            a
        })
        .collect();
    let start_ns = start_secs as u128 * 1_000_000_000;
    let span_ns = span_secs as u128 * 1_000_000_000;
    let mut logs = Vec::with_capacity(n);
    let mut expected = Vec::new();
    let mut poisoned = Vec::new();
    let mut prev: Option<u128> = None;
    let mut produced = 0usize;
    while produced < n {
        let group = if rng.next().is_multiple_of(4) {
            2 + (rng.next() % 3) as usize
        } else {
            1
        };
        let group = group.min(n - produced);
        let base = start_ns + span_ns * produced as u128 / n.max(1) as u128;
        let ns = match prev {
            Some(p) if base <= p => p + 1,
            _ => base,
        };
        prev = Some(ns);
        let ts = ((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32);
        let first_index = if rng.next().is_multiple_of(10) { 1 } else { 0 };
        for i in 0..group {
            let index = first_index + i as u32;
            let r = rng.next() % 100;
            let log = if r < 85 {
                let task = rng.next() % n_tasks + 1;
                let trainer = trainers[(rng.next() % trainers.len() as u64) as usize];
                let mut hash = String::with_capacity(64);
                for _ in 0..4 {
                    let _ = write!(hash, "{:016x}", rng.next());
                }
                expected.push(Expected {
                    timestamp: format_timestamp(ts),
                    index,
                    task_id: task.to_string(),
                    trainer: format!("0x{}", hex::encode(trainer)),
                    hash: hash.clone(),
                });
                weights_submitted(ts, index, task, trainer, &hash, ts.0)
            } else if r < 95 {
                other_event(ts, index, rng.next() % n_tasks + 1)
            } else {
                poisoned.push((format_timestamp(ts), index));
                poison(ts, index, (rng.next() % POISON_KINDS as u64) as u8)
            };
            logs.push(log);
        }
        produced += group;
    }
    (logs, expected, poisoned)
}

/// "secs.nnnnnnnnn"
pub fn format_timestamp(ts: (u64, u32)) -> String {
    format!("{}.{:09}", ts.0, ts.1)
}

/// Parses `secs[.nanos]` (1–10 digit seconds, 1–9 digit fraction) as text, never as a float.
pub fn parse_timestamp(s: &str) -> Option<(u64, u32)> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    if secs.is_empty() || secs.len() > 10 || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) => {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: u32 = f.parse().ok()?;
            v * 10u32.pow(9 - f.len() as u32)
        }
    };
    Some((secs, nanos))
}

// ---------------------------------------------------------------------------------------------
// The server handle
// ---------------------------------------------------------------------------------------------

pub struct FakeMirror {
    /// "http://127.0.0.1:PORT", no trailing slash.
    pub base_url: String,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeMirror {
    /// Contract 0.0.5005 on 127.0.0.1:0.
    pub async fn start() -> FakeMirror {
        Self::start_with(MirrorOptions::default()).await
    }

    pub async fn start_with(opts: MirrorOptions) -> FakeMirror {
        let listener = TcpListener::bind(opts.listen)
            .await
            .unwrap_or_else(|e| panic!("fake mirror: cannot bind {}: {e}", opts.listen));
        let addr = listener.local_addr().expect("fake mirror: local_addr");
        let mut evm = [0u8; 20];
        evm[..4].copy_from_slice(&(opts.shard as u32).to_be_bytes());
        evm[4..12].copy_from_slice(&opts.realm.to_be_bytes());
        evm[12..].copy_from_slice(&opts.contract_num.to_be_bytes());
        let shared = Arc::new(Shared {
            shard: opts.shard,
            realm: opts.realm,
            num: opts.contract_num,
            evm,
            contract_id: format!("{}.{}.{}", opts.shard, opts.realm, opts.contract_num),
            logs: RwLock::new(Vec::new()),
            ctl: Mutex::new(Control {
                queue: VecDeque::new(),
                rate: 0.0,
                rate_faults: Vec::new(),
                rng: StdRng::seed_from_u64(opts.fault_seed),
                latency: opts.latency,
                max_limit: opts.max_limit.max(1),
                default_limit: opts.default_limit.max(1),
            }),
            requests: Mutex::new(Vec::new()),
            huge: Mutex::new(None),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), shutdown_rx));
        tracing::debug!(%addr, contract = %shared.contract_id, "fake mirror listening");
        FakeMirror {
            base_url: format!("http://{addr}"),
            shared,
            shutdown_tx,
            task: Some(task),
        }
    }

    /// "0.0.5005"
    pub fn contract_id(&self) -> String {
        self.shared.contract_id.clone()
    }

    /// Long-zero EVM address, "0x" + 40 lower-case hex.
    pub fn evm_address(&self) -> String {
        format!("0x{}", hex::encode(self.shared.evm))
    }

    /// "/api/v1/contracts/0.0.5005/results/logs"
    pub fn logs_path(&self) -> String {
        format!("/api/v1/contracts/{}/results/logs", self.shared.contract_id)
    }

    /// base_url + path_and_query
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base_url, path_and_query)
    }

    /// Makes a log visible. A log with the same (timestamp, index) as an existing one replaces it.
    pub fn push(&self, log: Log) {
        let mut logs = self.shared.logs.write().unwrap_or_else(|e| e.into_inner());
        let k = log.key();
        let pos = logs.partition_point(|l| l.key() < k);
        if pos < logs.len() && logs[pos].key() == k {
            logs[pos] = log;
        } else {
            logs.insert(pos, log);
        }
    }

    pub fn push_many(&self, new: impl IntoIterator<Item = Log>) {
        let mut logs = self.shared.logs.write().unwrap_or_else(|e| e.into_inner());
        let before = logs.len();
        logs.extend(new);
        let appended_in_order = logs.len() > before
            && logs[before.saturating_sub(1)..]
                .windows(2)
                .all(|w| w[0].key() < w[1].key());
        if !appended_in_order {
            // stable sort keeps later pushes after earlier ones; keep the later of equal keys
            logs.sort_by_key(|l| l.key());
            logs.dedup_by(|later, earlier| {
                if later.key() == earlier.key() {
                    std::mem::swap(later, earlier);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Removes every log.
    pub fn clear_logs(&self) {
        self.shared.logs.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn log_count(&self) -> usize {
        self.shared.logs.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The next `times` requests get `fault` (FIFO after faults already queued).
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut c = self.shared.ctl();
        for _ in 0..times {
            c.queue.push_back(fault.clone());
        }
    }

    /// Each request not served from the `inject` queue gets, with probability `rate`,
    /// a fault picked uniformly from `faults` (seeded RNG, see `set_fault_seed`).
    pub fn set_fault_rate(&self, rate: f64, faults: Vec<Fault>) {
        let mut c = self.shared.ctl();
        c.rate = rate.clamp(0.0, 1.0);
        c.rate_faults = faults;
    }

    pub fn set_fault_seed(&self, seed: u64) {
        self.shared.ctl().rng = StdRng::seed_from_u64(seed);
    }

    /// Empties the inject queue and sets the fault rate to 0.
    pub fn clear_faults(&self) {
        let mut c = self.shared.ctl();
        c.queue.clear();
        c.rate = 0.0;
        c.rate_faults.clear();
    }

    pub fn set_latency(&self, d: Duration) {
        self.shared.ctl().latency = d;
    }

    pub fn set_max_limit(&self, max: usize) {
        self.shared.ctl().max_limit = max.max(1);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Stops accepting and closes every open connection.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeMirror {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct Control {
    queue: VecDeque<Fault>,
    rate: f64,
    rate_faults: Vec<Fault>,
    rng: StdRng,
    latency: Duration,
    max_limit: usize,
    default_limit: usize,
}

struct Shared {
    shard: u64,
    realm: u64,
    num: u64,
    evm: [u8; 20],
    contract_id: String,
    logs: RwLock<Vec<Log>>,
    ctl: Mutex<Control>,
    requests: Mutex<Vec<RequestRecord>>,
    huge: Mutex<Option<Bytes>>,
}

impl Shared {
    fn ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, path_and_query: String, received: Instant) -> (usize, Option<Fault>, Duration, usize, usize) {
        let (fault, latency, max_limit, default_limit) = {
            let mut c = self.ctl();
            let fault = match c.queue.pop_front() {
                Some(f) => Some(f),
                None if c.rate > 0.0 && !c.rate_faults.is_empty() => {
                    let r: f64 = c.rng.random();
                    if r < c.rate {
                        let n = c.rate_faults.len();
                        let i = c.rng.random_range(0..n);
                        Some(c.rate_faults[i].clone())
                    } else {
                        None
                    }
                }
                None => None,
            };
            (fault, c.latency, c.max_limit, c.default_limit)
        };
        let mut reqs = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        reqs.push(RequestRecord {
            path_and_query,
            received,
            status: 0,
            fault: fault.clone(),
        });
        (reqs.len() - 1, fault, latency, max_limit, default_limit)
    }

    fn finish(&self, id: usize, status: u16) {
        let mut reqs = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reqs.get_mut(id) {
            r.status = status;
        }
    }

    fn huge_body(&self, n: usize) -> Bytes {
        let mut cache = self.huge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.as_ref().filter(|b| b.len() == n) {
            return b.clone();
        }
        let prefix = br#"{"logs":["#;
        let suffix = br#"0],"links":{"next":null}}"#;
        let mut v = Vec::with_capacity(n);
        if n < prefix.len() + suffix.len() {
            v.extend_from_slice(&prefix[..n.min(prefix.len())]);
            v.resize(n, b' ');
        } else {
            v.extend_from_slice(prefix);
            let fill = n - prefix.len() - suffix.len();
            if fill % 2 == 1 {
                v.push(b' ');
            }
            v.extend_from_slice(&b"0,".repeat(fill / 2));
            v.extend_from_slice(suffix);
        }
        let b = Bytes::from(v);
        *cache = Some(b.clone());
        b
    }
}

// ---------------------------------------------------------------------------------------------
// Networking: own accept loop so that a fault can drop the connection without a response.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct ConnCtx {
    shared: Arc<Shared>,
    kill: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl ConnCtx {
    fn kill(&self) {
        if let Some(tx) = self.kill.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            r = listener.accept() => {
                match r {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_conn(stream, shared.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fake mirror: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn serve_conn(stream: tokio::net::TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let ctx = ConnCtx {
        shared,
        kill: Arc::new(Mutex::new(Some(kill_tx))),
    };
    let router = Router::new().fallback(handle).with_state(ctx);
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    if *shutdown.borrow_and_update() {
        return;
    }
    tokio::select! {
        _ = conn => {}
        _ = kill_rx => {}   // dropping `conn` closes the socket with no response
        _ = shutdown.changed() => {}
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn error_body(messages: &[String]) -> String {
    let msgs: Vec<serde_json::Value> = messages.iter().map(|m| serde_json::json!({ "message": m })).collect();
    serde_json::json!({ "_status": { "messages": msgs } }).to_string()
}

fn set_retry_after(r: &mut Response, ra: &Option<RetryAfter>) {
    let v = match ra {
        None => return,
        Some(RetryAfter::Seconds(s)) => s.to_string(),
        Some(RetryAfter::HttpDate(t)) => http_date(*t),
    };
    if let Ok(h) = HeaderValue::from_str(&v) {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
}

/// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

async fn handle(State(cx): State<ConnCtx>, req: Request) -> Response {
    let received = Instant::now();
    let uri = req.uri();
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let path_and_query = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    drop(req);
    let (id, fault, latency, max_limit, default_limit) = cx.shared.begin(path_and_query.clone(), received);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let shared = &cx.shared;
    let api = |next: NextMode| shared.answer(&path, query.as_deref(), max_limit, default_limit, next);
    let response = match fault {
        None => {
            let (s, b) = api(NextMode::Normal);
            json_response(s, b)
        }
        Some(Fault::Reset) => {
            cx.kill();
            return std::future::pending().await;
        }
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            cx.kill();
            return std::future::pending().await;
        }
        Some(Fault::TooManyRequests { retry_after, html_body }) => {
            let mut r = if html_body {
                let mut r = Response::new(Body::from(
                    "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                ));
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                r
            } else {
                json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    error_body(&["Too many requests".to_owned()]),
                )
            };
            set_retry_after(&mut r, &retry_after);
            r
        }
        Some(Fault::ServerError) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_body(&["Internal server error".to_owned()]),
        ),
        Some(Fault::Unavailable { retry_after }) => {
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(&["Service Unavailable".to_owned()]),
            );
            set_retry_after(&mut r, &retry_after);
            r
        }
        Some(Fault::TruncatedJson) => {
            let (_, b) = api(NextMode::Normal);
            let mut cut = b.len() / 2;
            while !b.is_char_boundary(cut) {
                cut -= 1;
            }
            json_response(StatusCode::OK, b[..cut].to_owned())
        }
        Some(Fault::RepeatPage) => {
            let (s, b) = api(NextMode::Fixed(path_and_query.clone()));
            json_response(s, b)
        }
        Some(Fault::ForeignNext) => {
            let (s, b) = api(NextMode::Foreign(path_and_query.clone()));
            json_response(s, b)
        }
        Some(Fault::HugeBody(n)) => {
            let bytes = cx.shared.huge_body(n);
            // a stream body has no exact size: hyper sends it chunked, without Content-Length
            let body = Body::from_stream(Body::from(bytes).into_data_stream());
            let mut r = Response::new(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
    };
    cx.shared.finish(id, response.status().as_u16());
    response
}

// ---------------------------------------------------------------------------------------------
// The API itself
// ---------------------------------------------------------------------------------------------

enum NextMode {
    Normal,
    /// links.next = this exact string (RepeatPage)
    Fixed(String),
    /// links.next = FOREIGN_HOST + (the real next link, or this path when there is none)
    Foreign(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
    Ne,
}

fn split_op(v: &str) -> (Option<Op>, &str) {
    if let Some((p, rest)) = v.split_once(':') {
        let op = match p {
            "eq" => Op::Eq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "ne" => Op::Ne,
            _ => return (None, v),
        };
        (Some(op), rest)
    } else {
        (None, v)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn ts_nanos(ts: (u64, u32)) -> u128 {
    ts.0 as u128 * 1_000_000_000 + ts.1 as u128
}

/// Keyset key of (timestamp ns, index): index < 2^34 covers every 10-digit index value.
fn key_of(ts_ns: u128, index: u64) -> u128 {
    (ts_ns << 34) | index as u128
}

const SEVEN_DAYS_NS: u128 = 7 * 86_400 * 1_000_000_000;

#[derive(Default)]
struct Bounds<T> {
    eq: Option<T>,
    lower: Option<(Op, T)>,
    upper: Option<(Op, T)>,
}

impl<T: Copy + PartialEq> Bounds<T> {
    fn add(&mut self, name: &str, op: Op, v: T) -> Result<(), String> {
        match op {
            Op::Eq => {
                if self.eq.is_some() {
                    return Err(format!("Only one equal (eq) operator is allowed for {name}"));
                }
                self.eq = Some(v);
            }
            Op::Gt | Op::Gte => {
                if self.lower.is_some() {
                    return Err(format!("Only one gt/gte operator is allowed for {name}"));
                }
                self.lower = Some((op, v));
            }
            Op::Lt | Op::Lte => {
                if self.upper.is_some() {
                    return Err(format!("Only one lt/lte operator is allowed for {name}"));
                }
                self.upper = Some((op, v));
            }
            Op::Ne => {
                return Err(format!("Not equal (ne) operator is not supported for {name}"));
            }
        }
        if self.eq.is_some() && (self.lower.is_some() || self.upper.is_some()) {
            return Err(format!("Can't support both range and equal for {name}"));
        }
        Ok(())
    }
    fn is_empty(&self) -> bool {
        self.eq.is_none() && self.lower.is_none() && self.upper.is_none()
    }
}

enum Target {
    Ours,
    UnknownId,
}

impl Shared {
    fn resolve_contract(&self, raw: &str) -> Result<Target, (StatusCode, String)> {
        let invalid = || {
            (
                StatusCode::BAD_REQUEST,
                error_body(&["Invalid parameter: contract.id".to_owned()]),
            )
        };
        let parts: Vec<&str> = raw.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(invalid());
        }
        let (prefix, last) = parts.split_at(parts.len() - 1);
        let last = last[0];
        let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        if !prefix.iter().all(|p| digits(p)) {
            return Err(invalid());
        }
        if digits(last) {
            let num: u64 = last.parse().map_err(|_| invalid())?;
            let realm: u64 = if !prefix.is_empty() {
                prefix[prefix.len() - 1].parse().map_err(|_| invalid())?
            } else {
                0
            };
            let shard: u64 = if prefix.len() == 2 {
                prefix[0].parse().map_err(|_| invalid())?
            } else {
                0
            };
            return Ok(if (shard, realm, num) == (self.shard, self.realm, self.num) {
                Target::Ours
            } else {
                Target::UnknownId
            });
        }
        let hexpart = last.strip_prefix("0x").unwrap_or(last);
        if hexpart.len() != 40 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut addr = [0u8; 20];
        hex::decode_to_slice(hexpart, &mut addr).map_err(|_| invalid())?;
        if addr == self.evm {
            Ok(Target::Ours)
        } else {
            Err((
                StatusCode::NOT_FOUND,
                error_body(&[format!(
                    "No contract with the given evm address 0x{} has been found.",
                    hexpart.to_ascii_lowercase()
                )]),
            ))
        }
    }

    /// Answers one API request: (status, JSON body).
    fn answer(
        &self,
        path: &str,
        query: Option<&str>,
        max_limit: usize,
        default_limit: usize,
        next_mode: NextMode,
    ) -> (StatusCode, String) {
        let not_found = || (StatusCode::NOT_FOUND, error_body(&["Not found".to_owned()]));
        let Some(rest) = path.strip_prefix("/api/v1/contracts/") else {
            return not_found();
        };
        if !rest.is_empty() && !rest.contains('/') {
            return self.contract(rest);
        }
        let Some(raw_id) = rest.strip_suffix("/results/logs") else {
            return not_found();
        };
        if raw_id.contains('/') {
            return not_found();
        }
        let target = match self.resolve_contract(raw_id) {
            Ok(t) => t,
            Err(e) => return e,
        };

        // ---- parse parameters ----
        let pairs: Vec<(String, String, &str)> = query
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|seg| {
                let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
                (percent_decode(k), percent_decode(v), seg)
            })
            .collect();
        {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for (k, _, _) in &pairs {
                match counts.iter_mut().find(|(n, _)| n == k) {
                    Some(c) => c.1 += 1,
                    None => counts.push((k, 1)),
                }
            }
            if counts.iter().any(|(_, c)| *c > 100) {
                return (
                    StatusCode::BAD_REQUEST,
                    error_body(&["Array limit exceeded. Only 100 elements allowed in an array.".to_owned()]),
                );
            }
        }

        let mut errors: Vec<String> = Vec::new();
        let mut limit: Option<u64> = None;
        let mut asc = false;
        let mut ts_filters: Vec<(Op, u128)> = Vec::new();
        let mut idx_filters: Vec<(Op, u64)> = Vec::new();
        let mut topics: [Vec<[u8; 32]>; 4] = Default::default();
        for (k, v, _) in &pairs {
            match k.as_str() {
                "limit" => {
                    let (_, val) = split_op(v);
                    match val.parse::<u64>() {
                        Ok(n) if n > 0 && val.bytes().all(|b| b.is_ascii_digit()) => limit = Some(n),
                        _ => errors.push("Invalid parameter: limit".to_owned()),
                    }
                }
                "order" => {
                    let (_, val) = split_op(v);
                    match val.to_ascii_lowercase().as_str() {
                        "asc" => asc = true,
                        "desc" => asc = false,
                        _ => errors.push("Invalid parameter: order".to_owned()),
                    }
                }
                "timestamp" => {
                    let (op, val) = split_op(v);
                    match parse_timestamp(val) {
                        Some(t) => ts_filters.push((op.unwrap_or(Op::Eq), ts_nanos(t))),
                        None => errors.push("Invalid parameter: timestamp".to_owned()),
                    }
                }
                "index" => {
                    let (op, val) = split_op(v);
                    let ok_digits = !val.is_empty() && val.len() <= 10 && val.bytes().all(|b| b.is_ascii_digit());
                    match (op, ok_digits) {
                        (Some(Op::Ne), _) | (_, false) => errors.push("Invalid parameter: index".to_owned()),
                        (op, true) => idx_filters.push((op.unwrap_or(Op::Eq), val.parse().unwrap_or(0))),
                    }
                }
                "topic0" | "topic1" | "topic2" | "topic3" => {
                    let n = (k.as_bytes()[5] - b'0') as usize;
                    let (op, val) = split_op(v);
                    match (op, parse_topic(val)) {
                        (None | Some(Op::Eq), Some(t)) => topics[n].push(t),
                        _ => errors.push(format!("Invalid parameter: {k}")),
                    }
                }
                other => errors.push(format!("Unknown query parameter: {other}")),
            }
        }
        if !errors.is_empty() {
            return (StatusCode::BAD_REQUEST, error_body(&errors));
        }
        let bad = |m: String| (StatusCode::BAD_REQUEST, error_body(&[m]));

        // ---- bounds ----
        let mut ts: Bounds<u128> = Bounds::default();
        for (op, t) in &ts_filters {
            if let Err(m) = ts.add("timestamp", *op, *t) {
                return bad(m);
            }
        }
        let mut eq_explicit = ts.eq.is_some();
        if let (None, Some((Op::Gte, a)), Some((Op::Lte, b))) = (ts.eq, ts.lower, ts.upper)
            && a == b
        {
            ts = Bounds {
                eq: Some(a),
                lower: None,
                upper: None,
            };
            eq_explicit = false;
        }
        let mut idx: Bounds<u64> = Bounds::default();
        for (op, i) in &idx_filters {
            if let Err(m) = idx.add("index", *op, *i) {
                return bad(m);
            }
        }
        if !idx.is_empty() && ts.is_empty() {
            return bad("index without a timestamp parameter filter".to_owned());
        }
        if idx.lower.is_some() && ts.eq.is_none() && !matches!(ts.lower, Some((Op::Gte, _))) {
            return bad("timestamp must have gte or eq operator".to_owned());
        }
        if idx.upper.is_some() && ts.eq.is_none() && !matches!(ts.upper, Some((Op::Lte, _))) {
            return bad("timestamp must have lte or eq operator".to_owned());
        }
        if idx.eq.is_some() && ts.eq.is_none() {
            return bad("timestamp must have eq operator".to_owned());
        }
        let any_topic = topics.iter().any(|t| !t.is_empty());
        if any_topic && ts.eq.is_none() {
            const P: &str = "Cannot search topics without a valid timestamp range: ";
            match (ts.lower, ts.upper) {
                (None, None) => {
                    return bad(format!("{P}No timestamp range or eq operator provided"));
                }
                (Some((lop, lo)), Some((uop, hi))) => {
                    let begin = if lop == Op::Gt { lo + 1 } else { lo };
                    let end = if uop == Op::Lt { hi.checked_sub(1) } else { Some(hi) };
                    let ok = matches!(end, Some(end) if end >= begin && end - begin < SEVEN_DAYS_NS);
                    if !ok {
                        return bad(format!(
                            "{P}Timestamp range by the lower and upper bounds must be positive and within 7d"
                        ));
                    }
                }
                _ => {
                    return bad(format!(
                        "{P}Timestamp range must have gt (or gte) and lt (or lte), or eq operator"
                    ));
                }
            }
        }

        if matches!(target, Target::UnknownId) {
            return (StatusCode::OK, r#"{"logs":[],"links":{"next":null}}"#.to_owned());
        }

        // ---- keyset range [lo, hi) over (timestamp, index) ----
        let mut lo: u128 = 0;
        let mut hi: u128 = u128::MAX;
        if let Some(t) = ts.eq {
            lo = key_of(t, 0);
            hi = key_of(t + 1, 0);
            if let Some(i) = idx.eq {
                lo = lo.max(key_of(t, i));
                hi = hi.min(key_of(t, i + 1));
            }
            match idx.lower {
                Some((Op::Gt, i)) => lo = lo.max(key_of(t, i + 1)),
                Some((_, i)) => lo = lo.max(key_of(t, i)),
                None => {}
            }
            match idx.upper {
                Some((Op::Lt, i)) => hi = hi.min(key_of(t, i)),
                Some((_, i)) => hi = hi.min(key_of(t, i + 1)),
                None => {}
            }
        } else {
            match ts.lower {
                Some((Op::Gt, t)) => lo = key_of(t + 1, 0),
                Some((_, t)) => {
                    lo = match idx.lower {
                        Some((Op::Gt, i)) => key_of(t, i + 1),
                        Some((_, i)) => key_of(t, i),
                        None => key_of(t, 0),
                    }
                }
                None => {}
            }
            match ts.upper {
                Some((Op::Lt, t)) => hi = key_of(t, 0),
                Some((_, t)) => {
                    hi = match idx.upper {
                        Some((Op::Lt, i)) => key_of(t, i),
                        Some((_, i)) => key_of(t, i + 1),
                        None => key_of(t + 1, 0),
                    }
                }
                None => {}
            }
        }

        let eff_limit = limit
            .map(|l| l.min(max_limit as u64) as usize)
            .unwrap_or(default_limit.min(max_limit));
        let mut out = String::with_capacity(256 + eff_limit * 900);
        out.push_str(r#"{"logs":["#);
        let mut rows = 0usize;
        let mut last: Option<((u64, u32), u32)> = None;
        {
            let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
            let slice: &[Log] = if lo < hi {
                let s = logs.partition_point(|l| l.key() < lo);
                let e = logs.partition_point(|l| l.key() < hi);
                &logs[s..e.max(s)]
            } else {
                &[]
            };
            let matches = |l: &Log| {
                topics
                    .iter()
                    .enumerate()
                    .all(|(n, want)| want.is_empty() || l.topics.get(n).is_some_and(|t| want.contains(t)))
            };
            let mut emit = |l: &Log| {
                if rows > 0 {
                    out.push(',');
                }
                self.write_log(&mut out, l);
                rows += 1;
                last = Some((l.timestamp, l.index));
            };
            if asc {
                for l in slice.iter().filter(|l| matches(l)).take(eff_limit) {
                    emit(l);
                }
            } else {
                for l in slice.iter().rev().filter(|l| matches(l)).take(eff_limit) {
                    emit(l);
                }
            }
        }

        let mut next: Option<String> = None;
        if rows == eff_limit
            && !(ts.eq.is_some() && idx.eq.is_some())
            && let Some((lts, lidx)) = last
        {
            let mut q: Vec<String> = Vec::new();
            for (k, v, raw) in &pairs {
                let (op, _) = split_op(v);
                let drop = match k.as_str() {
                    "timestamp" if !eq_explicit => {
                        if asc {
                            matches!(op, Some(Op::Gt | Op::Gte))
                        } else {
                            matches!(op, Some(Op::Lt | Op::Lte))
                        }
                    }
                    "index" => {
                        if asc {
                            matches!(op, Some(Op::Gt | Op::Gte))
                        } else {
                            matches!(op, Some(Op::Lt | Op::Lte))
                        }
                    }
                    _ => false,
                };
                if !drop {
                    q.push((*raw).to_owned());
                }
            }
            let (tsop, idxop) = if asc { ("gte", "gt") } else { ("lte", "lt") };
            if !eq_explicit {
                q.push(format!("timestamp={tsop}:{}", format_timestamp(lts)));
            }
            q.push(format!("index={idxop}:{lidx}"));
            next = Some(format!("/api/v1/contracts/{raw_id}/results/logs?{}", q.join("&")));
        }
        let next = match next_mode {
            NextMode::Normal => next,
            NextMode::Fixed(s) => Some(s),
            NextMode::Foreign(own) => Some(format!("{FOREIGN_HOST}{}", next.unwrap_or(own))),
        };
        out.push_str(r#"],"links":{"next":"#);
        match next {
            Some(n) => out.push_str(&serde_json::Value::String(n).to_string()),
            None => out.push_str("null"),
        }
        out.push_str("}}");
        (StatusCode::OK, out)
    }

    /// `GET /api/v1/contracts/{contractIdOrAddress}`: the contract entity (a subset of the real
    /// fields) for our contract in any accepted id form, 404 with an `_status` body otherwise.
    fn contract(&self, raw_id: &str) -> (StatusCode, String) {
        match self.resolve_contract(raw_id) {
            Err(e) => e,
            Ok(Target::UnknownId) => (StatusCode::NOT_FOUND, error_body(&["Not found".to_owned()])),
            Ok(Target::Ours) => {
                let created = {
                    let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
                    logs.first()
                        .map_or_else(|| "1700000000.000000000".to_owned(), Log::timestamp_string)
                };
                let body = serde_json::json!({
                    "admin_key": null,
                    "auto_renew_account": null,
                    "auto_renew_period": 7_776_000,
                    "contract_id": self.contract_id,
                    "created_timestamp": created,
                    "deleted": false,
                    "evm_address": format!("0x{}", hex::encode(self.evm)),
                    "expiration_timestamp": null,
                    "file_id": format!("{}.{}.{}", self.shard, self.realm, self.num.saturating_sub(1)),
                    "max_automatic_token_associations": 0,
                    "memo": "",
                    "obtainer_id": null,
                    "permanent_removal": null,
                    "proxy_account_id": null,
                    "timestamp": { "from": created, "to": null },
                    "bytecode": "0x",
                    "runtime_bytecode": "0x",
                });
                (StatusCode::OK, body.to_string())
            }
        }
    }

    fn write_log(&self, out: &mut String, l: &Log) {
        out.push_str(r#"{"address":"0x"#);
        push_hex(out, &l.address.unwrap_or(self.evm));
        out.push_str(r#"","bloom":"0x"#);
        push_hex(out, &l.bloom);
        out.push_str(r#"","contract_id":""#);
        out.push_str(&self.contract_id);
        out.push_str(r#"","data":"#);
        match &l.data {
            None => out.push_str("null"),
            Some(d) => {
                out.push_str("\"0x");
                if !d.is_empty() && d.len() < 32 {
                    for _ in 0..(32 - d.len()) {
                        out.push_str("00");
                    }
                }
                push_hex(out, d);
                out.push('"');
            }
        }
        let _ = write!(out, r#","index":{},"topics":["#, l.index);
        for (i, t) in l.topics.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\"0x");
            push_hex(out, t);
            out.push('"');
        }
        out.push_str(r#"],"block_hash":"0x"#);
        let bn = l.block_number.to_be_bytes();
        for i in 0..6u8 {
            let mut b = bn;
            b[0] ^= 0xa0 | i;
            push_hex(out, &b);
        }
        let _ = write!(out, r#"","block_number":{},"root_contract_id":"#, l.block_number);
        match &l.root_contract_id {
            None => {
                out.push('"');
                out.push_str(&self.contract_id);
                out.push('"');
            }
            Some(s) if s.is_empty() => out.push_str("null"),
            Some(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        }
        let _ = write!(
            out,
            r#","timestamp":"{}.{:09}","transaction_hash":"0x"#,
            l.timestamp.0, l.timestamp.1
        );
        push_hex(out, &l.transaction_hash);
        let _ = write!(out, r#"","transaction_index":{}}}"#, l.transaction_index);
    }
}

fn parse_topic(v: &str) -> Option<[u8; 32]> {
    let h = v.strip_prefix("0x").unwrap_or(v);
    if h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{:0>64}", h);
    let mut t = [0u8; 32];
    hex::decode_to_slice(padded, &mut t).ok()?;
    Some(t)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// Tiny deterministic RNG (splitmix64) for the history generator: stable across crate versions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
