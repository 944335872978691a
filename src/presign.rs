//! Object key -> presigned GET URL: SigV4 query-string signing of
//! `{endpoint}/{bucket}/{key_prefix}{hash}` (path style), computed locally with the SDK's own
//! `aws-sigv4` crate, so the URL carries exactly the query parameters `aws s3 presign` makes
//! (no `x-id=GetObject`, no checksum parameters). No network I/O except what the AWS credential
//! chain itself does to find credentials (profile files, environment, instance metadata).
//!
//! Credentials come from aws-config (a named profile or the standard chain) and are cached
//! until five minutes before they expire, so a presign costs one signature, not a lookup.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

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
pub fn redact(url: &str) -> &str {
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
    region: String,
    ttl: Duration,
    source: Source,
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
        Self {
            base,
            region: settings.region.clone(),
            ttl: settings.url_ttl,
            source,
        }
    }

    /// How long each URL is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The unsigned object URL of `hash` (what a browser gets 403 for).
    pub fn object_url(&self, hash: &WeightsHash) -> String {
        // A valid hash is [A-Za-z0-9._-]: nothing to encode, and never "." or "..".
        format!("{}{}", self.base, hash.as_str())
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
    pub fn presign_at(
        &self,
        key: &str,
        credentials: &Credentials,
        now: SystemTime,
    ) -> Result<PresignedUrl, PresignError> {
        let mut url = String::with_capacity(self.base.len() + key.len() + 400);
        url.push_str(&self.base);
        for (i, segment) in key.split('/').enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
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
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok(PresignedUrl {
            url,
            expires_at: now_secs + self.ttl.as_secs() as i64,
        })
    }
}

fn read_cached(cached: &RwLock<Option<Credentials>>) -> Option<Credentials> {
    cached.read().ok().and_then(|c| c.clone())
}
