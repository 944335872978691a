//! The HTTP API against a real S3 server: every URL handed out downloads the object, only
//! indexed hashes are ever presigned, stale URLs are refreshed once, and bad input gets a
//! clear 4xx.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::{Config, TestApp, spawn_app, spawn_app_sweeping};
use crate::support::mirror::{self, FakeMirror};
use crate::support::s3::S3Server;
use crate::support::{open_db, stored_submissions, weight_hashes};

const START: u64 = 1_700_000_000;

fn object_bytes(hash: &str) -> Vec<u8> {
    format!("model weights for {hash}\n").repeat(3).into_bytes()
}

/// A mirror with `n` generated logs plus task 42's two submissions, every object uploaded.
async fn world(n: usize, tweak: impl FnOnce(&mut Config)) -> (FakeMirror, S3Server, tempfile::TempDir, TestApp) {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, _) = mirror::history(11, n, START, 10 * 86_400);
    mirror.push_many(logs);
    let t42 = (START + 20 * 86_400, 0);
    mirror.push(mirror::weights_submitted(t42, 0, 42, [0x42; 20], "weights-42-a", 1));
    mirror.push(mirror::weights_submitted(
        (t42.0 + 60, 0),
        3,
        42,
        [0x43; 20],
        "weights-42-b",
        2,
    ));
    for e in &expected {
        s3.put(&e.hash, &object_bytes(&e.hash));
    }
    s3.put("weights-42-a", &object_bytes("weights-42-a"));
    s3.put("weights-42-b", &object_bytes("weights-42-b"));
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::new(&mirror, Some(&s3), dir.path());
    tweak(&mut config);
    let app = spawn_app(&config, Some(&s3)).await;
    let total = expected.len() as i64 + 2;
    app.wait_for_status("the backfill", |s| s["submissions_indexed"] == total)
        .await;
    (mirror, s3, dir, app)
}

fn presigns(app: &TestApp) -> u64 {
    app.metrics.presigns.get()
}

#[tokio::test]
async fn every_url_the_api_hands_out_downloads_the_uploaded_bytes() {
    let (_mirror, _s3, dir, app) = world(400, |_| {}).await;
    let stored = stored_submissions(&dir.path().join("ww.db")).await;
    let mut by_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &stored {
        by_task.entry(s.task_id.clone()).or_default().push(s.hash.clone());
    }
    let (code, list) = app.get("/v1/tasks?limit=500").await;
    assert_eq!(code, 200);
    let tasks = list["tasks"].as_array().expect("tasks array");
    assert_eq!(tasks.len(), by_task.len(), "every task listed");
    assert_eq!(tasks[0]["task_id"], "42", "newest first");
    assert_eq!(tasks[0]["submissions"], by_task["42"].len());
    let s3_client = reqwest::Client::new();
    let mut downloads = 0;
    for (task, hashes) in &by_task {
        let (code, body) = app.get(&format!("/v1/tasks/{task}/weights")).await;
        assert_eq!(code, 200, "task {task}: {body}");
        assert_eq!(body["task_id"], *task);
        let weights = body["weights"].as_array().expect("weights");
        let got = weight_hashes(&body);
        assert_eq!(
            got,
            hashes.iter().map(String::as_str).collect::<Vec<_>>(),
            "oldest first"
        );
        for w in weights {
            let url = w["url"].as_str().expect("url");
            let response = s3_client.get(url).send().await.expect("download");
            assert_eq!(response.status(), 200, "presigned URL for {} works", w["hash"]);
            let bytes = response.bytes().await.expect("body");
            assert_eq!(
                bytes.as_ref(),
                object_bytes(w["hash"].as_str().unwrap_or_default()),
                "exact bytes"
            );
            downloads += 1;
        }
    }
    assert_eq!(downloads, stored.len());
    // The shape of one Weight.
    let (_, body) = app.get("/v1/tasks/42/weights").await;
    let w = body["weights"].as_array().and_then(|w| w.last()).expect("weights");
    assert_eq!(w["hash"], "weights-42-b");
    assert_eq!(w["trainer"], format!("0x{}", "43".repeat(20)));
    assert_eq!(w["log_index"], 3);
    assert_eq!(w["fields"], json!({"timestamp": "2"}));
    assert!(
        w["consensus_timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(".000000000"))
    );
    assert!(w["transaction_hash"].as_str().is_some_and(|t| t.len() == 66));
    let expires = w["expires_at"].as_str().expect("expires_at");
    assert!(
        humantime::parse_rfc3339(expires).is_ok() && expires.ends_with('Z'),
        "{expires}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_hashes_get_404_everywhere_and_urls_cannot_be_forged() {
    let (_mirror, s3, _dir, app) = world(20, |_| {}).await;
    s3.put("not-on-chain", b"secret");
    let before = presigns(&app);
    for path in ["/v1/weights/not-on-chain", "/v1/weights/not-on-chain/download"] {
        let (code, body) = app.get(path).await;
        assert_eq!(code, 404, "{path}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("not recorded")),
            "{body}"
        );
        assert!(!body.to_string().contains("X-Amz"), "no URL in a 404");
    }
    let r = app
        .http
        .post(format!("{}/generate-presigned-url", app.url))
        .json(&json!({"hash": "not-on-chain"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    assert_eq!(presigns(&app), before, "an unknown hash is never presigned");

    let (code, body) = app.get("/v1/weights/weights-42-a").await;
    assert_eq!(code, 200);
    let url = body["url"].as_str().expect("url").to_owned();
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.expect("get").status(), 200);
    // Alter the signature's last digit: the S3 server must refuse it.
    let mut tampered = url.clone();
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        client.get(&tampered).send().await.expect("get").status(),
        403,
        "tampered signature"
    );
    // Point the same signature at another key.
    let other = url.replace("weights-42-a", "not-on-chain");
    assert_eq!(
        client.get(&other).send().await.expect("get").status(),
        403,
        "signature bound to its key"
    );
    // The original bug: a plain object URL is refused.
    assert_eq!(
        client
            .get(s3.plain_url("weights-42-a"))
            .send()
            .await
            .expect("get")
            .status(),
        403,
        "unsigned"
    );
    let subs = body["submissions"].as_array().expect("submissions");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["task_id"], "42");
    assert_eq!(subs[0]["log_index"], 0);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_url_is_replaced_by_one_that_downloads() {
    let (_mirror, _s3, _dir, app) = world(5, |c| {
        c.set("storage", "url_ttl", "\"2s\"")
            .set("storage", "refresh_before", "\"1s\"");
    })
    .await;
    let client = reqwest::Client::new();
    let (_, body) = app.get("/v1/weights/weights-42-b").await;
    let first = body["url"].as_str().expect("url").to_owned();
    // Wait (bounded) until the S3 server itself says the first URL has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.get(&first).send().await.expect("get").status();
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(tokio::time::Instant::now() < deadline, "the URL never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, body) = app.get("/v1/weights/weights-42-b").await;
    assert_eq!(code, 200);
    let second = body["url"].as_str().expect("url");
    assert_ne!(second, first, "a fresh URL");
    assert_eq!(
        client.get(second).send().await.expect("get").status(),
        200,
        "the fresh URL downloads"
    );
    let r = app
        .http
        .get(format!("{}/v1/weights/weights-42-b/download", app.url))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let location = r.headers()["location"].to_str().expect("location");
    assert_eq!(client.get(location).send().await.expect("get").status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_lookups_of_a_stale_hash_presign_once() {
    let (_mirror, _s3, dir, app) = world(5, |_| {}).await;
    // Make the cached URL stale (inside refresh_before) behind the daemon's back.
    let pool = open_db(&dir.path().join("ww.db")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let n = sqlx::query("UPDATE presigned_urls SET expires_at = ? WHERE weights_hash = 'weights-42-a'")
        .bind(now + 10)
        .execute(&pool)
        .await
        .expect("update")
        .rows_affected();
    assert_eq!(n, 1, "ingest cached a URL");
    pool.close().await;
    let before = presigns(&app);
    let lookups = (0..100).map(|i| {
        let app = &app;
        async move {
            let path = if i % 2 == 0 {
                "/v1/weights/weights-42-a"
            } else {
                "/v1/tasks/42/weights"
            };
            app.get(path).await
        }
    });
    let results = futures_join_all(lookups).await;
    assert!(results.iter().all(|(code, _)| *code == 200));
    assert_eq!(presigns(&app) - before, 1, "100 concurrent lookups, one presign");
    let urls: std::collections::BTreeSet<String> = results
        .iter()
        .step_by(2)
        .map(|(_, b)| b["url"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(urls.len(), 1, "everyone got the one fresh URL");
    // Task lookups answered while refreshing (built row by row) and afterwards (rendered by
    // SQLite in one query) are the same document.
    let (_, settled) = app.get("/v1/tasks/42/weights").await;
    for (_, body) in results.iter().skip(1).step_by(2) {
        assert_eq!(body, &settled, "both paths render the same answer");
    }
    app.stop().await;
}

/// `join_all` without a futures dependency: spawn-free, polls all on this task.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future completed")).collect()
}

#[tokio::test]
async fn the_existing_ui_call_keeps_its_shape_and_errors() {
    let (_mirror, _s3, _dir, app) = world(5, |_| {}).await;
    let post = |body: reqwest::Body, content_type: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(format!("{}/generate-presigned-url", app.url))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("post");
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, body) = post(r#"{"hash":"weights-42-a"}"#.into(), "application/json").await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["hash"], "weights-42-a");
    assert!(
        body["presignedUrl"]
            .as_str()
            .is_some_and(|u| u.contains("X-Amz-Signature="))
    );
    for bad in [
        r#"{}"#,
        r#"{"hash":""}"#,
        r#"{"hash":null}"#,
        r#"{"hash":7}"#,
        r#"{"other":"x"}"#,
    ] {
        let (code, body) = post(bad.into(), "application/json").await;
        assert_eq!(
            (code, body),
            (400, json!({"error": "hash parameter required"})),
            "{bad}"
        );
    }
    let (code, body) = post("not json".into(), "application/json").await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("JSON")));
    let (code, body) = post(r#"{"hash":"../etc/passwd"}"#.into(), "application/json").await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = post(r#"{"hash":"unknown-hash"}"#.into(), "application/json").await;
    assert_eq!(code, 404);
    let (code, body) = post(r#"{"hash":"weights-42-a"}"#.into(), "text/plain").await;
    assert_eq!(code, 415);
    assert!(body["error"].is_string());
    let (code, body) = post(
        format!(r#"{{"hash":"{}"}}"#, "a".repeat(100_000)).into(),
        "application/json",
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert!(body["error"].is_string());
    let r = app
        .http
        .get(format!("{}/generate-presigned-url", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.expect("json")["error"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let (_mirror, _s3, _dir, app) = world(5, |_| {}).await;
    let preflight = |origin: &'static str| {
        let app = &app;
        async move {
            app.http
                .request(reqwest::Method::OPTIONS, format!("{}/generate-presigned-url", app.url))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .send()
                .await
                .expect("preflight")
        }
    };
    let ok = preflight("http://allowed.test:5173").await;
    assert_eq!(
        ok.headers().get("access-control-allow-origin").map(|v| v.to_str().ok()),
        Some(Some("http://allowed.test:5173"))
    );
    assert!(
        ok.headers()
            .get("access-control-allow-methods")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("POST"))
    );
    let other = preflight("http://evil.test").await;
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "another origin gets no CORS header"
    );
    for (origin, allowed) in [
        ("http://allowed.test:5173", true),
        ("http://allowed.test:5174", false),
        ("null", false),
    ] {
        let r = app
            .http
            .get(format!("{}/v1/tasks/42/weights", app.url))
            .header("origin", origin)
            .send()
            .await
            .expect("get");
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_task_weights_view_answers_in_the_sqlite3_shell() {
    let (_mirror, _s3, dir, app) = world(5, |_| {}).await;
    let db = dir.path().join("ww.db");
    let out = std::process::Command::new("sqlite3")
        .arg("-header")
        .arg(&db)
        .arg("SELECT * FROM task_weights WHERE task_id = 42;")
        .output()
        .expect("the sqlite3 shell is installed (.ci/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('|').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "task 42's two submissions: {text}");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name} in {header:?}"))
    };
    for row in &rows {
        assert_eq!(row[col("task_id")], "42");
        assert!(row[col("url")].starts_with("http://127.0.0.1:") && row[col("url")].contains("X-Amz-Signature="));
        let expires = row[col("expires_at")];
        assert!(
            humantime::parse_rfc3339(expires).is_ok(),
            "ISO-8601 expires_at: {expires}"
        );
        assert_eq!(row[col("url_valid")], "1");
    }
    assert_eq!(rows[0][col("weights_hash")], "weights-42-a");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_the_rest_of_the_api_answers() {
    let (_mirror, _s3, _dir, app) = world(30, |_| {}).await;
    let (code, body) = app.get("/v1/tasks/0042/weights").await;
    assert_eq!(
        (code, body["task_id"].clone()),
        (200, json!("42")),
        "task ids are normalised"
    );
    for (path, want) in [
        ("/v1/tasks/abc/weights", 400),
        ("/v1/tasks/-1/weights", 400),
        ("/v1/tasks/+1/weights", 400),
        ("/v1/tasks/1.5/weights", 400),
        ("/v1/tasks/999999/weights", 404),
        ("/v1/tasks?limit=0", 400),
        ("/v1/tasks?limit=501", 400),
        ("/v1/tasks?limit=x", 400),
        ("/v1/weights/unknown/download", 404),
        ("/nope", 404),
    ] {
        let (code, body) = app.get(path).await;
        assert_eq!(code, want, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: JSON error body"
        );
    }
    let long = format!("/v1/weights/{}", "x".repeat(10_000));
    assert_eq!(app.get(&long).await.0, 400);
    // Paths an HTTP client library would normalise, sent byte for byte.
    for (path, want) in [
        ("/v1/weights/..", 400),
        ("/v1/weights/.", 400),
        ("/v1/weights/%2e%2e", 400),
        ("/v1/weights/%2E%2E/download", 400),
        ("/v1/weights/a%2Fb", 400),
        ("/v1/weights/..%2Fx", 400),
        ("/v1/weights/%ff%fe", 400),
        ("/v1/tasks/%34%32/weights", 200),
    ] {
        let (code, body) = raw_get(app.addr, path).await;
        assert_eq!(code, want, "{path}: {body}");
        assert!(
            body.contains("\"error\"") || code == 200,
            "{path}: JSON error body: {body}"
        );
    }
    let (code, body) = app.get("/v1/tasks?limit=1").await;
    assert_eq!(code, 200);
    assert_eq!(body["tasks"].as_array().map(Vec::len), Some(1));
    let (code, body) = app.get("/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(body["contract"], "0.0.5005");
    assert_eq!(body["last_poll_ok"], true);
    assert!(body["cursor"]["timestamp"].is_string() && body["cursor"]["index"].is_u64());
    assert!(body["submissions_indexed"].as_i64().is_some_and(|n| n > 2));
    assert!(body["logs_rejected"].is_i64() && body["lag_seconds"].is_number() && body["last_poll_at"].is_string());
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "weights_watcher_submissions_indexed_total",
        "weights_watcher_logs_rejected_total",
        "weights_watcher_mirror_requests_total{outcome=\"ok\"}",
        "weights_watcher_poll_lag_seconds",
        "weights_watcher_presigns_total",
        "weights_watcher_url_cache_hits_total",
        "weights_watcher_url_cache_misses_total",
        "weights_watcher_http_requests_total{route=\"/v1/tasks/{task_id}/weights\",status=\"200\"}",
    ] {
        assert!(metrics.contains(name), "metrics expose {name}:\n{metrics}");
    }
    app.stop().await;
}

/// A GET sent byte for byte (no client-side path normalisation): (status, body).
pub async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn a_client_stalling_mid_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mirror = FakeMirror::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app(&Config::new(&mirror, None, dir.path()), None).await;
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    // Others are served meanwhile.
    assert_eq!(app.get("/healthz").await.0, 200);
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server closed the stalled connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "not before the header timeout ({waited:?})"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_cached_answer_never_hides_a_new_submission_or_a_stale_url() {
    let (mirror, s3, dir, app) = world(5, |_| {}).await;
    let (_, first) = app.get("/v1/tasks/42/weights").await;
    let (_, again) = app.get("/v1/tasks/42/weights").await;
    assert_eq!(first, again, "a warm answer is the same document");
    assert_eq!(first["weights"].as_array().map(Vec::len), Some(2));
    let (_, status) = app.get("/v1/status").await;
    let indexed = status["submissions_indexed"].as_i64().expect("count");
    s3.put("weights-42-c", &object_bytes("weights-42-c"));
    mirror.push(mirror::weights_submitted(
        (START + 30 * 86_400, 0),
        0,
        42,
        [0x44; 20],
        "weights-42-c",
        3,
    ));
    app.wait_for_status("the new submission", |s| s["submissions_indexed"] == indexed + 1)
        .await;
    let (_, after) = app.get("/v1/tasks/42/weights").await;
    assert_eq!(
        weight_hashes(&after),
        ["weights-42-a", "weights-42-b", "weights-42-c"],
        "the new submission shows at once"
    );
    // A URL made stale behind the cache's back (its expiry moved inside refresh_before) is
    // not served from memory: the write bumps nothing, but the answer's own deadline does.
    let pool = open_db(&dir.path().join("ww.db")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    sqlx::query("UPDATE presigned_urls SET expires_at = ? WHERE weights_hash = 'weights-42-a'")
        .bind(now + 5)
        .execute(&pool)
        .await
        .expect("update");
    pool.close().await;
    let before = presigns(&app);
    // The in-memory answer still carries the old expiry, so it may be served; but an answer
    // rendered from the database now refreshes the stale URL. Force a re-render with a write.
    mirror.push(mirror::weights_submitted(
        (START + 31 * 86_400, 0),
        0,
        43,
        [0x44; 20],
        "weights-43",
        3,
    ));
    app.wait_for_status("another submission", |s| s["submissions_indexed"] == indexed + 2)
        .await;
    let (_, refreshed) = app.get("/v1/tasks/42/weights").await;
    // One presign at ingest for weights-43, one refresh of weights-42-a.
    assert_eq!(presigns(&app) - before, 2, "the stale URL was presigned again");
    let expires = refreshed["weights"][0]["expires_at"].as_str().expect("expires_at");
    let expires = humantime::parse_rfc3339(expires).expect("rfc3339");
    assert!(
        expires > std::time::SystemTime::now() + Duration::from_secs(300),
        "at least refresh_before left"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_late_arrival_sweep_presigns_only_the_late_arrivals() {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    for i in 0..5 {
        let hash = format!("on-time-{i}");
        mirror.push(mirror::weights_submitted((START + i, 0), 0, 7, [7; 20], &hash, i));
        s3.put(&hash, &object_bytes(&hash));
    }
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path());
    let app = spawn_app_sweeping(&config, Some(&s3), Duration::from_millis(100)).await;
    app.wait_for_status("the first logs", |s| s["submissions_indexed"] == 5)
        .await;
    assert_eq!(presigns(&app), 5, "one presign per hash at ingest");
    let sweeps = || {
        mirror
            .requests()
            .iter()
            .filter(|r| r.path_and_query.contains("timestamp=lte:"))
            .count()
    };
    let wait_for_sweeps = |n: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while sweeps() < n {
            assert!(tokio::time::Instant::now() < deadline, "no sweep ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for_sweeps(3).await;
    assert_eq!(presigns(&app), 5, "sweeps over indexed logs presign nothing");

    // A log older than the cursor appears late: the sweep stores it and presigns its hash only.
    mirror.push(mirror::weights_submitted((START + 2, 500), 0, 8, [8; 20], "late", 9));
    s3.put("late", &object_bytes("late"));
    app.wait_for_status("the late arrival", |s| s["submissions_indexed"] == 6)
        .await;
    assert_eq!(presigns(&app), 6, "the late arrival was presigned at ingest");
    wait_for_sweeps(sweeps() + 3).await;
    assert_eq!(presigns(&app), 6, "and only once");
    let (code, body) = app.get("/v1/tasks/8/weights").await;
    assert_eq!(code, 200, "{body}");
    let url = body["weights"][0]["url"].as_str().expect("url");
    let response = reqwest::get(url).await.expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").as_ref(), object_bytes("late"));
    assert_eq!(presigns(&app), 6, "the lookup was a cache hit");
    app.stop().await;
}
