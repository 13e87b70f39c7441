//! Validation rules shared by every event kind, and the limits they enforce.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One broken rule: where (a JSON path such as `responses[1].text`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON path of the offending field; empty for the whole object.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub reason: String,
    /// Set when the problem is size (the HTTP answer is then 413 rather than 422).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub too_large: bool,
}

impl Violation {
    /// A violation of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into(), too_large: false }
    }

    /// A size violation (answered with 413).
    pub fn too_large(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { too_large: true, ..Self::new(field, reason) }
    }

    /// A deserialization failure, located by its path.
    pub fn from_serde(err: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        Self::new(if path == "." { String::new() } else { path }, err.inner().to_string())
    }
}

/// Per-event limits enforced at intake and again by the sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest prompt, caption or answer text, in bytes (`32768`).
    pub max_text_bytes: usize,
    /// Longest identifier (`contributor_id`, `turn_id`, …), in bytes (`128`).
    pub max_id_bytes: usize,
    /// Most model answers in one chat turn (`16`); the least is always 2.
    pub max_responses: usize,
    /// Largest decoded image, in bytes (`786432`, 768 KiB, so a record fits Kafka's 1 MB default).
    pub max_image_bytes: usize,
    /// Widest or tallest image, in pixels (`8192`).
    pub max_image_side: u32,
    /// How far in the future `occurred_at` may be, for clock skew (`5m`).
    #[serde(with = "humantime_serde")]
    pub max_future_skew: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_bytes: 32 * 1024,
            max_id_bytes: 128,
            max_responses: 16,
            max_image_bytes: 768 * 1024,
            max_image_side: 8192,
            max_future_skew: std::time::Duration::from_secs(300),
        }
    }
}

/// An identifier under the default limits, as a regular expression (the API description's
/// `pattern`): 1 to 128 bytes of printable ASCII without spaces.
pub const ID_PATTERN: &str = r"^[!-~]{1,128}$";

impl Limits {
    /// Checks an identifier (contributor, worker, license…): non-empty, at most
    /// `max_id_bytes`, printable ASCII without spaces.
    pub fn check_id(&self, field: &str, value: &str) -> Result<(), Violation> {
        let max = self.max_id_bytes;
        if value.is_empty() {
            Err(Violation::new(field, "must not be empty"))
        } else if value.len() > max {
            Err(Violation::too_large(field, format!("is {} bytes; at most {max}", value.len())))
        } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
            Err(Violation::new(field, "must be printable ASCII without spaces"))
        } else {
            Ok(())
        }
    }

    /// These limits without the clock check on `occurred_at`, for reading the log back long
    /// after intake.
    pub fn for_replay(&self) -> Limits {
        Limits { max_future_skew: std::time::Duration::MAX, ..self.clone() }
    }

    /// Problems with the limits themselves.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_responses < 2 {
            out.push("ingest.limits.max_responses must be at least 2".into());
        }
        if self.max_id_bytes == 0 || self.max_text_bytes == 0 || self.max_image_bytes == 0 {
            out.push("ingest.limits sizes must be positive".into());
        }
        out
    }
}

/// The earliest `occurred_at` accepted: nothing in this platform predates 2020.
const EARLIEST: &str = "2020-01-01T00:00:00Z";
/// [`EARLIEST`] in seconds since the epoch.
const EARLIEST_SECS: i64 = 1_577_836_800;

/// Collects violations for one event.
#[derive(Debug)]
pub(crate) struct Checker<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) out: Vec<Violation>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(limits: &'a Limits) -> Self {
        Self { limits, out: Vec::new() }
    }

    /// Records a violation when `ok` is false.
    pub(crate) fn require(&mut self, ok: bool, field: impl Into<String>, reason: impl Into<String>) {
        if !ok {
            self.out.push(Violation::new(field, reason));
        }
    }

    /// An identifier: see [`Limits::check_id`].
    pub(crate) fn id(&mut self, field: &str, value: &str) {
        if let Err(v) = self.limits.check_id(field, value) {
            self.out.push(v);
        }
    }

    /// Free text: non-empty after trimming, bounded.
    pub(crate) fn text(&mut self, field: &str, value: &str) {
        let max = self.limits.max_text_bytes;
        if value.trim().is_empty() {
            self.out.push(Violation::new(field, "must not be empty"));
        } else if value.len() > max {
            self.out.push(Violation::too_large(field, format!("is {} bytes; at most {max}", value.len())));
        }
    }

    /// Optional free text: bounded when present.
    pub(crate) fn optional_text(&mut self, field: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.text(field, v);
        }
    }

    /// The fields every chat event carries: who, which session and turn, when.
    pub(crate) fn turn_header(
        &mut self,
        contributor_id: &str,
        session_id: Option<&str>,
        turn_id: &str,
        occurred_at: DateTime<Utc>,
    ) {
        self.id("contributor_id", contributor_id);
        if let Some(session) = session_id {
            self.id("session_id", session);
        }
        self.id("turn_id", turn_id);
        self.timestamp("occurred_at", occurred_at);
    }

    /// A timestamp: not before 2020, not further in the future than the allowed skew.
    pub(crate) fn timestamp(&mut self, field: &str, value: DateTime<Utc>) {
        // A skew too large to add to now means "no upper bound" (used when replaying the log).
        let latest = chrono::Duration::from_std(self.limits.max_future_skew)
            .ok()
            .and_then(|skew| Utc::now().checked_add_signed(skew));
        if value.timestamp() < EARLIEST_SECS {
            self.out.push(Violation::new(field, format!("{value} is before {EARLIEST}")));
        } else if latest.is_some_and(|latest| value > latest) {
            self.out.push(Violation::new(field, format!("{value} is in the future (server time {})", Utc::now())));
        }
    }
}

/// Parses one event object. Valid events deserialize straight from the bytes; only a failure
/// takes the slower way through a JSON value, which locates the problem by its path.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Vec<Violation>> {
    if json.trim_ascii_start().first() == Some(&b'{')
        && let Ok(parsed) = serde_json::from_slice(json)
    {
        return Ok(parsed);
    }
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| vec![Violation::new("", format!("malformed JSON: {e}"))])?;
    if !value.is_object() {
        return Err(vec![Violation::new("", "expected a JSON object".to_string())]);
    }
    serde_path_to_error::deserialize(value).map_err(|e| vec![Violation::from_serde(&e)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_text_and_times_are_checked() {
        let limits = Limits::default();
        let mut c = Checker::new(&limits);
        c.id("a", "ok_id-1");
        c.id("b", "");
        c.id("c", "has space");
        c.id("d", &"x".repeat(200));
        c.text("e", "   ");
        c.timestamp("f", "2019-12-31T23:59:59Z".parse().expect("ts"));
        c.timestamp("g", Utc::now() + chrono::Duration::hours(1));
        c.timestamp("h", Utc::now());
        let fields: Vec<_> = c.out.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["b", "c", "d", "e", "f", "g"]);
        assert!(c.out[2].too_large);
    }
}
