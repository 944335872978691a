//! The golden vectors in `../shared/vectors/`: logs encoded by an independent ABI
//! implementation, and presigned URLs made by the AWS CLI's signer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use serde::Deserialize;
use weights_watcher::config::Settings;
use weights_watcher::events::{Decoded, EventSpec};
use weights_watcher::mirror::WireLog;
use weights_watcher::presign::Presigner;

use crate::support::shared_path;

#[derive(Deserialize)]
struct LogVectors {
    default_topic0: String,
    cases: Vec<LogCase>,
}

#[derive(Deserialize)]
struct LogCase {
    name: String,
    signature: String,
    task_id_field: String,
    hash_field: String,
    log: WireLog,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    status: String,
    task_id: Option<String>,
    trainer: Option<String>,
    hash: Option<String>,
    fields: Option<BTreeMap<String, String>>,
}

fn settings_for(signature: &str, task_id_field: &str, hash_field: &str, trainer: bool) -> Settings {
    let mut toml = String::from("[mirror]\ncontract = \"0.0.5000000\"\n[event]\n");
    toml.push_str(&format!(
        "signature = {signature:?}\ntask_id_field = {task_id_field:?}\nhash_field = {hash_field:?}\n"
    ));
    if trainer {
        toml.push_str("trainer_field = \"trainer\"\n");
    }
    Settings::from_toml("vectors.toml".as_ref(), &toml, Vec::new()).expect("vector settings are valid")
}

#[test]
fn every_golden_log_decodes_to_its_expected_outcome() {
    let text = std::fs::read_to_string(shared_path("vectors/weights_submitted_logs.json")).expect("vectors");
    let vectors: LogVectors = serde_json::from_str(&text).expect("vector JSON");
    assert!(vectors.cases.len() >= 20, "the vector file has all its cases");
    let mut seen = BTreeMap::<&str, usize>::new();
    for case in &vectors.cases {
        let has_trainer = case.signature.contains(" trainer");
        let settings = settings_for(&case.signature, &case.task_id_field, &case.hash_field, has_trainer);
        let spec = EventSpec::new(&settings.event).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if case
            .signature
            .starts_with("WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string")
        {
            assert_eq!(spec.topic0(), vectors.default_topic0, "{}", case.name);
        }
        let topics = case.log.topics.clone().unwrap_or_default();
        let decoded = spec.decode(&topics, case.log.data.as_deref());
        *seen.entry(case.expect.status.as_str()).or_default() += 1;
        match (case.expect.status.as_str(), decoded) {
            ("ok", Decoded::Submission(s)) => {
                assert_eq!(Some(&s.task_id), case.expect.task_id.as_ref(), "{}: task id", case.name);
                assert_eq!(s.trainer, case.expect.trainer, "{}: trainer", case.name);
                assert_eq!(
                    Some(s.hash.as_str()),
                    case.expect.hash.as_deref(),
                    "{}: hash",
                    case.name
                );
                assert_eq!(Some(&s.fields), case.expect.fields.as_ref(), "{}: fields", case.name);
            }
            ("reject", Decoded::Rejected(reason)) => {
                assert!(!reason.is_empty(), "{}: a rejection says why", case.name);
            }
            ("ignore", Decoded::Ignored) => {}
            (want, got) => panic!("{}: expected {want}, got {got:?}", case.name),
        }
    }
    assert!(seen.get("ok").is_some_and(|n| *n >= 5) && seen.get("reject").is_some_and(|n| *n >= 5));
    assert!(seen.contains_key("ignore"));
}

#[derive(Deserialize)]
struct PresignVectors {
    cases: Vec<PresignCase>,
}

#[derive(Deserialize)]
struct PresignCase {
    name: String,
    endpoint: String,
    region: String,
    bucket: String,
    key: String,
    expires: u64,
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
    now: String,
    url: String,
}

fn split_url(url: &str) -> (String, BTreeMap<String, String>) {
    let parsed = url::Url::parse(url).expect("url");
    let base = format!(
        "{}://{}{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or(""),
        parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let query = parsed.query().unwrap_or_default();
    // Compare the raw (still percent-encoded) values: encoding is part of what S3 checks.
    let params = query
        .split('&')
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .unwrap_or((kv.to_owned(), String::new()))
        })
        .collect();
    (format!("{base}{}", parsed.path()), params)
}

#[test]
fn every_golden_presigned_url_is_reproduced_exactly() {
    let text = std::fs::read_to_string(shared_path("vectors/presign_vectors.json")).expect("vectors");
    let vectors: PresignVectors = serde_json::from_str(&text).expect("vector JSON");
    assert!(vectors.cases.len() >= 4);
    for case in vectors.cases {
        let toml = format!(
            "[mirror]\ncontract = \"0.0.1\"\n[storage]\nendpoint = {:?}\nbucket = {:?}\nregion = {:?}\nurl_ttl = \"{}s\"\nrefresh_before = \"1s\"\n",
            case.endpoint, case.bucket, case.region, case.expires
        );
        let settings = Settings::from_toml("vectors.toml".as_ref(), &toml, Vec::new()).expect("settings");
        let credentials = Credentials::new(
            &case.access_key,
            &case.secret_key,
            case.session_token.clone(),
            None,
            "vectors",
        );
        let presigner = Presigner::with_credentials(&settings.storage, credentials.clone());
        let now: SystemTime = humantime::parse_rfc3339(&case.now).expect("now");
        let made = presigner.presign_at(&case.key, &credentials, now).expect("presign");
        let (want_base, want_params) = split_url(&case.url);
        let (got_base, got_params) = split_url(&made.url);
        assert_eq!(got_base, want_base, "{}: scheme, host and path", case.name);
        assert_eq!(got_params, want_params, "{}: query parameters", case.name);
        assert!(!made.url.contains("x-id="), "{}: no x-id", case.name);
        let expires = now.duration_since(SystemTime::UNIX_EPOCH).expect("epoch").as_secs() as i64 + case.expires as i64;
        assert_eq!(made.expires_at, expires, "{}: expiry", case.name);
    }
}
