//! The poller's health, written by the poller and read by `/v1/status` and `/readyz`. A std
//! `Mutex` is right here: it is held for a few field copies and never across an `.await`.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::types::Cursor;

/// A snapshot of the poller's state.
#[derive(Debug, Clone, Default)]
pub struct PollState {
    /// When the last poll (page request) finished, successfully or not.
    pub last_poll_at: Option<SystemTime>,
    /// Whether it succeeded.
    pub last_poll_ok: Option<bool>,
    /// When a page was last fetched successfully (monotonic, for readiness).
    pub last_success: Option<Instant>,
    /// The current fault, while the mirror node fails.
    pub last_error: Option<String>,
    /// The committed cursor.
    pub cursor: Option<Cursor>,
    /// Seconds behind the head: now minus the cursor's consensus time while backfilling,
    /// 0 once a poll reached the mirror node's head.
    pub lag_seconds: Option<f64>,
}

/// Shared poll status.
#[derive(Debug, Default)]
pub struct PollStatus {
    inner: Mutex<PollState>,
}

impl PollStatus {
    /// A copy of the current state.
    pub fn snapshot(&self) -> PollState {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut PollState)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }

    /// A page was fetched and committed.
    pub fn page_ok(&self, cursor: Option<Cursor>, at_head: bool) {
        self.update(|s| {
            s.last_poll_at = Some(SystemTime::now());
            s.last_poll_ok = Some(true);
            s.last_success = Some(Instant::now());
            s.last_error = None;
            s.cursor = cursor.or(s.cursor);
            s.lag_seconds = Some(if at_head {
                0.0
            } else {
                s.cursor
                    .and_then(|c| {
                        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?;
                        Some((now.as_secs_f64() - c.timestamp.as_secs_f64()).max(0.0))
                    })
                    .unwrap_or(0.0)
            });
        });
    }

    /// A poll failed (possibly to be retried).
    pub fn failed(&self, error: String) {
        self.update(|s| {
            s.last_poll_at = Some(SystemTime::now());
            s.last_poll_ok = Some(false);
            s.last_error = Some(error);
        });
    }

    /// Sets the cursor loaded at start-up.
    pub fn set_cursor(&self, cursor: Option<Cursor>) {
        self.update(|s| s.cursor = cursor);
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready_reason(&self, max_age: Duration) -> Option<String> {
        let s = self.snapshot();
        match s.last_success {
            Some(t) if t.elapsed() <= max_age => None,
            last => {
                let age = last.map_or("no poll has succeeded yet".to_owned(), |t| {
                    format!("the last successful poll was {}s ago", t.elapsed().as_secs())
                });
                Some(match s.last_error {
                    Some(e) => format!("{age}; mirror node: {e}"),
                    None => age,
                })
            }
        }
    }
}
