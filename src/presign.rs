//! Object key -> presigned GET URL: SigV4 query-string signing of
//! `{endpoint}/{bucket}/{key_prefix}{hash}` (path style), computed locally with the SDK's own
//! `aws-sigv4` crate, so the URL carries exactly the query parameters `aws s3 presign` makes
//! (no `x-id=GetObject`, no checksum parameters). No network I/O except what the AWS credential
//! chain itself does to find credentials (profile files, environment, instance metadata).
//!
//! Credentials come from aws-config (a named profile or the standard chain) and are cached
//! until five minutes before they expire, so a presign costs one signature, not a lookup.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::config::StorageSettings;
use crate::types::WeightsHash;

/// Why a URL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    /// The credential chain found nothing usable.
    #[error("no S3 credentials: {0}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or [storage] profile")]
    Credentials(String),
    /// SigV4 rejected the inputs (a bug or an impossible key).
    #[error("cannot sign the URL: {0}")]
    Signing(String),
}

/// A presigned URL. Its `Debug` hides the signature; never log `url` itself.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    /// The full URL, a bearer credential until `expires_at`.
    pub url: String,
    /// Unix seconds after which the object store refuses it.
    pub expires_at: i64,
}

impl std::fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedUrl")
            .field("url", &redact(&self.url))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The URL without its query string: safe to log.
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// Characters SigV4 leaves unencoded in a path segment: RFC 3986 unreserved.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// Same set for query values (`/`, `+`, `=` are encoded).
const QUERY_VALUE: &AsciiSet = PATH_SEGMENT;

/// How credentials are obtained.
enum Source {
    /// Fixed credentials (tests, benchmarks).
    Static(Credentials),
    /// The AWS credential chain, cached.
    Chain {
        provider: SharedCredentialsProvider,
        cached: RwLock<Option<Credentials>>,
        refresh: tokio::sync::Mutex<()>,
    },
}

/// Makes presigned GET URLs for object keys.
pub struct Presigner {
    /// `{endpoint}/{bucket}/{encoded key_prefix}`, ready for a hash to be appended.
    base: String,
    /// Where the path starts in `base` (after `scheme://authority`).
    path_start: usize,
    /// The `host` header SigV4 signs: host, plus the port when it is not the default.
    host: String,
    region: String,
    ttl: Duration,
    source: Source,
    /// The SigV4 signing key of the current day: four HMACs saved on every presign.
    signing_key: Mutex<Option<CachedKey>>,
}

/// A derived signing key and what it was derived from.
struct CachedKey {
    date: String,
    access_key: String,
    secret: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("base", &self.base)
            .field("region", &self.region)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Refresh cached credentials this long before they expire.
const CREDENTIAL_MARGIN: Duration = Duration::from_secs(300);

impl Presigner {
    /// A presigner using the AWS credential chain (or `settings.profile`). Finding no
    /// credentials is not an error here: the first presign reports it.
    pub async fn from_settings(settings: &StorageSettings) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()));
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let source = match config.credentials_provider() {
            Some(provider) => Source::Chain {
                provider,
                cached: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
            },
            None => Source::Static(Credentials::new("", "", None, None, "none")),
        };
        Self::with_source(settings, source)
    }

    /// A presigner with fixed credentials.
    pub fn with_credentials(settings: &StorageSettings, credentials: Credentials) -> Self {
        Self::with_source(settings, Source::Static(credentials))
    }

    fn with_source(settings: &StorageSettings, source: Source) -> Self {
        let endpoint = settings.endpoint.as_str().trim_end_matches('/');
        let mut base = format!("{endpoint}/{}/", utf8_percent_encode(&settings.bucket, PATH_SEGMENT));
        for (i, segment) in settings.key_prefix.split('/').enumerate() {
            if i > 0 {
                base.push('/');
            }
            base.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        let authority_start = settings.endpoint.scheme().len() + "://".len();
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        let host = match settings.endpoint.port() {
            Some(port) => format!("{}:{port}", settings.endpoint.host_str().unwrap_or_default()),
            None => settings.endpoint.host_str().unwrap_or_default().to_owned(),
        };
        Self {
            base,
            path_start,
            host,
            region: settings.region.clone(),
            ttl: settings.url_ttl,
            source,
            signing_key: Mutex::new(None),
        }
    }

    /// How long each URL is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Current credentials, from the cache or the chain.
    pub async fn credentials(&self) -> Result<Credentials, PresignError> {
        match &self.source {
            Source::Static(c) if c.access_key_id().is_empty() => Err(PresignError::Credentials(
                "the AWS credential chain is not configured".into(),
            )),
            Source::Static(c) => Ok(c.clone()),
            Source::Chain {
                provider,
                cached,
                refresh,
            } => {
                let fresh = |c: &Credentials| c.expiry().is_none_or(|e| e > SystemTime::now() + CREDENTIAL_MARGIN);
                if let Some(c) = read_cached(cached).filter(fresh) {
                    return Ok(c);
                }
                // One caller refreshes; the others wait for it and reuse its result.
                let _guard = refresh.lock().await;
                if let Some(c) = read_cached(cached).filter(fresh) {
                    return Ok(c);
                }
                let c = provider
                    .provide_credentials()
                    .await
                    .map_err(|e| PresignError::Credentials(format!("{e}")))?;
                if let Ok(mut slot) = cached.write() {
                    *slot = Some(c.clone());
                }
                Ok(c)
            }
        }
    }

    /// Presigns `hash` now.
    pub async fn presign(&self, hash: &WeightsHash) -> Result<PresignedUrl, PresignError> {
        let credentials = self.credentials().await?;
        self.presign_at(hash.as_str(), &credentials, SystemTime::now())
    }

    /// Presigns the object `key_prefix + key` with `credentials` at `now`. Pure: the same
    /// inputs give the same URL. `key` may contain `/` (operators' `presign`), each segment is
    /// encoded as S3 expects.
    ///
    /// The hot path. SigV4 for a presigned GET is fixed in shape: the canonical request has
    /// one signed header (`host`), the query parameters in their sorted order and
    /// `UNSIGNED-PAYLOAD`; so it is written directly, hashed once, and signed with the SDK's
    /// own `aws-sigv4` primitives and a signing key derived once per day. The golden vectors
    /// and [`Self::presign_at_reference`] (the SDK's general signer) check it.
    pub fn presign_at(
        &self,
        key: &str,
        credentials: &Credentials,
        now: SystemTime,
    ) -> Result<PresignedUrl, PresignError> {
        let mut url = self.object_path(key);
        let amz_date = amz_date(now);
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let mut query = String::with_capacity(256);
        query.push_str("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
        query.extend(utf8_percent_encode(credentials.access_key_id(), QUERY_VALUE));
        query.push_str("%2F");
        query.extend(utf8_percent_encode(&scope, QUERY_VALUE));
        query.push_str("&X-Amz-Date=");
        query.push_str(&amz_date);
        query.push_str("&X-Amz-Expires=");
        query.push_str(&self.ttl.as_secs().to_string());
        if let Some(token) = credentials.session_token() {
            query.push_str("&X-Amz-Security-Token=");
            query.extend(utf8_percent_encode(token, QUERY_VALUE));
        }
        query.push_str("&X-Amz-SignedHeaders=host");
        let canonical_request = format!(
            "GET\n{}\n{query}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD",
            &url[self.path_start..],
            self.host
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let signature = self.with_signing_key(credentials, now, date, |key| {
            v4::calculate_signature(key, string_to_sign.as_bytes())
        });
        url.push('?');
        url.push_str(&query);
        url.push_str("&X-Amz-Signature=");
        url.push_str(&signature);
        Ok(PresignedUrl {
            url,
            expires_at: unix_secs(now) + self.ttl.as_secs() as i64,
        })
    }

    /// `base + key`, each `/`-separated segment of `key` percent-encoded once.
    fn object_path(&self, key: &str) -> String {
        let mut url = String::with_capacity(self.base.len() + key.len() + 512);
        url.push_str(&self.base);
        for (i, segment) in key.split('/').enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        url
    }

    /// Runs `f` with today's signing key, deriving it only when the day or the credentials
    /// changed. A std `Mutex`: held for one HMAC, never across an `.await`.
    fn with_signing_key<T>(
        &self,
        credentials: &Credentials,
        now: SystemTime,
        date: &str,
        f: impl FnOnce(&[u8]) -> T,
    ) -> T {
        let mut slot = self.signing_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stale = slot.as_ref().is_none_or(|k| {
            k.date != date || k.access_key != credentials.access_key_id() || k.secret != credentials.secret_access_key()
        });
        if stale {
            let key = v4::generate_signing_key(credentials.secret_access_key(), now, &self.region, "s3");
            *slot = Some(CachedKey {
                date: date.to_owned(),
                access_key: credentials.access_key_id().to_owned(),
                secret: credentials.secret_access_key().to_owned(),
                key: key.as_ref().to_vec(),
            });
        }
        let key = slot.as_ref().map(|k| k.key.as_slice()).unwrap_or_default();
        f(key)
    }

    /// The same URL made by the SDK's general-purpose SigV4 signer: the reference the hot
    /// path is tested and benchmarked against.
    pub fn presign_at_reference(
        &self,
        key: &str,
        credentials: &Credentials,
        now: SystemTime,
    ) -> Result<PresignedUrl, PresignError> {
        let mut url = self.object_path(key);
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(self.ttl);
        // S3 signs the path as sent: encoded once, never normalised.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::UnsignedPayload)
            .map_err(|e| PresignError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into_parts();
        let (_headers, query) = instructions.into_parts();
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        Ok(PresignedUrl {
            url,
            expires_at: unix_secs(now) + self.ttl.as_secs() as i64,
        })
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ`, SigV4's timestamp format.
fn amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

fn read_cached(cached: &RwLock<Option<Credentials>>) -> Option<Credentials> {
    cached.read().ok().and_then(|c| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, prefix: &str) -> StorageSettings {
        let toml = format!(
            "[mirror]\ncontract = \"0.0.1\"\n[storage]\nendpoint = {endpoint:?}\nkey_prefix = {prefix:?}\nregion = \"eu-1\"\n"
        );
        crate::config::Settings::from_toml("t.toml".as_ref(), &toml, Vec::new())
            .expect("settings")
            .storage
    }

    #[test]
    fn the_fast_path_equals_the_sdk_signer_across_days_keys_and_endpoints() {
        let days = [0u64, 1, 86_399, 86_400, 1_764_849_600, 1_800_000_000];
        let creds = [
            Credentials::new("AKIDEXAMPLE", "secret/with+chars=", None, None, "t"),
            Credentials::new("ASIATEMP", "other", Some("token/+=abc".into()), None, "t"),
        ];
        for (endpoint, prefix) in [
            ("https://o3-rc2.akave.xyz", ""),
            ("http://127.0.0.1:8014", "weights/v1/"),
            ("https://h.example:443", "p"),
        ] {
            let presigner = Presigner::with_credentials(&settings(endpoint, prefix), creds[0].clone());
            for secs in days {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                for c in &creds {
                    for key in ["f402e7", "a/b.c/d_e-f", "x~y"] {
                        let fast = presigner.presign_at(key, c, now).expect("fast");
                        let reference = presigner.presign_at_reference(key, c, now).expect("reference");
                        assert_eq!(fast.expires_at, reference.expires_at);
                        assert_eq!(
                            normalised(&fast.url),
                            normalised(&reference.url),
                            "{endpoint} {prefix} {secs} {key}"
                        );
                    }
                }
            }
        }
    }

    /// The URL with its query parameters sorted (their order is not part of the signature).
    fn normalised(url: &str) -> (String, Vec<String>) {
        let (base, query) = url.split_once('?').expect("a query");
        let mut params: Vec<String> = query.split('&').map(str::to_owned).collect();
        params.sort();
        (base.to_owned(), params)
    }

    #[test]
    fn debug_output_hides_the_signature() {
        let url = PresignedUrl {
            url: "https://h/b/k?X-Amz-Signature=abc".into(),
            expires_at: 1,
        };
        assert!(!format!("{url:?}").contains("abc"));
    }
}
