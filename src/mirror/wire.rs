//! The mirror node's JSON shapes for `/api/v1/contracts/{id}/results/logs`, parsed by key
//! (field order differs between versions) and tolerant of the documented nulls.

use serde::{Deserialize, Serialize};

/// One page of logs.
#[derive(Debug, Deserialize)]
pub struct LogsPage {
    /// The logs, in the order asked for.
    pub logs: Vec<WireLog>,
    /// Pagination.
    #[serde(default)]
    pub links: Links,
}

/// `links`.
#[derive(Debug, Default, Deserialize)]
pub struct Links {
    /// A relative path to the next page, or null.
    pub next: Option<String>,
}

/// One log as served. Kept whole so a rejected log can be stored as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireLog {
    /// Emitting contract's EVM address.
    #[serde(default)]
    pub address: Option<String>,
    /// Bloom filter.
    #[serde(default)]
    pub bloom: Option<String>,
    /// `shard.realm.num` of the emitting contract.
    #[serde(default)]
    pub contract_id: Option<String>,
    /// Non-indexed data, `0x`-hex; may be `"0x"` or null.
    #[serde(default)]
    pub data: Option<String>,
    /// Position in the transaction's log chain.
    pub index: u32,
    /// Topics; null topics are dropped by the server.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// 48-byte record file hash.
    #[serde(default)]
    pub block_hash: Option<String>,
    /// Block height.
    #[serde(default)]
    pub block_number: Option<i64>,
    /// Top-level contract.
    #[serde(default)]
    pub root_contract_id: Option<String>,
    /// `"seconds.nanos"`.
    pub timestamp: String,
    /// `0x` + 64 hex.
    #[serde(default)]
    pub transaction_hash: Option<String>,
    /// Position of the transaction in the block.
    #[serde(default)]
    pub transaction_index: Option<i64>,
}

/// An error body: `{"_status": {"messages": [{"message": …}]}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The status object.
    #[serde(rename = "_status")]
    pub status: ErrorStatus,
}

/// `_status`.
#[derive(Debug, Deserialize)]
pub struct ErrorStatus {
    /// One message per problem.
    #[serde(default)]
    pub messages: Vec<ErrorMessage>,
}

/// One error message.
#[derive(Debug, Deserialize)]
pub struct ErrorMessage {
    /// Human text.
    #[serde(default)]
    pub message: String,
}

/// The messages of an error body, joined; or a short excerpt of a body that is not one.
pub fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if !e.status.messages.is_empty() => e
            .status
            .messages
            .into_iter()
            .map(|m| m.message)
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    }
}
