//! `config.toml` plus `WW_<SECTION>__<KEY>` environment overrides, validated into typed
//! settings, one sub-struct per component. Everything an operator can get wrong is caught here
//! (or, for the event ABI, by `events::EventSpec::new`) and reported as a [`ConfigError`] naming
//! the file, the key, what is wrong and what to do; `main` maps it to exit code 2.
//!
//! This module owns no I/O beyond reading the file and the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::types::ConsensusTimestamp;

/// SigV4 caps a presigned URL's validity at seven days.
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An invalid configuration: the message says where, what and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The file (or "environment") the bad value came from.
    pub source_name: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Validated settings for every component.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the configuration was read from, for messages.
    pub path: PathBuf,
    /// The mirror node and the contract to follow.
    pub mirror: MirrorSettings,
    /// Which event to decode and which of its fields mean what.
    pub event: EventSettings,
    /// The object store and presigning.
    pub storage: StorageSettings,
    /// The SQLite file.
    pub database: DatabaseSettings,
    /// The HTTP API.
    pub http: HttpSettings,
    /// Log output.
    pub log: LogSettings,
}

/// `[mirror]`.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// Base URL without a trailing slash, e.g. `https://testnet.mirrornode.hedera.com`.
    pub base_url: Url,
    /// Contract id (`shard.realm.num`, normalised to three parts) or lower-case `0x` address.
    pub contract: String,
    /// Where an empty database starts.
    pub start_timestamp: ConsensusTimestamp,
    /// Pause between polls once caught up.
    pub poll_interval: Duration,
    /// Logs per page, 1..=100.
    pub page_limit: u32,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

/// `[event]`.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Human-readable event signature, when no ABI file is given.
    pub signature: Option<String>,
    /// A JSON ABI or a Hardhat/Foundry artifact.
    pub abi_path: Option<PathBuf>,
    /// The event's name inside `abi_path`.
    pub name: Option<String>,
    /// Parameter holding the task id.
    pub task_id_field: String,
    /// Parameter holding the weights hash (the object key).
    pub hash_field: String,
    /// Parameter holding the trainer's address, if any.
    pub trainer_field: Option<String>,
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// S3-compatible endpoint, e.g. `https://o3-rc2.akave.xyz`.
    pub endpoint: Url,
    /// Bucket name.
    pub bucket: String,
    /// SigV4 region.
    pub region: String,
    /// Prepended to every hash to form the object key.
    pub key_prefix: String,
    /// Path-style addressing (`{endpoint}/{bucket}/{key}`).
    pub force_path_style: bool,
    /// Validity of a presigned URL.
    pub url_ttl: Duration,
    /// A cached URL with less validity left than this is presigned again.
    pub refresh_before: Duration,
    /// Named AWS profile; else the standard credential chain.
    pub profile: Option<String>,
}

/// `[database]`.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The SQLite file.
    pub path: PathBuf,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Origins allowed by CORS, exactly as browsers send them (`scheme://host[:port]`).
    pub cors_allowed_origins: Vec<String>,
}

/// `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for journald and log shippers.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
}

// ---- the file's shape: every key, with the shipped defaults ------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    mirror: RawMirror,
    event: RawEvent,
    storage: RawStorage,
    database: RawDatabase,
    http: RawHttp,
    log: RawLog,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMirror {
    base_url: String,
    contract: Option<String>,
    start_timestamp: String,
    poll_interval: String,
    page_limit: i64,
    request_timeout: String,
}

impl Default for RawMirror {
    fn default() -> Self {
        Self {
            base_url: "https://testnet.mirrornode.hedera.com".into(),
            contract: None,
            start_timestamp: "0".into(),
            poll_interval: "2s".into(),
            page_limit: 100,
            request_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEvent {
    signature: Option<String>,
    abi_path: Option<String>,
    name: Option<String>,
    task_id_field: String,
    hash_field: String,
    trainer_field: Option<String>,
}

const DEFAULT_SIGNATURE: &str =
    "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)";

impl Default for RawEvent {
    fn default() -> Self {
        Self {
            signature: None,
            abi_path: None,
            name: None,
            task_id_field: "taskId".into(),
            hash_field: "weightsHash".into(),
            trainer_field: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    endpoint: String,
    bucket: String,
    region: String,
    key_prefix: String,
    force_path_style: bool,
    url_ttl: String,
    refresh_before: String,
    profile: Option<String>,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            endpoint: "https://o3-rc2.akave.xyz".into(),
            bucket: "akave-bucket".into(),
            region: "akave-network".into(),
            key_prefix: String::new(),
            force_path_style: true,
            url_ttl: "1h".into(),
            refresh_before: "5m".into(),
            profile: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    path: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            path: "weights-watcher.db".into(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: String,
    cors_allowed_origins: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9001".into(),
            cors_allowed_origins: vec!["http://localhost:5173".into()],
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self { format: "text".into() }
    }
}

/// The environment variable prefix for overrides.
const ENV_PREFIX: &str = "WW_";

impl Settings {
    /// Reads `path` (which must exist) and the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: path.display().to_string(),
            message: format!(
                "cannot read the configuration file ({e}); pass --config PATH or set WEIGHTS_WATCHER_CONFIG"
            ),
        })?;
        Self::from_toml(path, &text, std::env::vars())
    }

    /// Parses `text` as the contents of `path`, then applies `WW_*` overrides from `env`.
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let file_err = |message: String| ConfigError {
            source_name: file.clone(),
            message,
        };
        // Parse the file on its own first, so its errors carry line and column.
        let raw: RawConfig = toml::from_str(text).map_err(|e| file_err(describe_toml_error(&e)))?;
        let overrides: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        let raw = if overrides.is_empty() {
            raw
        } else {
            apply_env(raw, &overrides)?
        };
        let mut settings = validate(raw).map_err(file_err)?;
        settings.path = path.to_path_buf();
        Ok(settings)
    }
}

fn describe_toml_error(e: &toml::de::Error) -> String {
    let mut msg = e.to_string().trim_end().to_owned();
    if msg.contains("unknown field") {
        msg.push_str("\n(unknown keys are rejected so that a typo is not silently ignored; see the shipped config.toml for every key)");
    }
    msg
}

/// Applies `WW_<SECTION>__<KEY>=value` overrides. The value's type follows the key's type in
/// the file's schema: strings stay strings (a contract id like `0.0.5005` must not become a
/// float), integers and booleans are parsed, lists take TOML array syntax or commas.
fn apply_env(raw: RawConfig, overrides: &BTreeMap<String, String>) -> Result<RawConfig, ConfigError> {
    let env_err = |var: &str, message: String| ConfigError {
        source_name: format!("environment variable {var}"),
        message,
    };
    let mut table = toml::Table::try_from(&raw).map_err(|e| env_err("WW_*", e.to_string()))?;
    for (var, value) in overrides {
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            return Err(env_err(
                var,
                "expected WW_<SECTION>__<KEY>, e.g. WW_MIRROR__CONTRACT".into(),
            ));
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some(kind) = key_kind(&section, &key) else {
            return Err(env_err(
                var,
                format!("there is no key [{section}] {key}; see the shipped config.toml for every key"),
            ));
        };
        let parsed = match kind {
            Kind::Str => toml::Value::String(value.clone()),
            Kind::Int => value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| env_err(var, format!("expected an integer, got {value:?}")))?,
            Kind::Bool => match value.trim() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => return Err(env_err(var, format!("expected true or false, got {value:?}"))),
            },
            Kind::List => parse_env_list(value).map_err(|m| env_err(var, m))?,
        };
        let section_table = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = section_table {
            t.insert(key, parsed);
        }
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| env_err("WW_*", e.to_string()))
}

enum Kind {
    Str,
    Int,
    Bool,
    List,
}

fn key_kind(section: &str, key: &str) -> Option<Kind> {
    Some(match (section, key) {
        ("mirror", "page_limit") => Kind::Int,
        ("mirror", "base_url" | "contract" | "start_timestamp" | "poll_interval" | "request_timeout") => Kind::Str,
        ("event", "signature" | "abi_path" | "name" | "task_id_field" | "hash_field" | "trainer_field") => Kind::Str,
        ("storage", "force_path_style") => Kind::Bool,
        ("storage", "endpoint" | "bucket" | "region" | "key_prefix" | "url_ttl" | "refresh_before" | "profile") => {
            Kind::Str
        }
        ("database", "path") => Kind::Str,
        ("http", "listen") => Kind::Str,
        ("http", "cors_allowed_origins") => Kind::List,
        ("log", "format") => Kind::Str,
        _ => return None,
    })
}

fn parse_env_list(value: &str) -> Result<toml::Value, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        let doc: toml::Table =
            toml::from_str(&format!("v = {trimmed}")).map_err(|e| format!("expected a TOML array of strings: {e}"))?;
        return doc
            .get("v")
            .cloned()
            .ok_or_else(|| "expected a TOML array of strings".into());
    }
    Ok(toml::Value::Array(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_owned()))
            .collect(),
    ))
}

fn duration(section: &str, key: &str, value: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        format!(
            "[{section}] {key} = {value:?} is not a duration ({e}); write it like \"500ms\", \"2s\", \"5m\" or \"1h\""
        )
    })?;
    if d.is_zero() {
        return Err(format!("[{section}] {key} must be longer than zero"));
    }
    Ok(d)
}

fn http_url(section: &str, key: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| {
        format!("[{section}] {key} = {value:?} is not a URL ({e}); write it like \"https://host.example\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "[{section}] {key} = {value:?} must be an http:// or https:// URL with a host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "[{section}] {key} = {value:?} must not have a query or fragment"
        ));
    }
    Ok(url)
}

/// Checks the mirror node's own path rule for a contract id and normalises it.
fn contract_id(value: &str) -> Result<String, String> {
    let v = value.trim();
    let hex = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
    if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(format!("0x{}", hex.to_ascii_lowercase()));
    }
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(format!(
            "[mirror] contract = {value:?} is not a contract id; write \"shard.realm.num\" (e.g. \"0.0.5005\") or a 0x EVM address of 40 hex digits"
        ));
    }
    let nums: Vec<u64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    Ok(match nums.as_slice() {
        [num] => format!("0.0.{num}"),
        [realm, num] => format!("0.{realm}.{num}"),
        [shard, realm, num] => format!("{shard}.{realm}.{num}"),
        _ => unreachable!("1 to 3 numeric parts were checked above"),
    })
}

fn cors_origin(value: &str) -> Result<String, String> {
    let url = http_url("http", "cors_allowed_origins", value)?;
    if url.path() != "/" || value.trim_end().ends_with('/') {
        return Err(format!(
            "[http] cors_allowed_origins entry {value:?} must be an origin, \"scheme://host[:port]\" with no path or trailing slash"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn validate(raw: RawConfig) -> Result<Settings, String> {
    let m = raw.mirror;
    let contract = match m.contract.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(
                "[mirror] contract is missing; set it to the training contract's id (\"0.0.5005\") or EVM address, or export WW_MIRROR__CONTRACT"
                    .into(),
            );
        }
        Some(c) => contract_id(c)?,
    };
    let start_timestamp = m
        .start_timestamp
        .trim()
        .parse::<ConsensusTimestamp>()
        .map_err(|e| format!("[mirror] start_timestamp: {e}; \"0\" means the contract's whole history"))?;
    if !(1..=100).contains(&m.page_limit) {
        return Err(format!(
            "[mirror] page_limit = {} is out of range; use 1 to 100 (the mirror node's maximum is 100)",
            m.page_limit
        ));
    }
    let mut base_url = http_url("mirror", "base_url", &m.base_url)?;
    // Joining "/api/v1/..." later must not drop a path prefix, so keep no trailing slash.
    let path = base_url.path().trim_end_matches('/').to_owned();
    base_url.set_path(&path);
    let mirror = MirrorSettings {
        base_url,
        contract,
        start_timestamp,
        poll_interval: duration("mirror", "poll_interval", &m.poll_interval)?,
        page_limit: m.page_limit as u32,
        request_timeout: duration("mirror", "request_timeout", &m.request_timeout)?,
    };

    let e = raw.event;
    let non_empty = |key: &str, v: Option<String>| -> Result<Option<String>, String> {
        match v {
            Some(s) if s.trim().is_empty() => Err(format!("[event] {key} is empty; remove it or give a value")),
            other => Ok(other.map(|s| s.trim().to_owned())),
        }
    };
    let abi_path = non_empty("abi_path", e.abi_path)?.map(PathBuf::from);
    let name = non_empty("name", e.name)?;
    let mut signature = non_empty("signature", e.signature)?;
    if abi_path.is_some() {
        if signature.is_some() {
            return Err("[event] set either signature or abi_path (+ name), not both".into());
        }
        if name.is_none() {
            return Err("[event] abi_path needs name = \"<EventName>\" to pick the event from the ABI".into());
        }
    } else if signature.is_none() {
        signature = Some(DEFAULT_SIGNATURE.to_owned());
    }
    let event = EventSettings {
        signature,
        abi_path,
        name,
        task_id_field: e.task_id_field.trim().to_owned(),
        hash_field: e.hash_field.trim().to_owned(),
        trainer_field: non_empty("trainer_field", e.trainer_field)?,
    };

    let s = raw.storage;
    let endpoint = http_url("storage", "endpoint", &s.endpoint)?;
    if s.bucket.trim().is_empty() || s.bucket.contains('/') {
        return Err(format!(
            "[storage] bucket = {:?} must be a bucket name (no '/')",
            s.bucket
        ));
    }
    if s.region.trim().is_empty() {
        return Err("[storage] region is empty; Akave O3 uses \"akave-network\"".into());
    }
    if let Some(c) = s
        .key_prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return Err(format!(
            "[storage] key_prefix = {:?} contains {c:?}; use only A-Z, a-z, 0-9, '.', '_', '-' and '/'",
            s.key_prefix
        ));
    }
    if !s.force_path_style {
        return Err("[storage] force_path_style = false is not supported: presigned URLs are path style ({endpoint}/{bucket}/{key}), which Akave O3 requires".into());
    }
    let url_ttl = duration("storage", "url_ttl", &s.url_ttl)?;
    if url_ttl > MAX_URL_TTL {
        return Err(format!(
            "[storage] url_ttl = {:?} is longer than 7 days, the most SigV4 allows; use \"7d\" or less",
            s.url_ttl
        ));
    }
    if url_ttl.subsec_nanos() != 0 {
        return Err(format!("[storage] url_ttl = {:?} must be whole seconds", s.url_ttl));
    }
    let refresh_before = duration("storage", "refresh_before", &s.refresh_before)?;
    // A URL's validity counts from the whole second it was signed in, so a fresh one has
    // between url_ttl - 1 s and url_ttl left.
    if refresh_before + Duration::from_secs(1) > url_ttl {
        return Err(format!(
            "[storage] refresh_before = {:?} must be shorter than url_ttl = {:?} by 1 s or more, or every URL would be presigned again on each lookup",
            s.refresh_before, s.url_ttl
        ));
    }
    let storage = StorageSettings {
        endpoint,
        bucket: s.bucket.trim().to_owned(),
        region: s.region.trim().to_owned(),
        key_prefix: s.key_prefix,
        force_path_style: s.force_path_style,
        url_ttl,
        refresh_before,
        profile: s.profile.filter(|p| !p.trim().is_empty()),
    };

    if raw.database.path.trim().is_empty() {
        return Err("[database] path is empty; give the SQLite file's path".into());
    }
    let database = DatabaseSettings {
        path: PathBuf::from(raw.database.path),
    };

    let listen = raw.http.listen.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "[http] listen = {:?} is not an address; write it like \"127.0.0.1:9001\"",
            raw.http.listen
        )
    })?;
    let cors_allowed_origins = raw
        .http
        .cors_allowed_origins
        .iter()
        .map(|o| cors_origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    let http = HttpSettings {
        listen,
        cors_allowed_origins,
    };

    let format = match raw.log.format.trim() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(format!(
                "[log] format = {other:?} is not supported; use \"text\" or \"json\""
            ));
        }
    };

    Ok(Settings {
        path: PathBuf::new(),
        mirror,
        event,
        storage,
        database,
        http,
        log: LogSettings { format },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_toml(
            Path::new("config.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).expect("shipped config")
    }

    #[test]
    fn the_shipped_file_is_valid_and_matches_the_defaults() {
        let s = load(&shipped(), &[]).expect("shipped config is valid");
        assert_eq!(s.mirror.contract, "0.0.5005");
        assert_eq!(s.mirror.page_limit, 100);
        assert_eq!(s.mirror.poll_interval, Duration::from_secs(2));
        assert_eq!(s.storage.url_ttl, Duration::from_secs(3600));
        assert_eq!(s.storage.refresh_before, Duration::from_secs(300));
        assert_eq!(s.http.cors_allowed_origins, vec!["http://localhost:5173".to_owned()]);
        assert_eq!(s.event.trainer_field.as_deref(), Some("trainer"));
        // The only key without a default is the contract.
        let minimal = load("[mirror]\ncontract = \"0.0.5005\"\n", &[]).expect("defaults fill the rest");
        assert_eq!(minimal.mirror.base_url, s.mirror.base_url);
        assert_eq!(minimal.event.signature, s.event.signature);
        assert_eq!(minimal.storage.endpoint, s.storage.endpoint);
    }

    #[test]
    fn environment_overrides_every_kind_of_key() {
        let s = load(
            &shipped(),
            &[
                ("WW_MIRROR__CONTRACT", "0.0.777"),
                ("WW_MIRROR__START_TIMESTAMP", "1700000000.5"),
                ("WW_MIRROR__PAGE_LIMIT", "25"),
                (
                    "WW_HTTP__CORS_ALLOWED_ORIGINS",
                    "http://a.example, https://b.example:8443",
                ),
                ("WW_STORAGE__FORCE_PATH_STYLE", "true"),
                ("OTHER", "ignored"),
            ],
        )
        .expect("valid overrides");
        assert_eq!(s.mirror.contract, "0.0.777");
        assert_eq!(s.mirror.start_timestamp.to_string(), "1700000000.500000000");
        assert_eq!(s.mirror.page_limit, 25);
        assert_eq!(
            s.http.cors_allowed_origins,
            vec!["http://a.example", "https://b.example:8443"]
        );
    }

    #[track_caller]
    fn assert_error(text: &str, env: &[(&str, &str)], needles: &[&str]) {
        let err = load(text, env).expect_err("must be rejected").to_string();
        for n in needles {
            assert!(err.contains(n), "error {err:?} should mention {n:?}");
        }
    }

    #[test]
    fn each_mistake_gets_a_clear_message() {
        let base = shipped();
        assert_error(
            &base.replace("contract = \"0.0.5005\"", ""),
            &[],
            &["config.toml", "[mirror] contract is missing", "WW_MIRROR__CONTRACT"],
        );
        assert_error(
            &base.replace("https://testnet.mirrornode.hedera.com\"", "testnet.mirrornode\""),
            &[],
            &["[mirror] base_url", "not a URL"],
        );
        assert_error(
            &base.replace("url_ttl = \"1h\"", "url_ttl = \"8d\""),
            &[],
            &["url_ttl", "7 days"],
        );
        assert_error(
            &base.replace("refresh_before = \"5m\"", "refresh_before = \"2h\""),
            &[],
            &["refresh_before", "shorter than url_ttl"],
        );
        assert_error(
            &base.replace("refresh_before = \"5m\"", "refresh_before = \"3599500ms\""),
            &[],
            &["refresh_before", "3599500ms", "by 1 s or more"],
        );
        assert_error(
            &base.replace("[log]", "[log]\nformt = \"x\""),
            &[],
            &["config.toml", "unknown field", "formt"],
        );
        assert_error(
            &base,
            &[("WW_MIRROR__POLL_INTERVL", "1s")],
            &["WW_MIRROR__POLL_INTERVL", "no key"],
        );
        assert_error(
            &base.replace("\"2s\"", "\"2 parsecs\""),
            &[],
            &["[mirror] poll_interval", "500ms"],
        );
        assert_error(
            &base.replace("page_limit = 100", "page_limit = 500"),
            &[],
            &["page_limit", "1 to 100"],
        );
        assert_error(
            &base.replace("\"0.0.5005\"", "\"5005.x\""),
            &[],
            &["[mirror] contract", "0.0.5005"],
        );
        assert_error(
            &base.replace("\"http://localhost:5173\"", "\"http://localhost:5173/app\""),
            &[],
            &["cors_allowed_origins", "origin"],
        );
        assert_error(&base.replace("= \"text\"", "= \"xml\""), &[], &["[log] format", "json"]);
        assert_error(
            &base.replace("# abi_path = \"artifacts/TrainingTasks.json\"", "abi_path = \"x.json\""),
            &[],
            &["[event]", "either signature or abi_path"],
        );
    }

    #[test]
    fn contract_ids_are_normalised() {
        assert_eq!(contract_id("5005").expect("ok"), "0.0.5005");
        assert_eq!(contract_id("0.5005").expect("ok"), "0.0.5005");
        assert_eq!(contract_id("0.0.5005").expect("ok"), "0.0.5005");
        let addr = "0x00000000000000000000000000000000004C4B40";
        assert_eq!(contract_id(addr).expect("ok"), addr.to_ascii_lowercase());
        assert!(contract_id("0.0.0.1").is_err());
        assert!(contract_id("0xabc").is_err());
    }
}
