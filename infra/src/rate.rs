//! Rate limits: one token bucket per key (a principal, a contributor), refilled continuously.
//!
//! A request takes as many tokens as it costs (one SQL statement, one per event); when the
//! bucket is short the caller is told how long until it is not, for a `429` with
//! `Retry-After`. The number of buckets is bounded: when the table is full, buckets that have
//! refilled completely (indistinguishable from new ones) are dropped, and if none has, new keys
//! share one overflow bucket, so inventing keys buys an attacker nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One bucket's shape: `per_second` tokens refill continuously up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained tokens per second (`0` turns the limit off).
    pub per_second: f64,
    /// Tokens a quiet key may spend at once.
    pub burst: f64,
}

impl Rate {
    /// Whether this limit applies at all.
    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }
}

/// `[rate]`: who may do how much. Open mode's local admin (loopback, no principals) is not
/// limited per principal; contributors are limited whoever submits for them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// SQL statements per principal (HTTP, Flight SQL, Delta Sharing queries).
    pub sql: Rate,
    /// Events submitted per principal.
    pub intake_events: Rate,
    /// Events submitted per `contributor_id`, whichever principal sends them.
    pub contributor_events: Rate,
    /// Validation requests (leases, votes) per validator.
    pub validation: Rate,
    /// Review labels and queue requests per reviewer.
    pub labels: Rate,
    /// Buckets kept per limit before idle ones are dropped.
    pub max_keys: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            sql: Rate { per_second: 20.0, burst: 100.0 },
            intake_events: Rate { per_second: 20_000.0, burst: 100_000.0 },
            contributor_events: Rate { per_second: 50.0, burst: 5_000.0 },
            validation: Rate { per_second: 5.0, burst: 100.0 },
            labels: Rate { per_second: 5.0, burst: 100.0 },
            max_keys: 100_000,
        }
    }
}

impl RateConfig {
    /// What is wrong with the configuration, one line each.
    pub fn problems(&self) -> Vec<String> {
        [
            ("sql", self.sql),
            ("intake_events", self.intake_events),
            ("contributor_events", self.contributor_events),
            ("validation", self.validation),
            ("labels", self.labels),
        ]
        .into_iter()
        .filter(|(_, r)| !(r.per_second >= 0.0 && r.per_second.is_finite() && r.burst >= 1.0 && r.burst.is_finite()))
        .map(|(name, _)| format!("rate.{name}: per_second must be >= 0 and burst >= 1"))
        .chain((self.max_keys == 0).then(|| "rate.max_keys must be at least 1".to_string()))
        .collect()
    }
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// When enough tokens will be there.
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = now;
    }
}

/// Key under which keys past [`RateConfig::max_keys`] share a bucket.
const OVERFLOW: &str = "\u{0}overflow";

/// Token buckets for one limit, by key.
#[derive(Debug)]
pub struct Limiter {
    name: &'static str,
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
    refused: IntCounterVec,
}

impl Limiter {
    fn new(name: &'static str, rate: Rate, max_keys: usize, refused: IntCounterVec) -> Self {
        Self { name, rate, max_keys: max_keys.max(1), buckets: Mutex::new(HashMap::new()), refused }
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until it could. A cost above
    /// the burst takes the whole (full) bucket, so a large request waits but is never starved.
    pub fn take(&self, key: &str, cost: f64) -> std::result::Result<(), Limited> {
        if !self.rate.enabled() {
            return Ok(());
        }
        let (rate, now) = (self.rate, Instant::now());
        let cost = cost.min(rate.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            buckets.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < rate.burst
            });
        }
        let key = if buckets.contains_key(key) || buckets.len() < self.max_keys { key } else { OVERFLOW };
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: rate.burst, at: now });
        bucket.refill(rate, now);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let wait = (cost - bucket.tokens) / rate.per_second;
        drop(buckets);
        self.refused.with_label_values(&[self.name]).inc();
        Err(Limited { retry_after: Duration::from_secs_f64(wait) })
    }

    /// Buckets held.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Every rate limit of a process; refusals count in `gata_rate_limited_total{limit}`.
#[derive(Debug)]
pub struct RateLimits {
    /// SQL statements per principal.
    pub sql: Limiter,
    /// Events per principal at intake.
    pub intake: Limiter,
    /// Events per contributor at intake.
    pub contributors: Limiter,
    /// Validation requests per validator.
    pub validation: Limiter,
    /// Review labels and queue requests per reviewer.
    pub labels: Limiter,
}

impl RateLimits {
    /// The limits of `cfg`, with their metric on `registry`.
    pub fn new(cfg: &RateConfig, registry: &Registry) -> Result<Self> {
        let refused = IntCounterVec::new(
            Opts::new("gata_rate_limited_total", "Requests refused with 429 by a rate limit, by limit"),
            &["limit"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        let limiter = |name, rate| Limiter::new(name, rate, cfg.max_keys, refused.clone());
        Ok(Self {
            sql: limiter("sql", cfg.sql),
            intake: limiter("intake_events", cfg.intake_events),
            contributors: limiter("contributor_events", cfg.contributor_events),
            validation: limiter("validation", cfg.validation),
            labels: limiter("labels", cfg.labels),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64, max_keys: usize) -> Limiter {
        let cfg = RateConfig { sql: Rate { per_second, burst }, max_keys, ..RateConfig::default() };
        RateLimits::new(&cfg, &Registry::new()).unwrap().sql
    }

    #[test]
    fn a_burst_passes_then_the_bucket_refuses_with_a_wait() {
        let l = limiter(10.0, 5.0, 10);
        for _ in 0..5 {
            l.take("ana", 1.0).unwrap();
        }
        let refused = l.take("ana", 1.0).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(100));
        assert_eq!(refused.retry_after_secs(), 1);
        l.take("ben", 5.0).unwrap();
    }

    #[test]
    fn a_cost_over_the_burst_takes_the_whole_bucket() {
        let l = limiter(10.0, 5.0, 10);
        l.take("ana", 6.0).unwrap();
        let refused = l.take("ana", 6.0).unwrap_err();
        assert!(refused.retry_after > Duration::from_millis(400), "{refused:?}");
    }

    #[test]
    fn invented_keys_share_one_overflow_bucket() {
        let l = limiter(1.0, 2.0, 3);
        for k in ["a", "b", "c"] {
            l.take(k, 2.0).unwrap();
        }
        // The table is full of spent buckets: new keys share the overflow bucket.
        l.take("d", 2.0).unwrap();
        assert!(l.take("e", 1.0).is_err());
        assert!(l.keys() <= 4);
    }

    #[test]
    fn zero_turns_a_limit_off_and_bad_values_are_problems() {
        let l = limiter(0.0, 1.0, 1);
        for _ in 0..100 {
            l.take("ana", 1000.0).unwrap();
        }
        let mut cfg = RateConfig::default();
        assert!(cfg.problems().is_empty());
        cfg.sql.burst = 0.5;
        cfg.max_keys = 0;
        assert_eq!(cfg.problems().len(), 2);
    }
}
