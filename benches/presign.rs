//! Presign cost on one core: our hot path (`Presigner::presign_at`), the SDK's general SigV4
//! signer (`Presigner::presign_at_reference`) and the floor, the SigV4 work alone (one SHA-256
//! of the canonical request plus one HMAC-SHA256 with a cached signing key).
//!
//! `cargo bench --bench presign`; `benches/compare_presign.py` times boto3 and the AWS CLI on
//! the same key, credentials, region, endpoint and clock (see BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4;
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use weights_watcher::config::Settings;
use weights_watcher::presign::Presigner;

/// The inputs shared with `benches/compare_presign.py`: keep them in step.
const ENDPOINT: &str = "http://127.0.0.1:9000";
const BUCKET: &str = "akave-bucket";
const REGION: &str = "akave-network";
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY: &str = "f402e7c3b1d6a95e8f0c2b4d6e8a0c1e3f5a7b9d1c3e5f7a9b1d3f5e7c9a1b3d";
/// 2025-12-04T12:00:00Z.
const NOW_SECS: u64 = 1_764_849_600;

fn presigner() -> Presigner {
    let toml = format!(
        "[mirror]\ncontract = \"0.0.5005\"\n[storage]\nendpoint = {ENDPOINT:?}\nbucket = {BUCKET:?}\n\
         region = {REGION:?}\nurl_ttl = \"1h\"\n"
    );
    let settings = Settings::from_toml("bench.toml".as_ref(), &toml, Vec::new()).expect("the bench config is valid");
    Presigner::with_credentials(&settings.storage, credentials())
}

fn credentials() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench")
}

fn bench_presign(c: &mut Criterion) {
    let presigner = presigner();
    let creds = credentials();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let fast = presigner.presign_at(KEY, &creds, now).expect("presign_at");
    let reference = presigner
        .presign_at_reference(KEY, &creds, now)
        .expect("presign_at_reference");
    // Print one URL so the comparison script can check boto3 signs the same thing.
    eprintln!("presign_at URL: {}", fast.url);
    eprintln!("reference URL:  {}", reference.url);

    // The floor: the canonical request our hot path hashes, and the signing key it caches.
    let (path, query) = fast.url["http://127.0.0.1:9000".len()..]
        .split_once('?')
        .expect("a query string");
    let query = query
        .split("&X-Amz-Signature=")
        .next()
        .expect("the signed part of the query");
    let canonical_request = format!("GET\n{path}\n{query}\nhost:127.0.0.1:9000\n\nhost\nUNSIGNED-PAYLOAD");
    let scope = format!("20251204/{REGION}/s3/aws4_request");
    let signing_key = v4::generate_signing_key(SECRET_KEY, now, REGION, "s3");

    let mut group = c.benchmark_group("presign");
    group.bench_function("presign_at (hot path)", |b| {
        b.iter(|| {
            presigner
                .presign_at(black_box(KEY), black_box(&creds), black_box(now))
                .expect("presign_at")
        })
    });
    group.bench_function("presign_at_reference (SDK signer)", |b| {
        b.iter(|| {
            presigner
                .presign_at_reference(black_box(KEY), black_box(&creds), black_box(now))
                .expect("presign_at_reference")
        })
    });
    group.bench_function("floor (SHA-256 + HMAC-SHA256, cached key)", |b| {
        b.iter(|| {
            let digest = Sha256::digest(black_box(canonical_request.as_bytes()));
            let mut string_to_sign = String::with_capacity(128);
            string_to_sign.push_str("AWS4-HMAC-SHA256\n20251204T120000Z\n");
            string_to_sign.push_str(&scope);
            string_to_sign.push('\n');
            string_to_sign.push_str(&hex::encode(digest));
            v4::calculate_signature(black_box(signing_key.as_ref()), string_to_sign.as_bytes())
        })
    });
    group.bench_function("signing key derivation (4 HMACs, what the cache saves)", |b| {
        b.iter(|| v4::generate_signing_key(black_box(SECRET_KEY), black_box(now), REGION, "s3"))
    });
    group.finish();
}

criterion_group!(benches, bench_presign);
criterion_main!(benches);
