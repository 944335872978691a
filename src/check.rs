//! `weights-watcher check`: one line per probe (configuration, database, mirror node,
//! storage), each saying what passed or what is wrong and what to do.

use std::time::Duration;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

use crate::config::Settings;
use crate::events::EventSpec;
use crate::metrics::Metrics;
use crate::mirror::{MirrorClient, RetryPolicy};
use crate::presign::Presigner;
use crate::store::Store;

/// The result of one probe.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or what to do.
    pub detail: String,
}

impl std::fmt::Display for CheckLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<5} {:<13} {}",
            if self.ok { "ok" } else { "FAIL" },
            self.name,
            self.detail
        )
    }
}

/// Runs every probe; the caller exits 0 only if all pass.
pub async fn run(settings: &Settings, spec: &EventSpec) -> Vec<CheckLine> {
    let mut lines = vec![CheckLine {
        name: "configuration",
        ok: true,
        detail: format!(
            "{} is valid; event {} topic0 {}",
            settings.path.display(),
            spec.canonical(),
            spec.topic0()
        ),
    }];
    lines.push(database(settings).await);
    lines.push(mirror(settings).await);
    lines.push(storage(settings).await);
    lines
}

async fn database(settings: &Settings) -> CheckLine {
    let line = |ok, detail| CheckLine {
        name: "database",
        ok,
        detail,
    };
    let path = &settings.database.path;
    let store = match Store::open(path).await {
        Ok(s) => s,
        Err(e) => return line(false, e.to_string()),
    };
    let result = async {
        store
            .ping_writable()
            .await
            .map_err(|e| format!("{} is not writable: {e}", path.display()))?;
        let pending = store.pending_migrations().await.map_err(|e| e.to_string())?;
        if pending.is_empty() {
            Ok(format!("{} is writable; migrations current", path.display()))
        } else {
            Err(format!(
                "{} has {} pending migration(s); run `weights-watcher migrate`",
                path.display(),
                pending.len()
            ))
        }
    }
    .await;
    store.close().await;
    match result {
        Ok(d) => line(true, d),
        Err(d) => line(false, d),
    }
}

async fn mirror(settings: &Settings) -> CheckLine {
    let line = |ok, detail| CheckLine {
        name: "mirror node",
        ok,
        detail,
    };
    let m = &settings.mirror;
    let client = match MirrorClient::new(
        m.base_url.clone(),
        m.contract.clone(),
        m.page_limit,
        m.request_timeout,
        RetryPolicy {
            max_attempts: Some(1),
            ..RetryPolicy::default()
        },
        std::sync::Arc::new(Metrics::new()),
    ) {
        Ok(c) => c,
        Err(e) => return line(false, format!("cannot build the HTTP client: {e}")),
    };
    match client.contract_exists().await {
        Err(e) => {
            return line(
                false,
                format!(
                    "{} is unreachable: {e}; check [mirror] base_url and the network",
                    m.base_url
                ),
            );
        }
        Ok(false) => {
            return line(
                false,
                format!(
                    "contract {} not found on {}; check [mirror] contract and the network (testnet/mainnet)",
                    m.contract, m.base_url
                ),
            );
        }
        Ok(true) => {}
    }
    match client.newest_log().await {
        Ok(Some(log)) => line(
            true,
            format!(
                "{} reachable; contract {} found; newest log at {}",
                m.base_url, m.contract, log.timestamp
            ),
        ),
        Ok(None) => line(
            true,
            format!("{} reachable; contract {} found; no logs yet", m.base_url, m.contract),
        ),
        Err(e) => line(false, format!("contract {} found but its logs failed: {e}", m.contract)),
    }
}

async fn storage(settings: &Settings) -> CheckLine {
    let line = |ok, detail| CheckLine {
        name: "storage",
        ok,
        detail,
    };
    let s = &settings.storage;
    let presigner = Presigner::from_settings(s).await;
    let credentials = match presigner.credentials().await {
        Ok(c) => c,
        Err(e) => return line(false, e.to_string()),
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(s.region.clone()))
        .endpoint_url(s.endpoint.as_str().trim_end_matches('/'))
        .force_path_style(s.force_path_style)
        .credentials_provider(credentials)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    match client.head_bucket().bucket(&s.bucket).send().await {
        Ok(_) => line(
            true,
            format!("credentials found; bucket {} reachable at {}", s.bucket, s.endpoint),
        ),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let detail = match status {
                Some(403) => format!(
                    "bucket {}: access denied (403); check the credentials and their rights on the bucket",
                    s.bucket
                ),
                Some(404) => format!(
                    "bucket {} does not exist at {} (404); check [storage] bucket",
                    s.bucket, s.endpoint
                ),
                Some(code) => format!("bucket {}: HTTP {code} from {}", s.bucket, s.endpoint),
                None => format!(
                    "{} is unreachable: {}; check [storage] endpoint",
                    s.endpoint,
                    crate::mirror::error_chain(&e)
                ),
            };
            line(false, detail)
        }
    }
}
