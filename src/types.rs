//! Small validated value types shared by every component: consensus timestamps, the poller's
//! cursor, object keys ("weights hashes") and task ids. Each is parsed once at the edge (wire,
//! config, HTTP path) and trusted afterwards. Nothing here does I/O.

use std::fmt;
use std::str::FromStr;

/// A Hedera consensus timestamp, `"seconds.nanos"`. Parsed as text, never through a float,
/// because an `f64` cannot hold nanosecond precision at today's epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConsensusTimestamp {
    /// Whole seconds since the Unix epoch.
    pub secs: u64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

/// Why a consensus timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid consensus timestamp {input:?}: expected \"seconds.nanos\" such as \"1733300000.123456789\"")]
pub struct TimestampError {
    input: String,
}

/// The largest seconds value accepted: keeps `secs * 1e9 + nanos` inside an `i64`, which the
/// store uses as a sortable key (the year 2262; the mirror node's own limit is 10 digits).
const MAX_SECS: u64 = (i64::MAX as u64) / 1_000_000_000 - 1;

impl ConsensusTimestamp {
    /// Builds a timestamp from parts; `nanos` must be below one billion.
    pub fn new(secs: u64, nanos: u32) -> Option<Self> {
        (nanos < 1_000_000_000 && secs <= MAX_SECS).then_some(Self { secs, nanos })
    }

    /// Nanoseconds since the epoch, used as the store's sort key.
    pub fn as_nanos(self) -> i64 {
        // Bounded by MAX_SECS in every constructor, so this cannot overflow. The fields are
        // public, though: a value built by hand past the bound saturates instead of
        // panicking (debug) or wrapping to a negative key (release).
        let ns = self
            .secs
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(self.nanos));
        i64::try_from(ns).unwrap_or(i64::MAX)
    }

    /// Inverse of [`Self::as_nanos`]. Out-of-range input (a corrupt sort key, arithmetic on
    /// one) is clamped into the type's bound rather than producing a value that `new` and
    /// `from_str` would refuse.
    pub fn from_nanos(ns: i64) -> Self {
        // Defect found by tests/api/properties.rs `from_nanos_stays_in_bounds`: only `max(0)`
        // was applied, so ns >= (MAX_SECS + 1) * 1e9 gave secs = MAX_SECS + 1, a timestamp
        // whose own Display did not parse back (and which broke the MAX_SECS invariant that
        // `as_nanos` relies on).
        const MAX_NANOS: i64 = ((MAX_SECS + 1) * 1_000_000_000 - 1) as i64;
        let ns = ns.clamp(0, MAX_NANOS) as u64;
        Self {
            secs: ns / 1_000_000_000,
            nanos: (ns % 1_000_000_000) as u32,
        }
    }

    /// Seconds as a float, for lag gauges only (never for cursors).
    pub fn as_secs_f64(self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }
}

impl FromStr for ConsensusTimestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TimestampError {
            input: s.chars().take(64).collect(),
        };
        let (secs, nanos) = match s.split_once('.') {
            Some((secs, nanos)) => (secs, Some(nanos)),
            None => (s, None),
        };
        if secs.is_empty() || secs.len() > 10 || !secs.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let secs: u64 = secs.parse().map_err(|_| err())?;
        let nanos = match nanos {
            None => 0,
            Some(n) if !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()) => {
                // "5.1" is 5.100000000: right-pad to nine digits.
                let scale = 10u32.pow(9 - n.len() as u32);
                n.parse::<u32>().map_err(|_| err())? * scale
            }
            Some(_) => return Err(err()),
        };
        Self::new(secs, nanos).ok_or_else(err)
    }
}

impl fmt::Display for ConsensusTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)
    }
}

/// The poller's position: the last log it has fully handled, by (timestamp, index). The mirror
/// node orders logs by this pair, and resuming with `timestamp=gte:T&index=gt:I` is the only
/// safe keyset continuation (logs sharing `T` may become visible in stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Consensus timestamp of the last handled log.
    pub timestamp: ConsensusTimestamp,
    /// Its index within the transaction's log chain.
    pub index: u32,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.timestamp, self.index)
    }
}

/// An object key recorded on chain: `[A-Za-z0-9._-]{1,256}`, other than `.` and `..`. The
/// rule keeps every accepted key a single, literal URL path segment, so no hash can escape the
/// configured prefix or be normalised into another key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WeightsHash(String);

/// Why a string is not an acceptable object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Empty string.
    #[error("the hash is empty")]
    Empty,
    /// More than 256 bytes.
    #[error("the hash is {0} characters long; at most 256 are allowed")]
    TooLong(usize),
    /// `.` or `..`.
    #[error("the hash may not be \".\" or \"..\"")]
    DotSegment,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("the hash contains {0:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")]
    BadChar(char),
}

impl WeightsHash {
    /// Validates `s` against the object-key rule.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        if s.is_empty() {
            return Err(HashError::Empty);
        }
        if s.len() > 256 {
            return Err(HashError::TooLong(s.chars().count()));
        }
        if s == "." || s == ".." {
            return Err(HashError::DotSegment);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(HashError::BadChar(c));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WeightsHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task id as it appears in an HTTP path: a decimal integer, normalised (`007` is `7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId(String);

/// Why a path segment is not a task id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task id must be a decimal integer such as 42 (no sign, no spaces)")]
pub struct TaskIdError;

impl TaskId {
    /// Parses a decimal task id; at most 78 digits (a uint256) after leading zeros are dropped.
    pub fn parse(s: &str) -> Result<Self, TaskIdError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TaskIdError);
        }
        let trimmed = s.trim_start_matches('0');
        let normal = if trimmed.is_empty() { "0" } else { trimmed };
        if normal.len() > 78 {
            return Err(TaskIdError);
        }
        Ok(Self(normal.to_owned()))
    }

    /// The normalised decimal text, as stored in `weights_submissions.task_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_text_and_print_nine_digits() {
        let ts: ConsensusTimestamp = "1733300000.123456789".parse().expect("valid");
        assert_eq!((ts.secs, ts.nanos), (1_733_300_000, 123_456_789));
        assert_eq!(ts.to_string(), "1733300000.123456789");
        assert_eq!("5.1".parse::<ConsensusTimestamp>().expect("valid").nanos, 100_000_000);
        assert_eq!(
            "0".parse::<ConsensusTimestamp>().expect("valid").to_string(),
            "0.000000000"
        );
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "1.1234567890",
            "-1",
            "1e9",
            "12345678901",
            "1.2.3",
            " 1",
        ] {
            assert!(bad.parse::<ConsensusTimestamp>().is_err(), "{bad:?} must not parse");
        }
        let ns = ts.as_nanos();
        assert_eq!(ConsensusTimestamp::from_nanos(ns), ts);
    }

    /// Regression (found by the `from_nanos_stays_in_bounds` property): the largest sort
    /// keys used to give `secs = MAX_SECS + 1`, whose text did not parse back.
    #[test]
    fn from_nanos_clamps_into_the_bound() {
        for ns in [i64::MAX, 9_223_372_036_000_000_000, i64::MIN, -1] {
            let ts = ConsensusTimestamp::from_nanos(ns);
            assert!(ts.secs <= MAX_SECS, "{ns}: {ts:?}");
            assert_eq!(ts.to_string().parse::<ConsensusTimestamp>(), Ok(ts), "{ns}");
        }
        let top = ConsensusTimestamp::new(MAX_SECS, 999_999_999).expect("the largest value");
        assert_eq!(ConsensusTimestamp::from_nanos(i64::MAX), top);
        assert_eq!(ConsensusTimestamp::from_nanos(top.as_nanos()), top);
        let by_hand = ConsensusTimestamp {
            secs: u64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(by_hand.as_nanos(), i64::MAX, "saturates, never wraps negative");
    }

    #[test]
    fn hashes_follow_the_object_key_rule() {
        for ok in ["f402e7", "model-v1.0_final", "a", &"x".repeat(256), "..."] {
            assert!(WeightsHash::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "é", "%2e", &"x".repeat(257)] {
            assert!(WeightsHash::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn task_ids_are_normalised_decimals() {
        assert_eq!(TaskId::parse("007").expect("valid").as_str(), "7");
        assert_eq!(TaskId::parse("0").expect("valid").as_str(), "0");
        assert_eq!(TaskId::parse("000").expect("valid").as_str(), "0");
        for bad in ["", "+1", "-1", "1.0", "0x1", " 1", &"9".repeat(79)] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
