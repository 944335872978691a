//! Pure ABI decoding of one mirror-node log into a [`Submission`], driven by a configurable
//! event (a human-readable signature, or a JSON ABI / Hardhat or Foundry artifact). No I/O
//! beyond reading the ABI file once at start-up.
//!
//! A log is one of three things: another event of the contract ([`Decoded::Ignored`]), a
//! `WeightsSubmitted` that decodes to a valid submission, or a log whose topic0 matches but
//! that cannot be decoded or whose hash is not an acceptable object key
//! ([`Decoded::Rejected`], quarantined by the poller).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ethabi::{ParamType, Token};

use crate::config::EventSettings;
use crate::types::WeightsHash;

/// A configured event that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("[event] {0}")]
pub struct EventConfigError(String);

/// What a log became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed submission.
    Submission(Submission),
    /// topic0 matches the event but the log does not decode; the reason is stored.
    Rejected(String),
    /// Another event (or an anonymous log): not ours, skipped silently.
    Ignored,
}

/// The decoded content of one `WeightsSubmitted` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// Decimal for integer ids, 0x-hex for bytes32, the text for strings.
    pub task_id: String,
    /// Lower-case 0x address, when a trainer field is configured.
    pub trainer: Option<String>,
    /// The object key.
    pub hash: WeightsHash,
    /// Every other parameter, rendered as a string.
    pub fields: BTreeMap<String, String>,
}

/// An event input as declared: (name, type, indexed).
type Input = (String, ParamType, bool);

/// Where a parameter lives in a log.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// In `topics[n]` (n >= 1).
    Topic(usize),
    /// The n-th value of the ABI-decoded data.
    Data(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    TaskId,
    Hash,
    Trainer,
    Other,
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    kind: ParamType,
    slot: Slot,
    role: Role,
}

/// The event to look for and how to turn its parameters into a submission.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// `"0x" + keccak256(canonical signature)`, lower case.
    topic0: String,
    canonical: String,
    params: Vec<Param>,
    data_types: Vec<ParamType>,
    indexed_count: usize,
    /// Longest log data decoded; longer is rejected before ethabi sees it.
    max_data_hex: usize,
}

impl EventSpec {
    /// Builds the spec from settings, reading `abi_path` if given.
    pub fn new(settings: &EventSettings) -> Result<Self, EventConfigError> {
        let (name, inputs) = match (&settings.abi_path, &settings.signature) {
            (Some(path), _) => {
                let name = settings.name.as_deref().unwrap_or_default();
                from_abi_file(path, name)?
            }
            (None, Some(sig)) => parse_signature(sig)?,
            (None, None) => return Err(EventConfigError("give signature, or abi_path and name".into())),
        };
        Self::from_parts(&name, inputs, settings)
    }

    fn from_parts(name: &str, inputs: Vec<Input>, settings: &EventSettings) -> Result<Self, EventConfigError> {
        let kinds: Vec<ParamType> = inputs.iter().map(|(_, k, _)| k.clone()).collect();
        let canonical = format!("{name}({})", type_list(&kinds));
        let topic0 = format!("0x{}", hex::encode(ethabi::long_signature(name, &kinds).0));
        let names: Vec<&str> = inputs.iter().map(|(n, _, _)| n.as_str()).collect();
        let find = |key: &str, field: &str| -> Result<usize, EventConfigError> {
            names.iter().position(|n| *n == field).ok_or_else(|| {
                EventConfigError(format!(
                    "{key} {field:?} is not a parameter of {name}({}); set it to one of them",
                    names.join(", ")
                ))
            })
        };
        let task = find("task_id_field", &settings.task_id_field)?;
        let hash = find("hash_field", &settings.hash_field)?;
        if task == hash {
            return Err(EventConfigError(
                "task_id_field and hash_field name the same parameter".into(),
            ));
        }
        // Unset, the trainer is the `trainer` address parameter if the event has one.
        let trainer = match &settings.trainer_field {
            Some(f) => Some(find("trainer_field", f)?),
            None => inputs
                .iter()
                .position(|(n, k, _)| n == "trainer" && *k == ParamType::Address),
        };
        let (_, task_kind, task_indexed) = &inputs[task];
        let (_, hash_kind, hash_indexed) = &inputs[hash];
        let dynamic = |k: &ParamType| matches!(k, ParamType::String | ParamType::Bytes);
        if *hash_indexed && dynamic(hash_kind) {
            return Err(EventConfigError(format!(
                "hash_field {:?} is indexed {hash_kind}: logs only carry its keccak256; make it non-indexed",
                settings.hash_field
            )));
        }
        if !matches!(
            hash_kind,
            ParamType::String | ParamType::Bytes | ParamType::FixedBytes(32)
        ) {
            return Err(EventConfigError(format!(
                "hash_field {:?} is {hash_kind}; it must be string, bytes32 or bytes",
                settings.hash_field
            )));
        }
        if *task_indexed && dynamic(task_kind) {
            return Err(EventConfigError(format!(
                "task_id_field {:?} is indexed {task_kind}: logs only carry its keccak256; make it non-indexed",
                settings.task_id_field
            )));
        }
        if !matches!(
            task_kind,
            ParamType::Uint(_) | ParamType::Int(_) | ParamType::FixedBytes(32) | ParamType::String
        ) {
            return Err(EventConfigError(format!(
                "task_id_field {:?} is {task_kind}; it must be an integer, bytes32 or string",
                settings.task_id_field
            )));
        }
        if let Some(t) = trainer
            && inputs[t].1 != ParamType::Address
        {
            return Err(EventConfigError(format!(
                "trainer_field {:?} is {}; it must be an address (or remove trainer_field)",
                inputs[t].0, inputs[t].1
            )));
        }
        // Defect found while fuzzing `decode` with exotic signatures: ethabi decodes an
        // array element that occupies no bytes (`T[0]`, `()`) without consuming data, so a
        // log declaring 2^32 - 1 elements of `uint256[0][]` made it build billions of tokens
        // (out of memory) from 64 bytes. Neither is a Solidity type, so refuse them here,
        // whether they came from a signature or an ABI file.
        if let Some((pname, kind, _)) = inputs.iter().find(|(_, k, _)| has_zero_sized(k)) {
            return Err(EventConfigError(format!(
                "parameter {pname:?} has type {kind}, which contains a zero-length array or an empty tuple; \
                 Solidity has no such type, fix the signature or ABI"
            )));
        }
        let indexed_count = inputs.iter().filter(|(_, _, i)| *i).count();
        if indexed_count > 3 {
            return Err(EventConfigError(format!(
                "{name} has {indexed_count} indexed parameters; an event can have at most 3"
            )));
        }
        let (mut topic_n, mut data_n) = (0, 0);
        let mut data_types = Vec::new();
        let params = inputs
            .into_iter()
            .enumerate()
            .map(|(i, (pname, kind, indexed))| {
                let slot = if indexed {
                    topic_n += 1;
                    Slot::Topic(topic_n)
                } else {
                    data_types.push(kind.clone());
                    data_n += 1;
                    Slot::Data(data_n - 1)
                };
                let role = if i == task {
                    Role::TaskId
                } else if i == hash {
                    Role::Hash
                } else if Some(i) == trainer {
                    Role::Trainer
                } else {
                    Role::Other
                };
                Param {
                    name: pname,
                    kind,
                    slot,
                    role,
                }
            })
            .collect();
        // ethabi follows offsets without a size budget: with nested dynamic arrays a crafted
        // log can make it build (data/32)^2 values. Such events get a tight cap; others a cap
        // far above any real WeightsSubmitted log.
        let max_data = if data_types.iter().any(nests_dynamic_arrays) {
            8 * 1024
        } else {
            256 * 1024
        };
        Ok(Self {
            topic0,
            canonical,
            params,
            data_types,
            indexed_count,
            max_data_hex: 2 + 2 * max_data,
        })
    }

    /// The canonical signature, e.g. `WeightsSubmitted(uint256,address,string,uint256)`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// `0x`-prefixed lower-case keccak256 of the canonical signature.
    pub fn topic0(&self) -> &str {
        &self.topic0
    }

    /// Decodes one log given its topics (0x-hex strings) and data (0x-hex or null).
    pub fn decode(&self, topics: &[String], data: Option<&str>) -> Decoded {
        match topics.first() {
            Some(t0) if t0.eq_ignore_ascii_case(&self.topic0) => {}
            _ => return Decoded::Ignored,
        }
        match self.decode_matching(topics, data) {
            Ok(s) => Decoded::Submission(s),
            Err(reason) => Decoded::Rejected(reason),
        }
    }

    fn decode_matching(&self, topics: &[String], data: Option<&str>) -> Result<Submission, String> {
        if topics.len() != 1 + self.indexed_count {
            return Err(format!(
                "log has {} topics; {} expects {} (topic0 + {} indexed)",
                topics.len(),
                self.canonical,
                1 + self.indexed_count,
                self.indexed_count
            ));
        }
        let data = data.ok_or("log data is null")?;
        if data.len() > self.max_data_hex {
            return Err(format!(
                "log data is {} bytes; {} accepts at most {}",
                data.len() / 2,
                self.canonical,
                (self.max_data_hex - 2) / 2
            ));
        }
        let data = decode_hex(data).map_err(|e| format!("log data is not hex: {e}"))?;
        let mut values = if self.data_types.is_empty() {
            Vec::new()
        } else {
            ethabi::decode(&self.data_types, &data).map_err(|e| {
                format!(
                    "log data ({} bytes) does not decode as ({}): {e}",
                    data.len(),
                    type_list(&self.data_types)
                )
            })?
        };
        let mut task_id = None;
        let mut trainer = None;
        let mut hash = None;
        let mut fields = BTreeMap::new();
        for p in &self.params {
            let token = match p.slot {
                // Each data value belongs to exactly one parameter: move it out.
                Slot::Data(i) => std::mem::replace(&mut values[i], Token::Bool(false)),
                Slot::Topic(i) => {
                    decode_topic(&topics[i], &p.kind).map_err(|e| format!("topic{i} ({} {}): {e}", p.kind, p.name))?
                }
            };
            match p.role {
                Role::TaskId => task_id = Some(render(&token)),
                Role::Trainer => trainer = Some(render(&token)),
                Role::Hash => {
                    let text = match token {
                        Token::String(s) => s,
                        Token::Bytes(b) | Token::FixedBytes(b) => hex::encode(b),
                        other => render(&other),
                    };
                    hash = Some(WeightsHash::parse(&text).map_err(|e| {
                        format!(
                            "{} {:?} is not an acceptable object key: {e}",
                            p.name,
                            truncate(&text, 80)
                        )
                    })?);
                }
                Role::Other => {
                    fields.insert(p.name.clone(), render(&token));
                }
            }
        }
        Ok(Submission {
            task_id: task_id.ok_or("task id missing")?,
            trainer,
            hash: hash.ok_or("hash missing")?,
            fields,
        })
    }
}

/// Whether `kind` has a dynamic array inside another array or tuple (`T[][]`, `(T[])[]`...).
fn nests_dynamic_arrays(kind: &ParamType) -> bool {
    fn has_array(k: &ParamType) -> bool {
        match k {
            ParamType::Array(_) => true,
            ParamType::FixedArray(inner, _) => has_array(inner),
            ParamType::Tuple(items) => items.iter().any(has_array),
            _ => false,
        }
    }
    match kind {
        ParamType::Array(inner) | ParamType::FixedArray(inner, _) => has_array(inner) || nests_dynamic_arrays(inner),
        ParamType::Tuple(items) => items.iter().any(nests_dynamic_arrays),
        _ => false,
    }
}

/// Whether `kind` contains a type whose encoding takes no bytes: `T[0]` or `()`.
fn has_zero_sized(kind: &ParamType) -> bool {
    match kind {
        ParamType::FixedArray(inner, n) => *n == 0 || has_zero_sized(inner),
        ParamType::Tuple(items) => items.is_empty() || items.iter().any(has_zero_sized),
        ParamType::Array(inner) => has_zero_sized(inner),
        _ => false,
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn type_list(types: &[ParamType]) -> String {
    types.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn decode_hex(s: &str) -> Result<Vec<u8>, hex::FromHexError> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    hex::decode(digits)
}

fn decode_topic(topic: &str, kind: &ParamType) -> Result<Token, String> {
    let digits = topic
        .strip_prefix("0x")
        .or_else(|| topic.strip_prefix("0X"))
        .unwrap_or(topic);
    if digits.len() != 64 {
        return Err(format!("{} hex digits, expected 64", digits.len()));
    }
    let mut word = [0u8; 32];
    hex::decode_to_slice(digits, &mut word).map_err(|e| format!("not hex: {e}"))?;
    // A topic is one 32-byte word: the common value types are read directly, without
    // ethabi's general decoder and its allocations (this is the per-log hot path).
    match kind {
        ParamType::Uint(_) => Ok(Token::Uint(ethabi::Uint::from_big_endian(&word))),
        ParamType::Int(_) => Ok(Token::Int(ethabi::Int::from_big_endian(&word))),
        ParamType::Address => Ok(Token::Address(ethabi::Address::from_slice(&word[12..]))),
        // Indexed reference types are stored as their keccak256: keep the hash.
        ParamType::String
        | ParamType::Bytes
        | ParamType::Array(_)
        | ParamType::FixedArray(..)
        | ParamType::Tuple(_) => Ok(Token::FixedBytes(word.to_vec())),
        _ => ethabi::decode(std::slice::from_ref(kind), &word)
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or_else(|| "empty topic".to_owned()),
    }
}

/// Renders a token as text: integers in decimal (signed for `int`), addresses and bytes as
/// lower-case 0x-hex, booleans as `true`/`false`, composites as `[a,b]` / `(a,b)`.
fn render(token: &Token) -> String {
    let mut out = String::new();
    render_into(token, &mut out);
    out
}

fn render_into(token: &Token, out: &mut String) {
    match token {
        Token::Address(a) => {
            out.push_str("0x");
            out.push_str(&hex::encode(a.as_bytes()));
        }
        Token::FixedBytes(b) | Token::Bytes(b) => {
            out.push_str("0x");
            out.push_str(&hex::encode(b));
        }
        Token::Int(v) => {
            if v.bit(255) {
                // Two's complement: the magnitude is !v + 1.
                let magnitude = (!*v).overflowing_add(1u8.into()).0;
                let _ = write!(out, "-{magnitude}");
            } else {
                let _ = write!(out, "{v}");
            }
        }
        Token::Uint(v) => {
            let _ = write!(out, "{v}");
        }
        Token::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Token::String(s) => out.push_str(s),
        Token::FixedArray(items) | Token::Array(items) => render_list(items, '[', ']', out),
        Token::Tuple(items) => render_list(items, '(', ')', out),
    }
}

fn render_list(items: &[Token], open: char, close: char, out: &mut String) {
    out.push(open);
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render_into(t, out);
    }
    out.push(close);
}

/// Splits `a, (b,c), d` at top-level commas.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() || !parts.is_empty() {
        parts.push(&s[start..]);
    }
    parts
}

/// Whether `ty` is a Solidity ABI type: an elementary type or a tuple, with array suffixes.
fn known_type(ty: &str) -> bool {
    let mut base = ty;
    while let Some(open) = base.strip_suffix(']').and_then(|b| b.rfind('[').map(|i| (i, b))) {
        let (i, b) = open;
        let size = &b[i + 1..];
        if !size.is_empty() && !size.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
        base = &b[..i];
    }
    if let Some(inner) = base.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        return split_top_level(inner).into_iter().all(|t| known_type(t.trim()));
    }
    let sized = |prefix: &str, ok: &dyn Fn(u32) -> bool| {
        base.strip_prefix(prefix)
            .is_some_and(|n| n.is_empty() || n.parse::<u32>().is_ok_and(ok))
    };
    matches!(base, "address" | "bool" | "string" | "bytes")
        || sized("uint", &|n| n % 8 == 0 && (8..=256).contains(&n))
        || sized("int", &|n| n % 8 == 0 && (8..=256).contains(&n))
        || base
            .strip_prefix("bytes")
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| (1..=32).contains(&n)))
}

/// Parses `Name(type [indexed] [name], ...)`.
fn parse_signature(sig: &str) -> Result<(String, Vec<Input>), EventConfigError> {
    let bad = |why: String| {
        EventConfigError(format!(
            "signature {sig:?} does not parse: {why}; write it like \"WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)\""
        ))
    };
    let sig = sig
        .trim()
        .strip_prefix("event ")
        .unwrap_or(sig.trim())
        .trim()
        .trim_end_matches(';');
    let open = sig.find('(').ok_or_else(|| bad("no '('".into()))?;
    if !sig.ends_with(')') {
        return Err(bad("it must end with ')'".into()));
    }
    let name = sig[..open].trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad(format!("{name:?} is not an event name")));
    }
    let mut inputs = Vec::new();
    for (i, part) in split_top_level(&sig[open + 1..sig.len() - 1]).into_iter().enumerate() {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (ty, indexed, pname) = match words.as_slice() {
            [ty] => (*ty, false, None),
            [ty, "indexed"] => (*ty, true, None),
            [ty, "indexed", n] => (*ty, true, Some(*n)),
            [ty, n] => (*ty, false, Some(*n)),
            _ => {
                return Err(bad(format!(
                    "parameter {} ({:?}) should be \"type [indexed] name\"",
                    i + 1,
                    part.trim()
                )));
            }
        };
        // ethabi's reader is lenient with names it does not know; check the grammar first.
        let kind = known_type(ty)
            .then(|| ethabi::param_type::Reader::read(ty).ok())
            .flatten()
            .ok_or_else(|| bad(format!("parameter {} has unknown type {ty:?}", i + 1)))?;
        let pname = pname.map(str::to_owned).unwrap_or_else(|| format!("arg{i}"));
        if inputs.iter().any(|(n, _, _): &Input| *n == pname) {
            return Err(bad(format!("parameter name {pname:?} appears twice")));
        }
        inputs.push((pname, kind, indexed));
    }
    Ok((name.to_owned(), inputs))
}

fn from_abi_file(path: &Path, name: &str) -> Result<(String, Vec<Input>), EventConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        EventConfigError(format!(
            "abi_path {:?} cannot be read ({e}); point it at a JSON ABI or a Hardhat/Foundry artifact",
            path.display()
        ))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EventConfigError(format!("abi_path {:?} is not JSON: {e}", path.display())))?;
    // A Hardhat or Foundry artifact keeps the ABI under "abi"; a plain ABI is the array itself.
    let abi = match &json {
        serde_json::Value::Object(o) => o.get("abi").cloned().unwrap_or(serde_json::Value::Null),
        other => other.clone(),
    };
    let contract: ethabi::Contract = serde_json::from_value(abi).map_err(|e| {
        EventConfigError(format!(
            "abi_path {:?} holds no valid ABI array (nor an artifact with \"abi\"): {e}",
            path.display()
        ))
    })?;
    let event = contract
        .events_by_name(name)
        .ok()
        .and_then(|v| v.first())
        .ok_or_else(|| {
            let names: Vec<&str> = contract.events().map(|e| e.name.as_str()).collect();
            EventConfigError(format!(
                "abi_path {:?} has no event named {name:?} (events: {}); fix [event] name",
                path.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        })?;
    if event.anonymous {
        return Err(EventConfigError(format!(
            "event {name:?} is anonymous: its logs carry no topic0 to match"
        )));
    }
    Ok((
        event.name.clone(),
        event
            .inputs
            .iter()
            .map(|p| (p.name.clone(), p.kind.clone(), p.indexed))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(sig: &str) -> EventSettings {
        EventSettings {
            signature: Some(sig.into()),
            abi_path: None,
            name: None,
            task_id_field: "taskId".into(),
            hash_field: "weightsHash".into(),
            trainer_field: Some("trainer".into()),
        }
    }

    const DEFAULT: &str =
        "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string weightsHash, uint256 timestamp)";

    #[test]
    fn default_signature_has_the_documented_topic0() {
        let spec = EventSpec::new(&settings(DEFAULT)).expect("valid");
        assert_eq!(spec.canonical(), "WeightsSubmitted(uint256,address,string,uint256)");
        assert_eq!(
            spec.topic0(),
            "0xe6fc37df8ee4c44d4cceb17fa0f9f15c60d8e9ddd12b24dd259462d090fe0808"
        );
    }

    #[test]
    fn bad_event_settings_are_explained() {
        let err = |s: EventSettings| EventSpec::new(&s).expect_err("invalid").to_string();
        let e = err(settings(
            "WeightsSubmitted(uint256 indexed taskId, address indexed trainer, string indexed weightsHash)",
        ));
        assert!(
            e.contains("indexed string") && e.contains("keccak256") && e.contains("make it non-indexed"),
            "{e}"
        );
        let mut s = settings(DEFAULT);
        s.hash_field = "hash".into();
        let e = err(s);
        assert!(e.contains("hash_field \"hash\" is not a parameter"), "{e}");
        let mut s = settings(DEFAULT);
        s.task_id_field = "task".into();
        assert!(err(s).contains("task_id_field \"task\""));
        let e = err(settings("WeightsSubmitted(uint256 taskId, strang weightsHash"));
        assert!(e.contains("does not parse"), "{e}");
        let e = err(settings(
            "WeightsSubmitted(uint256 taskId, strang weightsHash, address trainer)",
        ));
        assert!(e.contains("unknown type \"strang\""), "{e}");
    }

    /// Regression: `uint256[0][]` (and `()[]`) used to be accepted, and a 64-byte log
    /// declaring 2^32 - 1 elements then exhausted memory inside ethabi's decoder.
    #[test]
    fn zero_sized_types_are_refused() {
        for sig in [
            "WeightsSubmitted(uint256 indexed taskId, string weightsHash, uint256[0][] xs)",
            "WeightsSubmitted(uint256 indexed taskId, string weightsHash, uint8[0] xs)",
            "WeightsSubmitted(uint256 indexed taskId, string weightsHash, ()[] xs)",
            "WeightsSubmitted(uint256 indexed taskId, string weightsHash, (uint8,(uint8[0]))[] xs)",
        ] {
            let mut s = settings(sig);
            s.trainer_field = None;
            let e = EventSpec::new(&s).expect_err(sig).to_string();
            assert!(e.contains("zero-length array or an empty tuple"), "{sig}: {e}");
        }
        let mut s = settings("WeightsSubmitted(uint256 indexed taskId, string weightsHash, uint256[1][] xs)");
        s.trainer_field = None;
        let spec = EventSpec::new(&s).expect("non-empty fixed arrays are fine");
        // The log that used to exhaust memory is now merely a well-formed-or-not log of a
        // valid spec: with a one-element array type it needs 32 bytes per element and fails.
        let mut data = ethabi::encode(&[Token::String("h".into()), Token::Uint(128u8.into())]);
        data.extend_from_slice(&[0u8; 28]);
        data.extend_from_slice(&[0xff; 4]);
        let topics = vec![spec.topic0().to_owned(), format!("0x{}", "00".repeat(32))];
        assert!(matches!(
            spec.decode(&topics, Some(&format!("0x{}", hex::encode(data)))),
            Decoded::Rejected(_)
        ));
    }

    #[test]
    fn oversized_data_is_rejected_before_decoding() {
        let spec = EventSpec::new(&settings(DEFAULT)).expect("valid");
        let topics = vec![
            spec.topic0().to_owned(),
            format!("0x{}", "00".repeat(32)),
            format!("0x{}", "00".repeat(32)),
        ];
        let huge = format!("0x{}", "00".repeat(256 * 1024 + 1));
        assert!(matches!(spec.decode(&topics, Some(&huge)), Decoded::Rejected(r) if r.contains("at most")));
        let mut s = settings("WeightsSubmitted(uint256 indexed taskId, string weightsHash, uint256[][] xs)");
        s.trainer_field = None;
        let nested = EventSpec::new(&s).expect("valid");
        assert_eq!(nested.max_data_hex, 2 + 2 * 8 * 1024);
    }

    #[test]
    fn int_task_ids_render_signed() {
        let minus_one = Token::Int(ethabi::ethereum_types::U256::MAX);
        assert_eq!(render(&minus_one), "-1");
        assert_eq!(render(&Token::Int(5u8.into())), "5");
        assert_eq!(render(&Token::Bool(true)), "true");
    }
}
