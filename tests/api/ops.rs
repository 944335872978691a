//! Operations (issue 4, SPEC §3 and §8), against the REAL binary: the systemd unit verifies and
//! is sandboxed, the daemon speaks the sd_notify protocol in the right order, SIGTERM stops it
//! cleanly mid-backfill with whole pages committed, `check` names exactly what is broken, no
//! secret or URL signature reaches the logs at any level, and the database is private.
//!
//! Every child gets a cleared environment: loopback-only config, static S3 credentials in
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the EC2 metadata lookup off and no AWS config
//! files, so nothing can reach a non-loopback address or read the host's credentials.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::support::app::Config;
use crate::support::mirror::{self, FakeMirror, parse_timestamp};
use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::{assert_same, sorted, stored_cursor, stored_rejections, stored_submissions};

const BIN: &str = env!("CARGO_BIN_EXE_weights-watcher");
const START: u64 = 1_700_000_000;
/// Bound on every wait for a condition (never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);
/// SPEC §8: SIGTERM ends the process with exit 0 within 5 s.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Helpers: the real binary as a child process
// ---------------------------------------------------------------------------------------------

/// A child's environment from scratch: nothing inherited (no stray `AWS_*`, `WW_*`,
/// `NOTIFY_SOCKET` or `RUST_LOG`), and AWS configuration pointed at empty files.
fn isolate(cmd: &mut Command, home: &Path, secret: &str) {
    for file in ["aws-config", "aws-credentials"] {
        std::fs::write(home.join(file), b"").expect("write an empty AWS config file");
    }
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
}

/// `weights-watcher --config CONFIG ARGS…`, isolated.
fn binary(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    isolate(&mut cmd, config.parent().expect("config has a directory"), SECRET_KEY);
    cmd
}

/// The same through `/bin/sh -c 'PRELUDE; exec BIN …'`, for what must happen in the child
/// itself before the binary starts (`WATCHDOG_PID=$$`: the pid is only known in there).
fn binary_after(prelude: &str, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--config")
        .arg(config)
        .args(args);
    isolate(&mut cmd, config.parent().expect("config has a directory"), SECRET_KEY);
    cmd
}

/// A running child whose stdout and stderr are captured whole.
struct Daemon {
    child: Child,
    pid: u32,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// How a child ended.
struct Ended {
    status: ExitStatus,
    /// From SIGTERM (or from the start, for a command) to exit.
    took: Duration,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn capture(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
) -> (Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let task = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = vec![0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().expect("capture lock").extend_from_slice(&chunk[..n]);
        }
    });
    (buf, task)
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn the weights-watcher binary");
        let pid = child.id().expect("child pid");
        let (stdout, out_task) = capture(child.stdout.take());
        let (stderr, err_task) = capture(child.stderr.take());
        Self {
            child,
            pid,
            stdout,
            stderr,
            readers: vec![out_task, err_task],
        }
    }

    fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("capture lock")).into_owned()
    }

    /// Panics with the captured stderr if the child already exited.
    fn assert_alive(&mut self, while_: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "weights-watcher exited ({status}) while {while_}; stderr:\n{}",
                self.stderr_so_far()
            );
        }
    }

    async fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Sends SIGTERM and waits (bounded) for the exit; `took` is SIGTERM-to-exit.
    async fn terminate(self) -> Ended {
        self.sigterm().await;
        self.wait_from(Instant::now()).await
    }

    /// Waits for the exit (it must come within `PATIENCE`), then for all output.
    async fn wait_from(mut self, since: Instant) -> Ended {
        let status = match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(s) => s.expect("wait for the child"),
            Err(_) => panic!("weights-watcher did not exit; stderr:\n{}", self.stderr_so_far()),
        };
        let took = since.elapsed();
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().expect("capture lock")).into_owned();
        Ended {
            status,
            took,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }
}

/// Runs a command to completion (bounded).
async fn run_to_end(cmd: Command) -> Ended {
    Daemon::spawn(cmd).wait_from(Instant::now()).await
}

/// A loopback port for the daemon, told up front (READY has to be checked against a known
/// address). Taken below the kernel's ephemeral range: a port from `bind(0)` could be handed
/// to another test's socket or outgoing connection before the daemon binds it; one down here
/// only to the same random draw.
fn free_port() -> u16 {
    use rand::Rng;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(10_001);
    let mut rng = rand::rng();
    for _ in 0..1_000 {
        let port = rng.random_range(10_000..ephemeral_low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 10000 and {ephemeral_low}")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Polls `probe` until it returns `Some`, failing after `PATIENCE` with `what`.
async fn wait_for<T, F, Fut>(daemon: &mut Daemon, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        daemon.assert_alive(&format!("waiting for {what}"));
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stderr:\n{}",
            daemon.stderr_so_far()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET `url` → (status, JSON or Null).
async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// A fake mirror, an S3 server, a temp dir and a config for the real binary on a known port.
struct World {
    mirror: FakeMirror,
    s3: S3Server,
    dir: tempfile::TempDir,
    config: Config,
    port: u16,
}

impl World {
    async fn new() -> Self {
        let mirror = FakeMirror::start().await;
        let s3 = S3Server::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(&mirror, Some(&s3), dir.path());
        let port = free_port();
        config.set("http", "listen", &format!("\"127.0.0.1:{port}\""));
        Self {
            mirror,
            s3,
            dir,
            config,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("ww.db")
    }

    fn write_config(&self) -> PathBuf {
        self.config.write(self.dir.path())
    }
}

// ---------------------------------------------------------------------------------------------
// a. The systemd unit
// ---------------------------------------------------------------------------------------------

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    match std::process::Command::new("systemd-analyze").args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze is not installed: it comes with Debian's `systemd` package, which \
             .ci/run installs (`apt-get install systemd`)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

#[test]
fn systemd_unit_verifies_and_its_exposure_is_at_most_2() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/weights-watcher.service");
    let unit = std::fs::read_to_string(&unit_path).expect("read deploy/weights-watcher.service");

    // `verify` checks that ExecStart's binary exists: point it at the one cargo just built.
    const INSTALLED: &str = "/usr/local/bin/weights-watcher";
    assert!(
        unit.contains(&format!("ExecStart={INSTALLED} ")),
        "ExecStart must run {INSTALLED}"
    );
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=weights-watcher",
        "EnvironmentFile=-/etc/weights-watcher/credentials.env",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "UMask=0077",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("weights-watcher.service");
    std::fs::write(&copy, unit.replace(INSTALLED, BIN)).expect("write the unit copy");
    let verify = systemd_analyze(&["verify", copy.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    eprintln!("systemd-analyze verify: {}; stderr: {stderr:?}", verify.status);
    assert!(verify.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // verify exits 0 on mere warnings; any that mention our unit count as failures (warnings
    // about the host's other units are not ours to fix).
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("weights-watcher")).collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify warns about the unit:\n{}",
        ours.join("\n")
    );

    let security = systemd_analyze(&["security", "--offline=true", unit_path.to_str().expect("utf-8 path")]);
    let out = String::from_utf8_lossy(&security.stdout);
    let marker = "Overall exposure level for weights-watcher.service:";
    let figure: f64 = out
        .lines()
        .find_map(|l| l.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure in systemd-analyze security output:\n{out}\n{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    eprintln!("systemd-analyze security --offline=true: exposure {figure}");
    let open: Vec<&str> = out.lines().filter(|l| l.starts_with('✗')).collect();
    eprintln!("remaining exposure:\n{}", open.join("\n"));
    assert!(figure <= 2.0, "exposure {figure} is above 2.0:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// b. sd_notify: READY after HTTP answers, watchdog pings, STOPPING on SIGTERM
// ---------------------------------------------------------------------------------------------

async fn next_notification(socket: &tokio::net::UnixDatagram, daemon: &mut Daemon, what: &str) -> String {
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            Ok(r) => {
                let n = r.expect("receive a notification");
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            Err(_) => {
                daemon.assert_alive(&format!("waiting for {what}"));
                assert!(Instant::now() < deadline, "no {what} notification");
            }
        }
    }
}

#[tokio::test]
async fn notify_socket_gets_ready_after_http_then_watchdog_then_stopping() {
    let world = World::new().await;
    let config = world.write_config();
    let socket_path = world.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("bind the notify socket");

    // systemd sets WATCHDOG_PID to the service's pid; sd-notify's `watchdog_enabled` ignores
    // WATCHDOG_USEC without it, so the child sets it to its own pid before exec.
    let mut cmd = binary_after("export WATCHDOG_PID=$$", &config, &["run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "400000");
    let mut daemon = Daemon::spawn(cmd);

    let first = next_notification(&socket, &mut daemon, "READY=1").await;
    assert_eq!(first.trim_end(), "READY=1", "the first notification must be READY=1");
    // By the time READY=1 arrives the HTTP port answers and the migrations ran.
    let (status, body) = get_json(&http(), &world.url("/healthz"))
        .await
        .expect("/healthz answers as soon as READY=1 is sent");
    assert_eq!((status, body), (200, json!({ "status": "ok" })));
    assert_eq!(stored_cursor(&world.db()).await, None, "the migrated schema is there");

    for n in 1..=2 {
        let m = next_notification(&socket, &mut daemon, "WATCHDOG=1").await;
        assert_eq!(m.trim_end(), "WATCHDOG=1", "watchdog ping {n}");
    }

    daemon.sigterm().await;
    let since = Instant::now();
    let stopping = loop {
        let m = next_notification(&socket, &mut daemon, "STOPPING=1").await;
        if m.trim_end() != "WATCHDOG=1" {
            break m;
        }
    };
    assert_eq!(stopping.trim_end(), "STOPPING=1");
    let ended = daemon.wait_from(since).await;
    assert_eq!(
        ended.status.code(),
        Some(0),
        "exit 0 after SIGTERM; stderr:\n{}",
        ended.stderr
    );
    eprintln!("notify: READY, 2 x WATCHDOG, STOPPING; exit 0 after {:?}", ended.took);
}

// ---------------------------------------------------------------------------------------------
// c. SIGTERM mid-backfill against a slow mirror
// ---------------------------------------------------------------------------------------------

fn position(timestamp: &str, index: u32) -> ((u64, u32), u32) {
    (parse_timestamp(timestamp).expect("a mirror timestamp"), index)
}

#[tokio::test]
async fn sigterm_mid_backfill_exits_0_within_5s_with_whole_pages_committed() {
    const PAGE: usize = 100;
    let mut world = World::new().await;
    let (logs, expected, poisoned) = mirror::history(41, 5_000, START, 30 * 86_400);
    world.mirror.push_many(logs.clone());
    world.mirror.set_latency(Duration::from_millis(200));
    world.config.set("mirror", "page_limit", &PAGE.to_string());
    let config = world.write_config();
    let mut daemon = Daemon::spawn(binary(&config, &["run"]));

    // Three requests seen: two pages committed, the third in flight behind the latency.
    let mirror = &world.mirror;
    wait_for(&mut daemon, "the third page request", move || async move {
        (mirror.request_count() >= 3).then_some(())
    })
    .await;
    let ended = daemon.terminate().await;
    eprintln!(
        "mid-backfill SIGTERM: exit {:?} after {:?}",
        ended.status.code(),
        ended.took
    );
    assert_eq!(
        ended.status.code(),
        Some(0),
        "exit 0 after SIGTERM; stderr:\n{}",
        ended.stderr
    );
    assert!(
        ended.took <= SHUTDOWN_BOUND,
        "SIGTERM to exit took {:?}, over the SPEC's 5 s",
        ended.took
    );

    let cursor = stored_cursor(&world.db()).await.expect("at least one page committed");
    let (ts, index) = cursor.split_once('/').expect("cursor is timestamp/index");
    let cursor = position(ts, index.parse().expect("cursor index"));
    let covered = logs.iter().take_while(|l| (l.timestamp, l.index) <= cursor).count();
    assert!(
        covered > 0 && covered < logs.len(),
        "stopped mid-backfill ({covered} logs)"
    );
    assert_eq!(
        (logs[covered - 1].timestamp, logs[covered - 1].index),
        cursor,
        "the cursor is a served log"
    );
    assert_eq!(
        covered % PAGE,
        0,
        "the cursor ends a whole page ({covered} logs covered)"
    );
    let want: Vec<_> = expected
        .into_iter()
        .filter(|e| position(&e.timestamp, e.index) <= cursor)
        .collect();
    assert_same(
        &stored_submissions(&world.db()).await,
        &want,
        "stored submissions vs the history up to the cursor",
    );
    let want_rejected: Vec<_> = poisoned
        .into_iter()
        .filter(|(t, i)| position(t, *i) <= cursor)
        .collect();
    assert_eq!(stored_rejections(&world.db()).await, sorted(want_rejected));
    eprintln!(
        "cursor after {covered} logs ({} pages), {} submissions stored",
        covered / PAGE,
        want.len()
    );
}

// ---------------------------------------------------------------------------------------------
// d. `check`
// ---------------------------------------------------------------------------------------------

/// Runs `check` on a working world changed by `breakage`, with `secret` as the S3 secret.
async fn check(secret: &str, breakage: impl FnOnce(&World, &mut Config)) -> Ended {
    let mut world = World::new().await;
    let (logs, expected, _) = mirror::history(5, 40, START, 86_400);
    world.mirror.push_many(logs);
    assert!(!expected.is_empty());
    // A working setup has a migrated database (`check` reports pending migrations).
    let migrated = run_to_end(binary(&world.write_config(), &["migrate"])).await;
    assert_eq!(migrated.status.code(), Some(0), "migrate:\n{}", migrated.stderr);
    let mut config = world.config.clone();
    // `check` tries each request once: give it a slow machine's patience.
    config.set("mirror", "request_timeout", "\"10s\"");
    breakage(&world, &mut config);
    world.config = config;
    let path = world.write_config();
    let mut cmd = binary(&path, &["check"]);
    cmd.env("AWS_SECRET_ACCESS_KEY", secret);
    let ended = run_to_end(cmd).await;
    eprintln!("check → {}\n{}{}", ended.status, ended.stdout, ended.stderr);
    assert!(
        !ended.all_output().contains(SECRET_KEY) && !ended.all_output().contains(secret),
        "check printed the secret key"
    );
    ended
}

/// Asserts `check` failed (exit 1) on exactly the `broken` line, whose detail mentions `says`.
fn assert_names(ended: &Ended, broken: &str, says: &str) {
    assert_eq!(ended.status.code(), Some(1), "check must exit 1");
    let lines: Vec<&str> = ended.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per check");
    let failed: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "only the broken part fails: {failed:?}");
    let line = failed[0];
    assert!(
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
            .starts_with(broken),
        "the failing line names {broken}: {line}"
    );
    assert!(line.contains(says), "the failing line says {says:?}: {line}");
}

#[tokio::test]
async fn check_passes_on_a_working_setup_with_one_line_per_check() {
    let ended = check(SECRET_KEY, |_, _| {}).await;
    assert_eq!(ended.status.code(), Some(0), "check must pass:\n{}", ended.all_output());
    let names: Vec<String> = ended
        .stdout
        .lines()
        .map(|l| {
            assert!(l.starts_with("ok "), "every check passes: {l}");
            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        })
        .collect();
    assert_eq!(names.len(), 4, "one line per check:\n{}", ended.stdout);
    for (line, name) in names
        .iter()
        .zip(["configuration", "database", "mirror node", "storage"])
    {
        assert!(line.starts_with(name), "{line:?} should be the {name} check");
    }
    assert!(
        names[2].contains("newest log at"),
        "the mirror line gives the newest log: {}",
        names[2]
    );
}

#[tokio::test]
async fn check_names_bad_credentials() {
    let ended = check("not-the-secret-key-0000000000000000000000", |_, _| {}).await;
    assert_names(&ended, "storage", "credentials");
}

#[tokio::test]
async fn check_names_a_missing_bucket() {
    let ended = check(SECRET_KEY, |_, c| {
        c.set("storage", "bucket", "\"no-such-bucket\"");
    })
    .await;
    assert_names(&ended, "storage", "no-such-bucket does not exist");
}

#[tokio::test]
async fn check_names_an_unknown_contract() {
    let ended = check(SECRET_KEY, |_, c| {
        c.set("mirror", "contract", "\"0.0.424242\"");
    })
    .await;
    assert_names(&ended, "mirror node", "contract 0.0.424242 not found");
}

#[tokio::test]
async fn check_names_an_unreachable_mirror() {
    // Bound but never listening for the whole test: connections are refused, and no other
    // test's server can take the port meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let closed = socket.local_addr().expect("addr").port();
    let ended = check(SECRET_KEY, |_, c| {
        c.set("mirror", "base_url", &format!("\"http://127.0.0.1:{closed}\""));
    })
    .await;
    drop(socket);
    assert_names(&ended, "mirror node", "unreachable");
}

#[tokio::test]
async fn check_names_an_unwritable_database_path() {
    // Tests run as root, which file modes do not stop: a path whose parent is a regular file
    // cannot be created by anyone.
    let ended = check(SECRET_KEY, |w, c| {
        let file = w.dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").expect("write a file");
        c.set(
            "database",
            "path",
            &format!("{:?}", file.join("ww.db").display().to_string()),
        );
    })
    .await;
    assert_names(&ended, "database", "a-file/ww.db");
}

// ---------------------------------------------------------------------------------------------
// e. Secrets never logged, at any level
// ---------------------------------------------------------------------------------------------

fn object_bytes(hash: &str) -> Vec<u8> {
    format!("weights of {hash}\n").repeat(4).into_bytes()
}

fn signature_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    let (_, signature) = url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .unwrap_or_else(|| panic!("{url} has no X-Amz-Signature"));
    assert!(signature.len() >= 64, "a SigV4 signature is 64 hex digits");
    signature.into_owned()
}

/// Every URL the API hands out for task 7 and its hash `weights-7-a`, by every route.
async fn urls_from_every_route(world: &World) -> Vec<String> {
    let client = http();
    let mut urls = Vec::new();
    let (status, task) = get_json(&client, &world.url("/v1/tasks/7/weights"))
        .await
        .expect("task");
    assert_eq!(status, 200, "{task}");
    for w in task["weights"].as_array().expect("weights") {
        urls.push(w["url"].as_str().expect("a url").to_owned());
    }
    let (status, weight) = get_json(&client, &world.url("/v1/weights/weights-7-a"))
        .await
        .expect("weight");
    assert_eq!(status, 200, "{weight}");
    urls.push(weight["url"].as_str().expect("a url").to_owned());
    let r = client
        .get(world.url("/v1/weights/weights-7-a/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 302);
    urls.push(r.headers()["location"].to_str().expect("an ASCII Location").to_owned());
    let r = client
        .post(world.url("/generate-presigned-url"))
        .json(&json!({ "hash": "weights-7-b" }))
        .send()
        .await
        .expect("generate-presigned-url");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("JSON");
    urls.push(body["presignedUrl"].as_str().expect("presignedUrl").to_owned());
    // The URLs are real: S3 accepts their signatures.
    for url in [&urls[0], urls.last().expect("urls")] {
        let r = client.get(url.as_str()).send().await.expect("GET the presigned URL");
        assert_eq!(r.status().as_u16(), 200, "S3 accepts {url}");
        assert!(
            [object_bytes("weights-7-a"), object_bytes("weights-7-b")]
                .contains(&r.bytes().await.expect("body").to_vec())
        );
    }
    urls
}

/// Ingest, every URL route, a wait past the 2 s TTL, every route again (refresh), SIGTERM:
/// returns the whole output and every signature the API handed out.
async fn whole_flow_at_trace(log_format: &str) -> (Ended, Vec<String>) {
    let mut world = World::new().await;
    world.mirror.push(mirror::weights_submitted(
        (START, 0),
        0,
        7,
        [0x17; 20],
        "weights-7-a",
        1,
    ));
    world.mirror.push(mirror::weights_submitted(
        (START + 5, 0),
        1,
        7,
        [0x18; 20],
        "weights-7-b",
        2,
    ));
    world.mirror.push(mirror::weights_submitted(
        (START + 9, 0),
        0,
        8,
        [0x19; 20],
        "weights-8-a",
        3,
    ));
    for hash in ["weights-7-a", "weights-7-b", "weights-8-a"] {
        world.s3.put(hash, &object_bytes(hash));
    }
    world.config.set("storage", "url_ttl", "\"2s\"");
    world.config.set("storage", "refresh_before", "\"1s\"");
    world.config.set("log", "format", &format!("{log_format:?}"));
    let config = world.write_config();
    let mut cmd = binary(&config, &["run"]);
    cmd.env("RUST_LOG", "trace");
    let mut daemon = Daemon::spawn(cmd);

    let client = &http();
    let url = &world.url("/v1/status");
    wait_for(&mut daemon, "the three submissions", move || async move {
        let (_, s) = get_json(client, url).await?;
        (s["submissions_indexed"] == 3).then_some(())
    })
    .await;
    let first = urls_from_every_route(&world).await;
    // Past the TTL: every cached URL is stale and must be presigned again.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let second = urls_from_every_route(&world).await;
    assert_ne!(
        signature_of(&first[0]),
        signature_of(&second[0]),
        "a URL past its TTL is refreshed"
    );
    let ended = daemon.terminate().await;
    assert_eq!(ended.status.code(), Some(0), "clean exit; stderr:\n{}", ended.stderr);
    let signatures = first.iter().chain(&second).map(|u| signature_of(u)).collect();
    (ended, signatures)
}

fn assert_no_secrets(ended: &Ended, signatures: &[String]) {
    let output = ended.all_output();
    assert!(!output.contains(SECRET_KEY), "the secret key was logged");
    assert!(!output.contains("X-Amz-Signature="), "a URL signature was logged");
    for s in signatures {
        assert!(!output.contains(s.as_str()), "the signature {s} was logged");
    }
    // Guard against a vacuous pass: TRACE really was on and the flow really was logged.
    assert!(
        output.contains("TRACE") || output.contains("\"level\":\"TRACE\""),
        "no TRACE line was captured"
    );
    eprintln!(
        "{} bytes of output at TRACE, {} signatures checked, none leaked",
        output.len(),
        signatures.len()
    );
}

#[tokio::test]
async fn trace_logs_never_contain_the_secret_key_or_a_signature() {
    let (ended, signatures) = whole_flow_at_trace("text").await;
    assert_no_secrets(&ended, &signatures);
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line_and_keep_secrets() {
    let (ended, signatures) = whole_flow_at_trace("json").await;
    assert_no_secrets(&ended, &signatures);
    let mut lines = 0;
    for line in ended.stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object() && v.get("level").is_some(), "a log object: {line}");
        lines += 1;
    }
    assert!(lines > 0, "no log line at all");
}

// ---------------------------------------------------------------------------------------------
// f. The database file is private
// ---------------------------------------------------------------------------------------------

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn database_files_are_created_with_mode_0600_whatever_the_umask() {
    let mut world = World::new().await;
    let db = world.dir.path().join("fresh").join("weights.db");
    std::fs::create_dir(db.parent().expect("parent")).expect("mkdir");
    world
        .config
        .set("database", "path", &format!("{:?}", db.display().to_string()));
    let config = world.write_config();

    // umask 000: the mode must come from the binary, not from a careful caller.
    let ended = run_to_end(binary_after("umask 000", &config, &["migrate"])).await;
    assert_eq!(ended.status.code(), Some(0), "migrate:\n{}", ended.stderr);
    assert_eq!(mode(&db), 0o600, "{} after migrate", db.display());

    // While the daemon runs in WAL mode its -wal and -shm files exist: private too.
    let mut daemon = Daemon::spawn(binary_after("umask 000", &config, &["run"]));
    let client = &http();
    let url = &world.url("/healthz");
    wait_for(&mut daemon, "/healthz", move || async move {
        get_json(client, url).await.filter(|(s, _)| *s == 200)
    })
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        eprintln!("{} is 0600", file.display());
    }
    let ended = daemon.terminate().await;
    assert_eq!(ended.status.code(), Some(0), "stderr:\n{}", ended.stderr);
}
