//! Logs decoded per second on one core: `EventSpec::decode` over the fake mirror's realistic
//! history (~85% WeightsSubmitted with a 64-hex key, ~10% another event, ~5% malformed), as the
//! poller sees them (0x-hex topics and data), and over WeightsSubmitted logs only.
//!
//! `cargo bench --bench decode` (see BENCHMARKS.md).

#[path = "../tests/api/support/mirror.rs"]
mod mirror;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weights_watcher::config::Settings;
use weights_watcher::events::{Decoded, EventSpec};

const LOGS: usize = 10_000;

/// A log as the mirror node serves it: topics and data as `0x`-hex strings.
fn wire(log: &mirror::Log) -> (Vec<String>, Option<String>) {
    let topics = log.topics.iter().map(|t| format!("0x{}", hex::encode(t))).collect();
    let data = log.data.as_ref().map(|d| format!("0x{}", hex::encode(d)));
    (topics, data)
}

fn bench_decode(c: &mut Criterion) {
    let toml = "[mirror]\ncontract = \"0.0.5005\"\n";
    let settings = Settings::from_toml("bench.toml".as_ref(), toml, Vec::new()).expect("the bench config is valid");
    let spec = EventSpec::new(&settings.event).expect("the default event signature is valid");
    let (logs, expected, _) = mirror::history(42, LOGS, 1_700_000_000, 86_400);
    let mixed: Vec<_> = logs.iter().map(wire).collect();
    let submissions: Vec<_> = mixed
        .iter()
        .filter(|(topics, _)| topics.first().is_some_and(|t| t == spec.topic0()))
        .cloned()
        .collect();
    let decoded = mixed
        .iter()
        .filter(|(t, d)| matches!(spec.decode(t, d.as_deref()), Decoded::Submission(_)))
        .count();
    assert_eq!(decoded, expected.len(), "every expected submission decodes");

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(mixed.len() as u64));
    group.bench_function("history mix (10k logs)", |b| {
        b.iter(|| {
            for (topics, data) in &mixed {
                black_box(spec.decode(black_box(topics), data.as_deref()));
            }
        })
    });
    group.throughput(Throughput::Elements(submissions.len() as u64));
    group.bench_function("WeightsSubmitted only", |b| {
        b.iter(|| {
            for (topics, data) in &submissions {
                black_box(spec.decode(black_box(topics), data.as_deref()));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
