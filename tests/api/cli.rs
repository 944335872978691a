//! The real binary's command line: exit codes, the `run --once` line, `task`, `presign`, and
//! a clear message naming the file and key for every configuration mistake.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::app::Config;
use crate::support::mirror::{self, FakeMirror};
use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::weight_hashes;

/// The real binary with `config`, run from the config's directory (where the shipped config's
/// relative database path lands) and a clean environment.
fn command(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weights-watcher"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn");
    if let Some(dir) = config.parent().filter(|d| d.is_dir()) {
        cmd.current_dir(dir);
    }
    cmd
}

fn weights_watcher(config: &Path, args: &[&str]) -> Output {
    command(config, args).output().expect("run the binary")
}

/// Runs the binary in a blocking thread so the in-process fake servers keep serving.
async fn weights_watcher_async(config: &Path, args: &[&str]) -> Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weights_watcher(&config, &args)
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn run_once_prints_one_summary_line_and_task_prints_json() {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    let (logs, expected, poison) = mirror::history(21, 600, 1_650_000_000, 9 * 86_400);
    let last = logs
        .last()
        .map(|l| format!("{}/{}", l.timestamp_string(), l.index))
        .unwrap_or_default();
    mirror.push_many(logs);
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path()).write(dir.path());

    let out = weights_watcher_async(&config, &["run", "--once"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout,
        format!(
            "indexed {} submissions, rejected {} logs, cursor {last}\n",
            expected.len(),
            poison.len()
        ),
        "exactly one line on stdout"
    );
    let again = weights_watcher_async(&config, &["run", "--once"]).await;
    assert_eq!(
        text(&again.stdout),
        format!("indexed 0 submissions, rejected 0 logs, cursor {last}\n")
    );

    let task = &expected[0].task_id;
    let out = weights_watcher(&config, &["task", &format!("00{task}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("task prints JSON");
    assert_eq!(json["task_id"], *task);
    let hashes = weight_hashes(&json);
    let want: Vec<&str> = expected
        .iter()
        .filter(|e| e.task_id == *task)
        .map(|e| e.hash.as_str())
        .collect();
    assert_eq!(hashes, want);
    assert!(
        json["weights"][0]["url"]
            .as_str()
            .is_some_and(|u| u.contains("X-Amz-Signature=")),
        "presigned at ingest"
    );

    let out = weights_watcher(&config, &["task", "987654321"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no weights submitted for task 987654321"),
        "{}",
        text(&out.stderr)
    );
    let out = weights_watcher(&config, &["task", "-5"]);
    assert_eq!(out.status.code(), Some(2), "a bad task id is bad usage");
}

#[tokio::test]
async fn presign_prints_a_url_that_downloads() {
    let mirror = FakeMirror::start().await;
    let s3 = S3Server::start().await;
    s3.put("models/v1/any-key.bin", b"operator tool");
    let dir = tempfile::tempdir().expect("dir");
    let config = Config::new(&mirror, Some(&s3), dir.path()).write(dir.path());
    let out = weights_watcher_async(&config, &["presign", "models/v1/any-key.bin"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_owned();
    let response = reqwest::get(&url).await.expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").as_ref(), b"operator tool");
    assert!(
        !dir.path().join("ww.db").exists(),
        "presign does not touch the database"
    );
    for bad in ["../etc/passwd", "a//b", "", "a b"] {
        let out = weights_watcher(&config, &["presign", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            text(&out.stderr).contains("not a well-formed object key"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// (what to change in the shipped config.toml, words the error must contain)
fn config_cases(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let artifact = dir.join("Training.json");
    std::fs::write(
        &artifact,
        r#"{"contractName":"Training","abi":[{"type":"event","name":"TaskCreated","anonymous":false,
            "inputs":[{"name":"taskId","type":"uint256","indexed":true}]}]}"#,
    )
    .expect("artifact");
    let abi = |path: &Path| {
        format!(
            "abi_path = {:?}\nname = \"WeightsSubmitted\"",
            path.display().to_string()
        )
    };
    let sig = "signature = \"WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)\"";
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "contract = \"0.0.5005\"".into(),
            String::new(),
            s(&["[mirror] contract is missing", "WW_MIRROR__CONTRACT"]),
        ),
        (
            "base_url = \"https://testnet.mirrornode.hedera.com\"".into(),
            "base_url = \"testnet.mirrornode.hedera.com\"".into(),
            s(&["[mirror] base_url", "not a URL"]),
        ),
        (
            "url_ttl = \"1h\"".into(),
            "url_ttl = \"8d\"".into(),
            s(&["[storage] url_ttl", "7 days"]),
        ),
        (
            "string weightsHash".into(),
            "string indexed weightsHash".into(),
            s(&[
                "hash_field \"weightsHash\" is indexed string",
                "keccak256",
                "make it non-indexed",
            ]),
        ),
        (
            "task_id_field = \"taskId\"".into(),
            "task_id_field = \"task\"".into(),
            s(&["task_id_field \"task\" is not a parameter"]),
        ),
        (
            "hash_field = \"weightsHash\"".into(),
            "hash_field = \"hash\"".into(),
            s(&["hash_field \"hash\" is not a parameter"]),
        ),
        (
            sig.into(),
            "signature = \"WeightsSubmitted(uint256 taskId string weightsHash\"".into(),
            s(&["[event] signature", "does not parse"]),
        ),
        (
            "[log]".into(),
            "[log]\nlevel = \"debug\"".into(),
            s(&["unknown field", "level"]),
        ),
        (
            sig.into(),
            abi(&dir.join("missing.json")),
            s(&["abi_path", "missing.json", "cannot be read"]),
        ),
        (
            sig.into(),
            abi(&artifact),
            s(&["abi_path", "no event named \"WeightsSubmitted\"", "TaskCreated"]),
        ),
        (
            "refresh_before = \"5m\"".into(),
            "refresh_before = \"1h\"".into(),
            s(&["refresh_before", "shorter than url_ttl"]),
        ),
    ]
}

#[test]
fn every_configuration_mistake_exits_2_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().expect("dir");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).expect("config.toml");
    for (from, to, needles) in config_cases(dir.path()) {
        assert!(shipped.contains(&from), "the shipped config has {from:?}");
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, shipped.replacen(&from, &to, 1)).expect("write");
        let out = weights_watcher(&path, &["migrate"]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{to:?} must be a configuration error: {stderr}"
        );
        assert!(stderr.contains("broken.toml"), "names the file: {stderr}");
        for n in needles {
            assert!(stderr.contains(&n), "{to:?}: error should mention {n:?}: {stderr}");
        }
        assert!(!dir.path().join("weights-watcher.db").exists(), "nothing was created");
    }
    // An environment override is checked the same way.
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, &shipped).expect("write");
    let out = command(&path, &["migrate"])
        .env("WW_STORAGE__URL_TTL", "30d")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("url_ttl"), "{}", text(&out.stderr));
    let out = weights_watcher(&dir.path().join("absent.toml"), &["migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("absent.toml") && text(&out.stderr).contains("--config"));
    let out = Command::new(env!("CARGO_BIN_EXE_weights-watcher"))
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad usage");
}
