//! Fuzzes `EventSpec::decode`, the only code that reads log contents from the chain.
//!
//! The input is split into a log: the first byte picks one of several event layouts (the
//! shipped default, a bytes32 hash, and one with every kind of parameter), the second decides
//! whether topic0 is forced to the event's own (so most inputs reach the ABI decoder), and the
//! rest is text split on '\n' into topics, the last line being the data ("null" for JSON null).
//! Any panic, abort, out-of-memory or timeout is a finding.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weights_watcher::config::Settings;
use weights_watcher::events::{Decoded, EventSpec};
use weights_watcher::types::WeightsHash;

const SIGNATURES: &[&str] = &[
    "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)",
    "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, bytes32 weightsHash, uint256 timestamp)",
    "WeightsSubmitted(int64 indexed taskId, bool indexed ok, bytes weightsHash, address trainer, uint256[] xs, (uint8,string) t, bytes4 tag, int256 delta, string[2] names, uint8[][] grid)",
    "WeightsSubmitted(string taskId, bytes32 indexed weightsHash, address indexed trainer)",
];

fn specs() -> &'static [EventSpec] {
    static SPECS: OnceLock<Vec<EventSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        SIGNATURES
            .iter()
            .map(|sig| {
                // Every layout has an address parameter named `trainer`, the default trainer_field.
                let text = format!("[mirror]\ncontract = \"0.0.5005\"\n[event]\nsignature = {sig:?}\n");
                let settings = Settings::from_toml(Path::new("fuzz.toml"), &text, Vec::new()).expect("valid config");
                EventSpec::new(&settings.event).expect("valid event")
            })
            .collect()
    })
}

fuzz_target!(|input: &[u8]| {
    let [pick, force, rest @ ..] = input else {
        return;
    };
    let specs = specs();
    let spec = &specs[usize::from(*pick) % specs.len()];
    let text = String::from_utf8_lossy(rest);
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let data = lines.pop();
    let data = data.filter(|d| d != "null");
    let mut topics = lines;
    if force % 4 != 0 {
        match topics.first_mut() {
            Some(t0) => *t0 = spec.topic0().to_owned(),
            None => topics.push(spec.topic0().to_owned()),
        }
    }
    if let Decoded::Submission(s) = spec.decode(&topics, data.as_deref()) {
        // Whatever decodes must be a valid object key.
        assert!(WeightsHash::parse(s.hash.as_str()).is_ok(), "{s:?}");
    }
});
