//! Property tests (issue 5, item 5): the log decoder, the timestamp / task id / hash parsers
//! and the configuration loader, each against random input. Pure functions only: no daemon.
//!
//! Case counts are kept small so the file runs in seconds in a debug build; `PROPTEST_CASES`
//! raises them by hand (e.g. `PROPTEST_CASES=100000 cargo test --test api properties`).
//! Failures are not persisted to disk: each one found is pinned by a named regression test
//! at the end of this file instead.

use std::collections::BTreeMap;
use std::path::Path;

use ethabi::Token;
use ethabi::ethereum_types::U256;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use weights_watcher::config::{MAX_URL_TTL, Settings};
use weights_watcher::events::{Decoded, EventSpec, Submission};
use weights_watcher::types::{ConsensusTimestamp, TaskId, WeightsHash};

/// `n` cases unless `PROPTEST_CASES` says otherwise.
fn cases(n: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = n;
    }
    config
}

const DEFAULT_SIGNATURE: &str =
    "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)";
const BYTES32_SIGNATURE: &str =
    "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, bytes32 weightsHash, uint256 timestamp)";
/// Every kind of parameter the decoder renders, indexed and not.
const EXOTIC_SIGNATURE: &str = "WeightsSubmitted(int64 indexed taskId, bool indexed ok, bytes weightsHash, address trainer, uint256[] xs, (uint8,string) t, bytes4 tag, int256 delta, string[2] names)";

/// The spec for `signature` (None: the shipped default), built the way the daemon builds it.
fn spec(signature: Option<&str>) -> EventSpec {
    let mut text = String::from("[mirror]\ncontract = \"0.0.5005\"\n");
    if let Some(sig) = signature {
        text.push_str(&format!("[event]\nsignature = {sig:?}\n"));
        if sig.contains("trainer,") || sig.contains("trainer)") {
            text.push_str("trainer_field = \"trainer\"\n");
        }
    }
    let settings = Settings::from_toml(Path::new("properties.toml"), &text, Vec::new()).expect("config is valid");
    EventSpec::new(&settings.event).expect("event spec is valid")
}

// ---- the decoder ---------------------------------------------------------------------------

fn hex_string(max_bytes: usize) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(any::<u8>(), 0..=max_bytes),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bytes, upper, odd)| {
            let mut h = hex::encode(bytes);
            if upper {
                h = h.to_ascii_uppercase();
            }
            if odd {
                h.push('a');
            }
            format!("0x{h}")
        })
}

/// A topic: the right topic0, a word-sized hex string, any hex, or garbage.
fn topic(topic0: String) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(topic0.clone()),
        1 => Just(topic0.to_ascii_uppercase().replacen("0X", "0x", 1)),
        3 => hex_string(32),
        2 => proptest::collection::vec(any::<u8>(), 32).prop_map(|b| format!("0x{}", hex::encode(b))),
        1 => hex_string(80),
        1 => any::<String>(),
        1 => "0x[0-9a-fA-Fg-z]{0,70}",
    ]
}

/// Data: null, random hex of random length, non-hex, or a real encoding with random damage.
fn data() -> impl Strategy<Value = Option<String>> {
    let damaged = (
        "[A-Za-z0-9._-]{0,80}",
        any::<u64>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<usize>(),
    )
        .prop_map(|(s, v, edits, cut)| {
            let mut bytes = ethabi::encode(&[Token::String(s), Token::Uint(v.into())]);
            for (i, b) in edits {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            let keep = bytes.len() - cut % 8.min(bytes.len());
            bytes.truncate(keep);
            Some(format!("0x{}", hex::encode(bytes)))
        });
    prop_oneof![
        1 => Just(None),
        1 => Just(Some("0x".to_owned())),
        3 => hex_string(400).prop_map(Some),
        1 => any::<String>().prop_map(Some),
        3 => damaged,
    ]
}

fn log_input(topic0: String) -> impl Strategy<Value = (Vec<String>, Option<String>)> {
    (proptest::collection::vec(topic(topic0), 0..=5), data())
}

proptest! {
    #![proptest_config(cases(2_000))]

    /// Random topics and data never panic the default decoder; a log whose topic0 differs is
    /// ignored, and anything that decodes has a valid hash.
    #[test]
    fn the_decoder_never_panics_on_random_logs((topics, data) in log_input(spec(None).topic0().to_owned())) {
        let spec = spec(None);
        match spec.decode(&topics, data.as_deref()) {
            Decoded::Ignored => prop_assert!(topics.first().is_none_or(|t| !t.eq_ignore_ascii_case(spec.topic0()))),
            Decoded::Rejected(reason) => prop_assert!(!reason.is_empty()),
            Decoded::Submission(s) => prop_assert!(WeightsHash::parse(s.hash.as_str()).is_ok()),
        }
    }

    /// The same for a signature with every kind of parameter (arrays, tuples, bool, int, bytes).
    #[test]
    fn an_exotic_decoder_never_panics_on_random_logs((topics, data) in log_input(spec(Some(EXOTIC_SIGNATURE)).topic0().to_owned())) {
        let spec = spec(Some(EXOTIC_SIGNATURE));
        let _ = spec.decode(&topics, data.as_deref());
        let bytes32 = spec_bytes32();
        let _ = bytes32.decode(&topics, data.as_deref());
    }
}

/// The shipped default is the documented signature, so the properties above test it.
#[test]
fn the_default_event_is_the_documented_signature() {
    assert_eq!(spec(None).topic0(), spec(Some(DEFAULT_SIGNATURE)).topic0());
}

fn spec_bytes32() -> EventSpec {
    spec(Some(BYTES32_SIGNATURE))
}

/// `[A-Za-z0-9._-]{1,256}` other than `.` and `..`.
fn valid_hash() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,256}".prop_filter("not a dot segment", |h| h != "." && h != "..")
}

fn task_id_word() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![
        any::<u64>().prop_map(|v| {
            let mut w = [0u8; 32];
            w[24..].copy_from_slice(&v.to_be_bytes());
            w
        }),
        any::<[u8; 32]>(),
        Just([0xff; 32]),
        Just([0; 32]),
    ]
}

fn word_hex(word: &[u8; 32], upper: bool) -> String {
    let h = hex::encode(word);
    format!("0x{}", if upper { h.to_ascii_uppercase() } else { h })
}

fn address_word(a: &[u8; 20]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a);
    w
}

proptest! {
    #![proptest_config(cases(1_000))]

    /// Every valid encoding of a random submission decodes back to it (string hash).
    #[test]
    fn every_valid_submission_decodes_back_to_itself(
        task in task_id_word(),
        trainer in any::<[u8; 20]>(),
        hash in valid_hash(),
        extra in any::<[u8; 32]>(),
        upper in any::<bool>(),
    ) {
        let spec = spec(None);
        let topics = vec![
            spec.topic0().to_owned(),
            word_hex(&task, upper),
            word_hex(&address_word(&trainer), upper),
        ];
        let extra = U256::from_big_endian(&extra);
        let data = ethabi::encode(&[Token::String(hash.clone()), Token::Uint(extra)]);
        let data = format!("0x{}", hex::encode(data));
        let want = Submission {
            task_id: U256::from_big_endian(&task).to_string(),
            trainer: Some(format!("0x{}", hex::encode(trainer))),
            hash: WeightsHash::parse(&hash).expect("generated valid"),
            fields: BTreeMap::from([("timestamp".to_owned(), extra.to_string())]),
        };
        prop_assert_eq!(spec.decode(&topics, Some(&data)), Decoded::Submission(want));
    }

    /// The same with the hash as `bytes32`: it becomes 64 lower-case hex digits.
    #[test]
    fn every_valid_bytes32_submission_decodes_back_to_itself(
        task in task_id_word(),
        trainer in any::<[u8; 20]>(),
        hash in any::<[u8; 32]>(),
        extra in any::<[u8; 32]>(),
    ) {
        let spec = spec_bytes32();
        let topics = vec![spec.topic0().to_owned(), word_hex(&task, false), word_hex(&address_word(&trainer), false)];
        let extra = U256::from_big_endian(&extra);
        let data = ethabi::encode(&[Token::FixedBytes(hash.to_vec()), Token::Uint(extra)]);
        let data = format!("0x{}", hex::encode(data));
        let want = Submission {
            task_id: U256::from_big_endian(&task).to_string(),
            trainer: Some(format!("0x{}", hex::encode(trainer))),
            hash: WeightsHash::parse(&hex::encode(hash)).expect("hex is a valid key"),
            fields: BTreeMap::from([("timestamp".to_owned(), extra.to_string())]),
        };
        prop_assert_eq!(spec.decode(&topics, Some(&data)), Decoded::Submission(want));
    }

    /// An invalid hash in an otherwise valid log is rejected, never stored.
    #[test]
    fn an_invalid_hash_is_rejected(task in any::<u64>(), hash in any::<String>()) {
        prop_assume!(WeightsHash::parse(&hash).is_err());
        let spec = spec(None);
        let mut w = [0u8; 32];
        w[24..].copy_from_slice(&task.to_be_bytes());
        let topics = vec![spec.topic0().to_owned(), word_hex(&w, false), word_hex(&[0u8; 32], false)];
        let data = format!("0x{}", hex::encode(ethabi::encode(&[Token::String(hash), Token::Uint(1u8.into())])));
        prop_assert!(matches!(spec.decode(&topics, Some(&data)), Decoded::Rejected(_)));
    }
}

// ---- timestamps, task ids, hashes ----------------------------------------------------------

/// The largest seconds a `ConsensusTimestamp` holds (keeps nanoseconds inside an i64).
const MAX_SECS: u64 = (i64::MAX as u64) / 1_000_000_000 - 1;

/// Reference grammar, written without the parser: `\d{1,10}(\.\d{1,9})?`, within bounds.
fn reference_timestamp(s: &str) -> Option<(u64, u32)> {
    let digits = |t: &str, max: usize| !t.is_empty() && t.len() <= max && t.chars().all(|c| c.is_ascii_digit());
    let (secs, frac) = match s.find('.') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if !digits(secs, 10) {
        return None;
    }
    let mut nanos = 0u32;
    if let Some(f) = frac {
        if !digits(f, 9) {
            return None;
        }
        for (i, c) in f.chars().enumerate() {
            nanos += (c as u32 - '0' as u32) * 10u32.pow(8 - i as u32);
        }
    }
    let secs: u64 = secs.parse().ok()?;
    (secs <= MAX_SECS).then_some((secs, nanos))
}

fn reference_task_id(s: &str) -> Option<String> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut normal: String = s.chars().skip_while(|c| *c == '0').collect();
    if normal.is_empty() {
        normal.push('0');
    }
    (normal.len() <= 78).then_some(normal)
}

fn reference_hash(s: &str) -> bool {
    let n = s.chars().count();
    (1..=256).contains(&n)
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

fn timestamp_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,12}(\\.[0-9]{0,11})?",
        "[0-9.]{0,25}",
        "[0-9 +\\-.eE_]{0,20}",
        any::<String>(),
        (any::<u64>(), any::<u32>()).prop_map(|(s, n)| format!("{s}.{n}")),
    ]
}

proptest! {
    #![proptest_config(cases(3_000))]

    /// Display then parse gives the same timestamp, for every representable value.
    #[test]
    fn timestamps_round_trip_through_text(secs in 0..=MAX_SECS, nanos in 0u32..1_000_000_000) {
        let ts = ConsensusTimestamp::new(secs, nanos).expect("in range");
        let text = ts.to_string();
        prop_assert_eq!(text.parse::<ConsensusTimestamp>(), Ok(ts));
        prop_assert_eq!(ConsensusTimestamp::from_nanos(ts.as_nanos()), ts);
    }

    /// Seconds past the bound (up to the mirror node's ten digits) are refused, not wrapped.
    #[test]
    fn timestamps_past_the_bound_are_refused(secs in (MAX_SECS + 1)..=9_999_999_999u64, nanos in 0u32..1_000_000_000) {
        prop_assert!(ConsensusTimestamp::new(secs, nanos).is_none());
        let text = format!("{secs}.{nanos:09}");
        prop_assert!(text.parse::<ConsensusTimestamp>().is_err());
    }

    /// Timestamps order as (seconds, nanos) pairs, and so do their sort keys.
    #[test]
    fn timestamp_order_is_pair_order(a in (0..=MAX_SECS, 0u32..1_000_000_000), b in (0..=MAX_SECS, 0u32..1_000_000_000)) {
        let (x, y) = (ConsensusTimestamp::new(a.0, a.1).expect("valid"), ConsensusTimestamp::new(b.0, b.1).expect("valid"));
        prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        prop_assert_eq!(x.as_nanos().cmp(&y.as_nanos()), a.cmp(&b));
    }

    /// Any string: no panic, and accepted exactly when the reference grammar accepts it.
    #[test]
    fn timestamp_parsing_matches_its_grammar(s in timestamp_like()) {
        let parsed = s.parse::<ConsensusTimestamp>().ok().map(|t| (t.secs, t.nanos));
        prop_assert_eq!(parsed, reference_timestamp(&s), "input {:?}", s);
    }

    /// Any nanosecond count (a corrupt database included) gives a timestamp that prints and
    /// parses back, never one outside the type's bound.
    #[test]
    fn from_nanos_stays_in_bounds(ns in prop_oneof![any::<i64>(), (i64::MAX - 2_000_000_000)..=i64::MAX, Just(i64::MIN)]) {
        let ts = ConsensusTimestamp::from_nanos(ns);
        prop_assert!(ConsensusTimestamp::new(ts.secs, ts.nanos).is_some(), "{:?}", ts);
        prop_assert_eq!(ts.to_string().parse::<ConsensusTimestamp>(), Ok(ts));
    }

    /// Task ids: no panic, accepted exactly per the reference, normalised the same way.
    #[test]
    fn task_ids_match_their_grammar(s in prop_oneof!["[0-9]{0,100}", "0{0,90}[0-9]{0,5}", "[0-9+\\- .xe]{0,12}", any::<String>()]) {
        prop_assert_eq!(TaskId::parse(&s).ok().map(|t| t.as_str().to_owned()), reference_task_id(&s), "input {:?}", s);
    }

    /// Hashes: no panic, accepted exactly per the reference, kept verbatim.
    #[test]
    fn hashes_match_their_grammar(s in prop_oneof![
        "[A-Za-z0-9._-]{0,260}",
        "[A-Za-z0-9._/%\\\\-]{0,12}",
        "\\.{1,3}",
        any::<String>(),
        "[a-z]{250,256}[é/]?",
    ]) {
        let got = WeightsHash::parse(&s);
        prop_assert_eq!(got.is_ok(), reference_hash(&s), "input {:?}", s);
        if let Ok(h) = got {
            prop_assert_eq!(h.as_str(), s.as_str());
        }
    }
}

// ---- the configuration loader --------------------------------------------------------------

/// A plausible-to-garbage TOML value for any key.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"0s\"",
            "\"1ns\"",
            "\"500ms\"",
            "\"1s\"",
            "\"2s\"",
            "\"5m\"",
            "\"59m\"",
            "\"1h\"",
            "\"7d\"",
            "\"8d\"",
            "\"604800s\"",
            "\"604801s\"",
            "\"1h 1ms\"",
            "\"1.5s\"",
            "\"-1s\"",
            "\"\"",
            "\" \"",
            "\"99999999999999999999999h\"",
            "\"18446744073709551615s\"",
            "\"1y\"",
            "0",
            "1",
            "100",
            "101",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "1.5",
            "true",
            "false",
            "\"0.0.5005\"",
            "\"0x000000000000000000000000000000000000138d\"",
            "\"0.0.0.0\"",
            "\"..\"",
            "\"http://127.0.0.1:1\"",
            "\"https://h.example/p/\"",
            "\"ftp://x\"",
            "\"http://\"",
            "\"http://h?q\"",
            "\"127.0.0.1:0\"",
            "\"[::1]:9001\"",
            "\"text\"",
            "\"json\"",
            "\"JSON\"",
            "[\"http://localhost:5173\"]",
            "[\"http://a/b\"]",
            "[1, 2]",
            "[]",
            "{ a = 1 }",
            "\"WeightsSubmitted(uint256 indexed taskId, string weightsHash)\"",
            "\"Broken(\"",
            "\"0\"",
            "\"1733300000.123456789\"",
            "\"9999999999.999999999\"",
            "\"1e9\"",
        ])
        .prop_map(str::to_owned),
        "\"[ -~]{0,20}\"",
        any::<i64>().prop_map(|v| v.to_string()),
    ]
}

fn toml_key() -> impl Strategy<Value = (String, String)> {
    let known = prop::sample::select(vec![
        ("mirror", "base_url"),
        ("mirror", "contract"),
        ("mirror", "start_timestamp"),
        ("mirror", "poll_interval"),
        ("mirror", "page_limit"),
        ("mirror", "request_timeout"),
        ("event", "signature"),
        ("event", "abi_path"),
        ("event", "name"),
        ("event", "task_id_field"),
        ("event", "hash_field"),
        ("event", "trainer_field"),
        ("storage", "endpoint"),
        ("storage", "bucket"),
        ("storage", "region"),
        ("storage", "key_prefix"),
        ("storage", "force_path_style"),
        ("storage", "url_ttl"),
        ("storage", "refresh_before"),
        ("storage", "profile"),
        ("database", "path"),
        ("http", "listen"),
        ("http", "cors_allowed_origins"),
        ("log", "format"),
        ("mirror", "typo"),
        ("nosuch", "key"),
    ]);
    known.prop_map(|(s, k)| (s.to_owned(), k.to_owned()))
}

fn toml_text() -> impl Strategy<Value = String> {
    let entries = proptest::collection::vec((toml_key(), toml_value()), 0..14);
    let garbage = proptest::collection::vec(
        prop_oneof![
            8 => Just(String::new()),
            1 => "[\\[\\]=\"a-z0-9 .#]{0,30}",
            1 => any::<String>(),
        ],
        0..3,
    );
    (entries, garbage, any::<bool>()).prop_map(|(entries, garbage, with_contract)| {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if with_contract {
            sections
                .entry("mirror".into())
                .or_default()
                .push("contract = \"0.0.5005\"".into());
        }
        for ((section, key), value) in entries {
            let lines = sections.entry(section).or_default();
            if !lines.iter().any(|l| l.starts_with(&format!("{key} ="))) {
                lines.push(format!("{key} = {value}"));
            }
        }
        let mut text = String::new();
        for (section, lines) in sections {
            text.push_str(&format!("[{section}]\n"));
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
        }
        for g in garbage {
            text.push_str(&g);
            text.push('\n');
        }
        text
    })
}

fn env_overrides() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        4 => toml_key().prop_map(|(s, k)| format!("WW_{}__{}", s.to_ascii_uppercase(), k.to_ascii_uppercase())),
        1 => toml_key().prop_map(|(s, k)| format!("WW_{s}__{k}")),
        1 => "WW_[A-Z_]{0,20}",
        1 => "[A-Z_]{1,10}",
    ];
    let value = prop_oneof![
        toml_value().prop_map(|v| v.trim_matches('"').to_owned()),
        toml_value(),
        Just("a,b".to_owned()),
        Just("[\"http://x\", 1]".to_owned()),
        Just("[\"http://x\"]\nother = 1".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec((name, value), 0..4)
}

proptest! {
    #![proptest_config(cases(1_500))]

    /// Random TOML-ish text and random overrides never panic the loader, and whatever it
    /// accepts satisfies the documented invariants.
    #[test]
    fn the_config_loader_never_panics_and_keeps_its_invariants(text in toml_text(), env in env_overrides()) {
        if let Ok(s) = Settings::from_toml(Path::new("fuzz.toml"), &text, env.clone()) {
            prop_assert!(s.storage.refresh_before < s.storage.url_ttl, "{:?}", s.storage);
            prop_assert!(s.storage.url_ttl <= MAX_URL_TTL, "{:?}", s.storage);
            prop_assert_eq!(s.storage.url_ttl.subsec_nanos(), 0);
            prop_assert!(!s.storage.refresh_before.is_zero());
            prop_assert!((1..=100).contains(&s.mirror.page_limit), "{}", s.mirror.page_limit);
            prop_assert!(!s.mirror.contract.is_empty());
            prop_assert!(s.storage.force_path_style);
            prop_assert!(!s.mirror.poll_interval.is_zero() && !s.mirror.request_timeout.is_zero());
            prop_assert!(s.event.signature.is_some() || s.event.abi_path.is_some());
        }
    }
}
