//! Hostile HTTP clients (issue 5, item 4): thousands of generated requests sent byte for byte
//! over raw TCP (so no client library normalises anything) against the running daemon, plus a
//! few slow clients that stall mid-request. The server must never answer 5xx, every error of a
//! request it routed must be `{"error": …}` JSON, it must answer normally afterwards, and no
//! malformed or unknown hash may ever reach the presigner.
//!
//! `TEST_FUZZ_REQUESTS` (default 10,000) and `TEST_FUZZ_SEED` run it bigger or differently by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weights_watcher::http;

use crate::support::app::{Config, TestApp, spawn_app};
use crate::support::mirror::{self, FakeMirror};
use crate::support::s3::S3Server;

const START: u64 = 1_700_000_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// Longest a single request may take: above the server's 10 s request timeout.
const PER_REQUEST: Duration = Duration::from_secs(20);

/// The daemon with a small indexed history; returns the indexed task ids and hashes.
async fn world() -> (
    FakeMirror,
    S3Server,
    tempfile::TempDir,
    TestApp,
    Vec<String>,
    BTreeSet<String>,
) {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, _) = mirror::history(5, 60, START, 86_400);
    mirror.push_many(logs);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path());
    let app = spawn_app(&config, Some(&s3)).await;
    let total = expected.len() as i64;
    app.wait_for_status("the backfill", |s| s["submissions_indexed"] == total)
        .await;
    let tasks: BTreeSet<String> = expected.iter().map(|e| e.task_id.clone()).collect();
    let hashes: BTreeSet<String> = expected.iter().map(|e| e.hash.clone()).collect();
    // Ingest presigns each new hash; let the counter settle before anyone compares it.
    let mut last = app.metrics.presigns.get();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = app.metrics.presigns.get();
        if now == last {
            break;
        }
        last = now;
    }
    (mirror, s3, dir, app, tasks.into_iter().collect(), hashes)
}

/// One generated request and what the generator knows about it.
struct Generated {
    bytes: Vec<u8>,
    /// Syntactically valid HTTP/1.1 that reaches the router (so its errors must be JSON).
    /// `false` for garbage the HTTP parser itself must refuse (hyper answers those with an
    /// empty 4xx before any route is involved).
    routed: bool,
    /// HEAD: the answer has no body to check.
    head: bool,
    /// A body far over the limit: the server may answer 413 and close before reading it all,
    /// which can reset the connection under our feet.
    oversize: bool,
}

/// Hashes that must never be presigned: malformed ones (400) and well-formed unknown ones (404).
/// Everything is already in path form (percent-encoded where needed); `raw_bytes` ones contain
/// bytes that are not valid in a URI at all.
fn hostile_hash(rng: &mut StdRng, known: &BTreeSet<String>) -> String {
    const FIXED: &[&str] = &[
        "..",
        ".",
        "../x",
        "..%2Fx",
        "..%2fx",
        "%2e%2e",
        "%2E%2E",
        "%2e",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "a%2Fb",
        "a%2fb",
        "a%5cb",
        "..%5c..%5cwindows",
        "%00",
        "a%00b",
        "%c0%ae%c0%ae",
        "%c0%af",
        "%e0%80%ae",
        "%f0%80%80%ae",
        "%ff%fe",
        "%80",
        "%e2%80%ae",
        "%20",
        "a%20b",
        "%",
        "%g0",
        "%2",
        "a%",
        "%0a",
        "%0d%0a",
        "x%3Fy",
        "x%23y",
        "a;b",
        "a,b",
        "a:b",
        "a@b",
        "~",
        "*",
        "%2A",
        "%C3%A9",
        "caf%C3%A9",
        "not-on-chain",
        "unknown-hash",
        "UNKNOWN",
        "...",
        "....",
        "a.b.c",
        "-",
        "_",
    ];
    let h = match rng.random_range(0..10) {
        0..=4 => (*FIXED.choose(rng).expect("non-empty")).to_owned(),
        5 => "x".repeat(*[256, 257, 1_000, 10_000].choose(rng).expect("non-empty")),
        6 => {
            // Random characters of the hash alphabet (well-formed but unknown).
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
            let n = rng.random_range(1..=300);
            (0..n)
                .map(|_| *alphabet.choose(rng).expect("non-empty") as char)
                .collect()
        }
        7 => {
            // Random percent-encoded bytes.
            let n = rng.random_range(1..=40);
            (0..n).map(|_| format!("%{:02X}", rng.random::<u8>())).collect()
        }
        8 => {
            // A valid-looking hex hash (like the indexed ones) that was never indexed.
            let mut s = String::new();
            for _ in 0..4 {
                s.push_str(&format!("{:016x}", rng.random::<u64>()));
            }
            s
        }
        _ => {
            // Random printable ASCII that is legal in a request target.
            let n = rng.random_range(1..=64);
            (0..n)
                .map(|_| {
                    let c = rng.random_range(0x21u8..0x7f);
                    if c == b'?' || c == b'#' || c == b'/' {
                        'q'
                    } else {
                        c as char
                    }
                })
                .collect()
        }
    };
    if known.contains(&h) { format!("{h}-unknown") } else { h }
}

fn task_segment(rng: &mut StdRng, tasks: &[String]) -> String {
    match rng.random_range(0..12) {
        0..=3 => tasks.choose(rng).expect("tasks").clone(),
        4 => format!("000{}", tasks.choose(rng).expect("tasks")),
        5 => rng.random::<u64>().to_string(),
        6 => "9".repeat(*[78, 79, 200, 10_000].choose(rng).expect("non-empty")),
        7 => (*[
            "-1", "+1", "1.5", "0x1", "1e3", "%2D1", "%31", "%34%32", "1%00", "%00", "", "%D9%A3", "%201",
        ]
        .choose(rng)
        .expect("non-empty"))
        .to_owned(),
        8 => "0".repeat(rng.random_range(1..5_000)),
        _ => {
            let mut r = StdRng::seed_from_u64(rng.random());
            hostile_hash(&mut r, &BTreeSet::new())
        }
    }
}

const LIMITS: &[&str] = &[
    "0",
    "1",
    "2",
    "50",
    "500",
    "501",
    "-1",
    "+1",
    "1.0",
    "1e2",
    "",
    "abc",
    "18446744073709551616",
    "4294967297",
    "%00",
    "1%20",
    "%31",
    "0x10",
    "%D9%A3",
];

fn limit(rng: &mut StdRng) -> &'static str {
    LIMITS.choose(rng).expect("non-empty")
}

fn query(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=2 => String::new(),
        3..=5 => format!("?limit={}", limit(rng)),
        6 => format!("?limit={}&limit={}", limit(rng), limit(rng)),
        7 => format!("?other=1&limit={}&x", limit(rng)),
        8 => format!("?{}", "a=b&".repeat(rng.random_range(1..2_000))),
        _ => (*[
            "?",
            "?&&&==",
            "?%zz",
            "?limit",
            "?=1",
            "?limit=%",
            "?%00=%00",
            "?;limit=1",
        ]
        .choose(rng)
        .expect("non-empty"))
        .to_owned(),
    }
}

/// A path, `routed` = whether it is valid in an HTTP request target.
fn path(rng: &mut StdRng, tasks: &[String], known: &BTreeSet<String>) -> (Vec<u8>, bool) {
    let p = match rng.random_range(0..20) {
        0..=3 => format!("/v1/weights/{}", hostile_hash(rng, known)),
        4..=6 => format!("/v1/weights/{}/download", hostile_hash(rng, known)),
        7..=9 => format!("/v1/tasks/{}/weights", task_segment(rng, tasks)),
        10 => format!("/v1/tasks{}", query(rng)),
        11 => (*[
            "/v1/status",
            "/healthz",
            "/readyz",
            "/metrics",
            "/generate-presigned-url",
            "/",
            "*",
        ]
        .choose(rng)
        .expect("non-empty"))
        .to_owned(),
        12 => {
            // Mutated known routes: dot segments, doubled or trailing slashes, case, encodings.
            (*[
                "/v1/weights/x/../../tasks",
                "/v1/./status",
                "//v1/status",
                "/v1//tasks",
                "/v1/status/",
                "/V1/STATUS",
                "/v1/tasks/",
                "/v1/tasks//weights",
                "/v1/weights//download",
                "/v1/weights/a/b",
                "/v1/weights/a/b/download",
                "/v1/tasks/1/weights/extra",
                "/v1/%74asks",
                "/%2e%2e/%2e%2e/etc/passwd",
                "/v1/weights/%2e%2e/%2e%2e/download",
                "/v1/tasks/1/weights%2F",
                "/healthz%00",
                "/healthz;x",
                "/generate-presigned-url/",
                "http://test/v1/status",
                "http://evil.example/v1/weights/..",
                "/v1/weights/x#frag",
            ]
            .choose(rng)
            .expect("non-empty"))
            .to_owned()
        }
        13 => format!("/{}", "a/".repeat(rng.random_range(1..20_000))),
        14 => format!("/v1/tasks/{}{}", task_segment(rng, tasks), query(rng)),
        15 => format!("/v1/weights/{}{}", hostile_hash(rng, known), query(rng)),
        16 => {
            // Raw bytes that are not allowed in a request target at all.
            let mut raw = b"/v1/weights/".to_vec();
            let bad: &[&[u8]] = &[
                b"\xff\xfe",
                b"\xc0\xae\xc0\xae",
                b"caf\xc3\xa9",
                b"\x00",
                b"a b",
                b"\x7f",
                b"\"<>",
            ];
            raw.extend_from_slice(bad.choose(rng).expect("non-empty"));
            return (raw, false);
        }
        17 => format!(
            "/v1/weights/{}",
            hostile_hash(rng, known).repeat(rng.random_range(1..50))
        ),
        _ => {
            // Random bytes mutated into a known route.
            let base = format!("/v1/tasks/{}/weights", task_segment(rng, tasks));
            let mut bytes = base.into_bytes();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random_range(0x21u8..0x7f);
            }
            let s = String::from_utf8(bytes).expect("ASCII");
            s.replace(['#', ' '], "_")
        }
    };
    (p.into_bytes(), true)
}

fn body(rng: &mut StdRng, known: &BTreeSet<String>) -> (Vec<u8>, bool) {
    let unknown = hostile_hash(rng, known);
    let b: Vec<u8> = match rng.random_range(0..16) {
        0..=2 => format!(r#"{{"hash":"{unknown}"}}"#).into_bytes(),
        3 => serde_json::to_vec(&serde_json::json!({ "hash": unknown })).expect("json"),
        4 => format!(r#"{{"hash":"{}"}}"#, "a".repeat(rng.random_range(10_000..100_000))).into_bytes(),
        5 => {
            let depth = rng.random_range(100..20_000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        6 => {
            let depth = rng.random_range(100..3_000);
            format!("{}\"x\"{}", r#"{"hash":"#.repeat(depth), "}".repeat(depth)).into_bytes()
        }
        7 => (0..rng.random_range(0..4_000)).map(|_| rng.random()).collect(),
        8 => Vec::new(),
        9 => (*[
            r#"{"hash":null}"#,
            r#"{"hash":7}"#,
            r#"{"hash":["a"]}"#,
            r#"{"hash":{"a":1}}"#,
            r#"{"hash":""}"#,
            r#"{"hash":"\u0000"}"#,
            r#"{"hash":"..\/x"}"#,
            r#"{"hash":"a\/b"}"#,
            r#"{"hash":"\ud800"}"#,
            r#"{"hash":"a","hash":"../x"}"#,
            r#"{"hash":"x"} trailing"#,
            r#"["hash","x"]"#,
            r#""hash""#,
            "null",
            "{",
            "{\"hash\":\"x\"",
            "\u{feff}{\"hash\":\"x\"}",
            "{'hash':'x'}",
            "hash=x",
            "1e999999",
        ]
        .choose(rng)
        .expect("non-empty"))
        .as_bytes()
        .to_vec(),
        10 => b"{\"hash\":\"\xff\xfe\"}".to_vec(),
        11 => format!(
            r#"{{"hash":"{unknown}","pad":"{}"}}"#,
            " ".repeat(rng.random_range(0..20_000))
        )
        .into_bytes(),
        12 => format!(r#"{{"{}":1}}"#, "k".repeat(rng.random_range(1..16_000))).into_bytes(),
        13 => vec![b'{'; rng.random_range(1..100)],
        14 => "9".repeat(rng.random_range(1..15_000)).into_bytes(),
        _ => format!(r#"{{"hash":"{unknown}"}}"#).into_bytes(),
    };
    let oversize = b.len() > 16 * 1024;
    (b, oversize)
}

fn generate(seed: u64, i: u64, tasks: &[String], known: &BTreeSet<String>) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (method, method_ok): (&[u8], bool) = match rng.random_range(0..40) {
        0..=19 => (b"GET", true),
        20..=27 => (b"POST", true),
        28 => (b"PUT", true),
        29 => (b"DELETE", true),
        30 => (b"PATCH", true),
        31 => (b"OPTIONS", true),
        32..=33 => (b"HEAD", true),
        34 => (b"TRACE", true),
        35 => (b"CONNECT", true),
        36 => (
            *[&b"FOO"[..], b"get", b"Get", b"X-CUSTOM", b"G3T", b"PROPFIND", b"BREW"]
                .choose(&mut rng)
                .expect("non-empty"),
            true,
        ),
        _ => (
            *[&b""[..], b"G ET", b"GET\x00", b"\xff\xfe", b"(GET)", b"GET/", b"\r\n"]
                .choose(&mut rng)
                .expect("non-empty"),
            false,
        ),
    };
    let (mut target, target_ok) = path(&mut rng, tasks, known);
    // POST goes mostly to the UI's endpoint, the only route with a body.
    if method == b"POST" && rng.random_bool(0.8) {
        target = b"/generate-presigned-url".to_vec();
    }
    // CONNECT needs an authority-form target; hyper refuses anything else.
    let connect = method == b"CONNECT";
    let mut routed = method_ok && target_ok && !connect && parseable_target(&target);
    let mut req = Vec::new();
    req.extend_from_slice(method);
    req.push(b' ');
    req.extend_from_slice(&target);
    req.extend_from_slice(b" HTTP/1.1\r\n");
    if rng.random_bool(0.97) {
        req.extend_from_slice(b"Host: test\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n");
    match rng.random_range(0..30) {
        0 => req.extend_from_slice(b"Origin: http://allowed.test:5173\r\n"),
        1 => req.extend_from_slice(b"Origin: http://evil.test\r\nAccess-Control-Request-Method: POST\r\n"),
        2 => req.extend_from_slice(b"Origin: null\r\nAccess-Control-Request-Method: DELETE\r\n"),
        3 => {
            // A huge header: within hyper's buffer it is routed, beyond it hyper answers 431.
            let n = *[4_000, 16_000, 60_000, 200_000, 1_000_000]
                .choose(&mut rng)
                .expect("non-empty");
            req.extend_from_slice(format!("X-Huge: {}\r\n", "h".repeat(n)).as_bytes());
        }
        4 => {
            let n = *[50, 99, 150, 1_000].choose(&mut rng).expect("non-empty");
            for k in 0..n {
                req.extend_from_slice(format!("X-Many-{k}: v\r\n").as_bytes());
            }
            if n > 90 {
                routed = false;
            }
        }
        5 => {
            req.extend_from_slice(b"X-Bad: \xff\xfe\x80\r\n");
        }
        6 => {
            req.extend_from_slice(b"Bad Header Name: x\r\n");
            routed = false;
        }
        7 => {
            req.extend_from_slice(b"Accept: */*\r\nUser-Agent: \x01\x02\r\n");
            routed = false;
        }
        _ => {}
    }
    // hyper's own limits, enforced before routing with an empty answer: a request target of
    // u16::MAX - 1 bytes or more (414), a head beyond its 400 KiB read buffer (431).
    let head_len = req.len() + 2;
    if target.len() >= usize::from(u16::MAX) - 1 || head_len >= 400 * 1024 {
        routed = false;
    }
    let head = method == b"HEAD";
    let mut oversize = false;
    let send_body = method == b"POST" || method == b"PUT" || method == b"PATCH" || rng.random_bool(0.05);
    if send_body {
        let (b, big) = body(&mut rng, known);
        oversize = big;
        let content_type: Option<&[u8]> = match rng.random_range(0..14) {
            0..=6 => Some(b"application/json"),
            7 => Some(b"application/json; charset=utf-8"),
            8 => Some(b"APPLICATION/JSON"),
            9 => Some(b"text/plain"),
            10 => Some(b"application/x-www-form-urlencoded"),
            11 => Some(b"multipart/form-data; boundary=xyz"),
            12 => Some(b"application/\xffjson"),
            _ => None,
        };
        if let Some(ct) = content_type {
            req.extend_from_slice(b"Content-Type: ");
            req.extend_from_slice(ct);
            req.extend_from_slice(b"\r\n");
        }
        match rng.random_range(0..10) {
            0 => {
                // Chunked, sometimes with a malformed chunk size.
                req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in b.chunks(1_000) {
                    req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    req.extend_from_slice(chunk);
                    req.extend_from_slice(b"\r\n");
                }
                if rng.random_bool(0.2) {
                    req.extend_from_slice(b"zz\r\n");
                } else {
                    req.extend_from_slice(b"0\r\n\r\n");
                }
            }
            1 => {
                // An unparseable or contradictory length: refused by the HTTP parser.
                let bad: &[u8] = [
                    &b"Content-Length: abc"[..],
                    b"Content-Length: -1",
                    b"Content-Length: 1, 2",
                ]
                .choose(&mut rng)
                .expect("non-empty");
                req.extend_from_slice(bad);
                req.extend_from_slice(b"\r\n\r\n");
                req.extend_from_slice(&b);
                routed = false;
            }
            _ => {
                req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
                req.extend_from_slice(&b);
            }
        }
    } else {
        req.extend_from_slice(b"\r\n");
    }
    Generated {
        bytes: req,
        routed,
        head,
        oversize,
    }
}

/// Whether the `http` crate (hence hyper) accepts `target` as a request target; hyper answers
/// any other with an empty 400 before routing (its character classes, http 1.x `uri/path.rs`).
fn parseable_target(target: &[u8]) -> bool {
    if target == b"*" {
        return true;
    }
    let path = match target.strip_prefix(b"http://") {
        Some(rest) => match rest.iter().position(|b| *b == b'/') {
            Some(i) => &rest[i..],
            None => return true,
        },
        None => target,
    };
    if path.first() != Some(&b'/') || std::str::from_utf8(path).is_err() {
        return false;
    }
    let mut in_query = false;
    for &b in path {
        let ok = match b {
            b'#' => return true,
            b'?' => {
                in_query = true;
                true
            }
            0x80..=0xff => true,
            _ if in_query => matches!(b, 0x21 | 0x24..=0x3b | 0x3d | 0x3f..=0x7e),
            _ => matches!(b, 0x21 | 0x22 | 0x24..=0x3b | 0x3d | 0x40..=0x5f | 0x61..=0x7a | 0x7b..=0x7e),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// What came back: status (None = the connection closed without an answer), headers, body.
struct Answer {
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Sends `bytes` and reads until the server closes (we always send `Connection: close`).
/// Writing and reading run concurrently, so a server that answers before reading a large
/// body (413) is seen answering.
async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> std::io::Result<Answer> {
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close early (413, 400): a failed write is not a failure by itself.
        let _ = write.write_all(&bytes).await;
        let _ = write.flush().await;
        write
    });
    let mut raw = Vec::new();
    let read_result = read.read_to_end(&mut raw).await;
    let _ = writer.await;
    if let Err(e) = read_result
        && raw.is_empty()
    {
        return Err(e);
    }
    Ok(parse_answer(&raw))
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, rest) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok());
    let mut content_type = None;
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-type" {
                content_type = Some(value.to_owned());
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Answer {
        status,
        content_type,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        data = &data[i + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

/// Checks one answer; `Err` describes what is wrong.
fn judge(g: &Generated, a: &Answer) -> Result<(), String> {
    let Some(status) = a.status else {
        // Only garbage the parser refuses, or an oversize body cut short, may go unanswered.
        return if g.routed && !g.oversize {
            Err("the connection closed without an answer".into())
        } else {
            Ok(())
        };
    };
    if status >= 500 {
        return Err(format!("answered {status}: {}", show(&a.body)));
    }
    if !(100..500).contains(&status) {
        return Err(format!("answered nonsense status {status}"));
    }
    if g.routed && status >= 400 {
        let is_json = a
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"));
        if !is_json {
            return Err(format!(
                "error {status} without a JSON content type ({:?}): {}",
                a.content_type,
                show(&a.body)
            ));
        }
        if !g.head {
            let v: Value = serde_json::from_slice(&a.body)
                .map_err(|e| format!("error {status} body is not JSON ({e}): {}", show(&a.body)))?;
            if v["error"].as_str().is_none_or(str::is_empty) {
                return Err(format!("error {status} body has no \"error\" message: {v}"));
            }
        }
    }
    Ok(())
}

/// A slow client: sends the first part, stalls, later sends the rest.
struct Slow {
    stream: TcpStream,
    rest: &'static [u8],
    /// Taken before connecting: the server's timers for this client start later.
    connected: Instant,
}

async fn slow_client(addr: SocketAddr, first: &'static [u8], rest: &'static [u8]) -> Slow {
    let connected = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(first).await.expect("write the first part");
    Slow {
        stream,
        rest,
        connected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_get_4xx_and_never_reach_the_presigner() {
    let (_mirror, _s3, _dir, app, tasks, known) = world().await;
    let total: u64 = std::env::var("TEST_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("TEST_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let presigns_before = app.metrics.presigns.get();

    // Slow clients, stalled for the whole run: half a request line, headers without the
    // blank line, a body that stops halfway, a single byte.
    let mut slow = vec![
        slow_client(app.addr, b"GET /v1/sta", b"tus HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await,
        slow_client(app.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n", b"Connection: close\r\n\r\n").await,
        slow_client(
            app.addr,
            b"POST /generate-presigned-url HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n{\"hash\":",
            b"\"slow-unknown-x\"}",
        )
        .await,
        slow_client(app.addr, b"G", b"ET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await,
    ];
    for _ in 0..4 {
        slow.push(
            slow_client(
                app.addr,
                b"GET /v1/tasks HTTP/1.1\r\n",
                b"Host: t\r\nConnection: close\r\n\r\n",
            )
            .await,
        );
    }

    let tasks = Arc::new(tasks);
    let known = Arc::new(known);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (tasks, known, next, addr) = (tasks.clone(), known.clone(), next.clone(), app.addr);
        workers.spawn(async move {
            let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= total {
                    break;
                }
                let g = generate(seed, i, &tasks, &known);
                if !g.routed {
                    *histogram.entry("(of which HTTP-level garbage)".into()).or_default() += 1;
                }
                let answer = tokio::time::timeout(PER_REQUEST, exchange(addr, g.bytes.clone())).await;
                let verdict = match answer {
                    Err(_) => {
                        *histogram.entry("timeout".into()).or_default() += 1;
                        Err(format!("no answer within {PER_REQUEST:?}"))
                    }
                    Ok(Err(e)) => {
                        *histogram.entry("reset".into()).or_default() += 1;
                        if g.routed && !g.oversize {
                            Err(format!("connection error {e}"))
                        } else {
                            Ok(())
                        }
                    }
                    Ok(Ok(a)) => {
                        let key = a.status.map_or_else(|| "closed".to_owned(), |s| s.to_string());
                        *histogram.entry(key).or_default() += 1;
                        judge(&g, &a)
                    }
                };
                if let Err(why) = verdict {
                    failures.push(format!(
                        "request #{i} (seed {seed:#x}): {why}\n    sent {}",
                        show(&g.bytes)
                    ));
                }
            }
            (histogram, failures)
        });
    }
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (h, f) = done.expect("worker does not panic");
        for (k, v) in h {
            *histogram.entry(k).or_default() += v;
        }
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "hostile HTTP: {total} requests in {:.1} s ({CONCURRENCY} in flight, seed {seed:#x}); status histogram: {histogram:?}",
        elapsed.as_secs_f64()
    );

    // The stalled clients did not block anyone (the run above finished); now they finish
    // their requests and are answered (or timed out with a JSON 408 if the run was long).
    let mut slow_statuses = Vec::new();
    let mut may_be_cut_off = Vec::new();
    for mut s in slow {
        let _ = s.stream.write_all(s.rest).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.stream.read_to_end(&mut raw)).await;
        let a = parse_answer(&raw);
        slow_statuses.push(a.status);
        // Stalled for a server timeout or longer: a cut-off is the slow-loris defence working.
        may_be_cut_off.push(s.connected.elapsed() >= http::HEADER_READ_TIMEOUT.min(http::REQUEST_TIMEOUT));
        if let Some(code) = a.status {
            assert!(code < 500, "a slow client got {code}: {}", show(&a.body));
        }
    }
    eprintln!("hostile HTTP: slow clients finished with {slow_statuses:?}");
    // The body of the third was an unknown hash: 404; the others are plain lookups. A client
    // stalled for longer than the server's 10 s request or header-read timeout may have been
    // disconnected instead (no answer, or a 408): that is the defence against slow-loris
    // clients. A cut-off before its timeout fails.
    for (i, s) in slow_statuses.iter().enumerate() {
        let answered = if i == 2 { *s == Some(404) } else { *s == Some(200) };
        let cut_off = may_be_cut_off[i] && matches!(s, None | Some(408));
        assert!(
            answered || cut_off,
            "slow client {i}: {slow_statuses:?}, stalled long enough to be cut off: {may_be_cut_off:?}"
        );
    }

    for f in failures.iter().take(20) {
        eprintln!("FAILURE {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} hostile requests were mishandled (first ones above)",
        failures.len()
    );
    assert_eq!(
        app.metrics.presigns.get(),
        presigns_before,
        "no malformed or unknown hash (nor a task lookup with fresh cached URLs) may reach the presigner"
    );

    // Still answering normally.
    assert_eq!(app.get("/healthz").await.0, 200);
    let hash = known.iter().next().expect("an indexed hash");
    let (code, body) = app.get(&format!("/v1/weights/{hash}")).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["url"].as_str().is_some_and(|u| u.contains("X-Amz-Signature=")));
    let (code, body) = app.get(&format!("/v1/tasks/{}/weights", tasks[0])).await;
    assert_eq!(code, 200, "{body}");
    app.stop().await;
}

/// The named cases of the issue, deterministic: `../x`, `%2e%2e`, `a/b` and a 10 kB string
/// get a JSON 400 (malformed) or 404 (unknown) on every route that takes a hash, and the
/// presign counter does not move.
#[tokio::test]
async fn adversarial_hashes_never_reach_the_presigner() {
    let (_mirror, _s3, _dir, app, _tasks, _known) = world().await;
    let before = app.metrics.presigns.get();
    let ten_kb = "x".repeat(10_000);
    let cases: Vec<(String, String, u16)> = vec![
        ("../x".into(), "..%2Fx".into(), 400),
        ("..".into(), "%2e%2e".into(), 400),
        (".".into(), "%2e".into(), 400),
        ("a/b".into(), "a%2Fb".into(), 400),
        ("a\0b".into(), "a%00b".into(), 400),
        ("\u{e9}".into(), "%C3%A9".into(), 400),
        (ten_kb.clone(), ten_kb.clone(), 400),
        ("not-on-chain".into(), "not-on-chain".into(), 404),
    ];
    for (raw, encoded, want) in &cases {
        for path in [
            format!("/v1/weights/{encoded}"),
            format!("/v1/weights/{encoded}/download"),
        ] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let a = exchange(app.addr, request.into_bytes()).await.expect("answer");
            assert_eq!(a.status, Some(*want), "{}: {}", show(path.as_bytes()), show(&a.body));
            let v: Value = serde_json::from_slice(&a.body).expect("JSON error");
            assert!(v["error"].is_string(), "{v}");
        }
        let body = serde_json::to_vec(&serde_json::json!({ "hash": raw })).expect("json");
        let mut request = format!(
            "POST /generate-presigned-url HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let a = exchange(app.addr, request).await.expect("answer");
        assert_eq!(
            a.status,
            Some(*want),
            "POST {}: {}",
            show(raw.as_bytes()),
            show(&a.body)
        );
    }
    // Unencoded slashes and dot segments sent byte for byte: never a lookup, never a presign.
    for path in [
        "/v1/weights/../x",
        "/v1/weights/a/b",
        "/v1/weights/../../download",
        "/v1/weights/./download",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let a = exchange(app.addr, request.into_bytes()).await.expect("answer");
        let code = a.status.expect("status");
        assert!((400..500).contains(&code), "{path}: {code}");
    }
    assert_eq!(app.metrics.presigns.get(), before, "nothing was presigned");
    app.stop().await;
}

/// Regression: a `Content-Type` that is not even visible ASCII (`application/\xffjson`) was
/// treated as no `Content-Type` at all and the body parsed as JSON; it is a wrong content
/// type like any other, so 415.
#[tokio::test]
async fn a_content_type_that_is_not_text_is_unsupported() {
    let (_mirror, _s3, _dir, app, _tasks, known) = world().await;
    let known = known.iter().next().expect("an indexed hash").clone();
    for (content_type, want) in [
        (&b"application/\xffjson"[..], 415),
        (b"application/json\xff", 415),
        (b"text/plain", 415),
        (b"application/json; charset=utf-8", 200),
        (b"Application/JSON", 200),
    ] {
        let body = format!(r#"{{"hash":"{known}"}}"#);
        let mut request =
            b"POST /generate-presigned-url HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: ".to_vec();
        request.extend_from_slice(content_type);
        request.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let a = exchange(app.addr, request).await.expect("answer");
        assert_eq!(a.status, Some(want), "{}: {}", show(content_type), show(&a.body));
        let v: Value = serde_json::from_slice(&a.body).expect("JSON");
        if want == 415 {
            assert!(v["error"].is_string(), "{v}");
        } else {
            assert_eq!(v["status"], "ok");
        }
    }
    app.stop().await;
}
