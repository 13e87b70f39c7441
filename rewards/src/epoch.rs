//! Epochs: fixed-length windows of receipt time, aligned to the Unix epoch.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// One epoch: `[start, end)` of the time the platform received submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// Epochs since 1970-01-01T00:00:00Z.
    pub index: i64,
    /// First instant in it.
    pub start: DateTime<Utc>,
    /// First instant after it.
    pub end: DateTime<Utc>,
}

impl Epoch {
    /// Epoch number `index` of length `len` (which must be whole seconds, as policies are).
    pub fn at(len: Duration, index: i64) -> Epoch {
        let secs = len.as_secs() as i64;
        let at = |i: i64| Utc.timestamp_opt(i.saturating_mul(secs), 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC);
        Epoch { index, start: at(index), end: at(index + 1) }
    }

    /// The epoch of length `len` that contains `t`.
    pub fn of(len: Duration, t: DateTime<Utc>) -> Epoch {
        Epoch::at(len, t.timestamp().div_euclid(len.as_secs() as i64))
    }

    /// `text` as an epoch: its index (`20417`), or a date or RFC 3339 time inside it
    /// (`2026-11-25`, `2026-11-25T13:00:00Z`).
    pub fn parse(len: Duration, text: &str) -> Option<Epoch> {
        if let Ok(index) = text.parse::<i64>() {
            return Some(Epoch::at(len, index));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(Epoch::of(len, t.with_timezone(&Utc)));
        }
        let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Epoch::of(len, day.and_hms_opt(0, 0, 0)?.and_utc()))
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{} .. {})", self.index, self.start.to_rfc3339(), self.end.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_align_to_the_unix_epoch() {
        let day = Duration::from_secs(86_400);
        let t = DateTime::parse_from_rfc3339("2026-11-25T13:14:15Z").expect("t").with_timezone(&Utc);
        let e = Epoch::of(day, t);
        assert_eq!(e.start.to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert_eq!(e.end.to_rfc3339(), "2026-11-26T00:00:00+00:00");
        assert_eq!(Epoch::parse(day, "2026-11-25"), Some(e));
        assert_eq!(Epoch::parse(day, &e.index.to_string()), Some(e));
        assert_eq!(Epoch::parse(day, "2026-11-25T23:59:59Z"), Some(e));
        assert_eq!(Epoch::parse(day, "yesterday"), None);
        let ten = Duration::from_secs(10);
        assert_eq!(Epoch::of(ten, t).start.to_rfc3339(), "2026-11-25T13:14:10+00:00");
    }
}
