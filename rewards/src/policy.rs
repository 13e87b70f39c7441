//! The reward policy: versioned data (`policy/v1.toml`, …), integers only.
//!
//! Amounts are token base units (`u64`), multipliers and penalties basis points (10 000 = 100 %),
//! and score thresholds basis points of the score. Built-in policies are compiled in, so
//! `--policy v2` means the same bytes wherever the binary runs; any other value is a file path.

use std::{collections::BTreeMap, time::Duration};

use gata_contract::EventKind;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Result, RewardsError};

/// Basis points in one whole.
pub const BP: u64 = 10_000;

/// The policies shipped with the binary: (name, TOML).
const BUILTIN: [(&str, &str); 3] = [
    ("v1", include_str!("../../policy/v1.toml")),
    ("v2", include_str!("../../policy/v2.toml")),
    ("demo", include_str!("../../policy/demo.toml")),
];

/// A quality tier of one kind of contribution.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Its name, shown to contributors.
    pub name: String,
    /// The least score (basis points of the score, -10 000 ..= 10 000) that reaches it.
    pub min_score_bp: i64,
    /// What the base amount is multiplied by, in basis points.
    pub multiplier_bp: u64,
}

/// How one kind of contribution is paid.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindPolicy {
    /// Scores whose scorer version starts with this are the ones paid on.
    pub scorer: String,
    /// Base amount per accepted submission.
    pub base: u64,
    /// Tiers, best first; the last takes any score.
    pub tiers: Vec<Tier>,
}

/// Penalties for flagged bot or Sybil clusters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Penalties {
    /// Score reason codes that flag a contributor for the epoch.
    pub codes: Vec<String>,
    /// Share of a flagged contributor's epoch contribution rewards forfeited, in basis points.
    pub forfeit_bp: u64,
}

/// Rewards for DVA workers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validators {
    /// Paid per vote that agreed with the consensus.
    pub per_agreeing_vote: u64,
}

/// A reward policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Its version (`v1`), recorded with every reward.
    pub version: String,
    /// Decimals of the token (base units per token = 10^decimals).
    pub decimals: u32,
    /// Epoch length.
    #[serde(with = "humantime_serde")]
    pub epoch: Duration,
    /// Most one contributor earns for its submissions in one epoch.
    pub cap_per_epoch: u64,
    /// Per kind of contribution, by kind name (`chat_turn`, `preference`, `image_text_pair`).
    pub kinds: BTreeMap<String, KindPolicy>,
    /// Cluster penalties.
    pub penalties: Penalties,
    /// Validator rewards.
    pub validators: Validators,
    /// SHA-256 of the policy text, recorded with every reward (set on load).
    #[serde(skip)]
    pub sha256: String,
}

impl Policy {
    /// The built-in policy `name` (`v1`, `v2`, `demo`); `None` for any other name (a policy
    /// file is the caller's to read, then [`Policy::parse`]).
    pub fn builtin(name: &str) -> Option<Policy> {
        let (name, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(Policy::parse(name, text).expect("the built-in policies parse (tested)"))
    }

    /// The names of the built-in policies.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(n, _)| *n)
    }

    /// Parses and checks a policy's TOML text; `source_name` names it in errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Policy> {
        let mut policy: Policy = toml::from_str(text)
            .map_err(|source| RewardsError::PolicySyntax { source_name: source_name.to_string(), source })?;
        policy
            .check()
            .map_err(|reason| RewardsError::PolicyInvalid { source_name: source_name.to_string(), reason })?;
        policy.sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(policy)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.version.is_empty() || self.version.len() > 64 {
            return Err("version must be 1 to 64 characters".into());
        }
        if self.epoch.as_secs() == 0 || self.epoch.subsec_nanos() != 0 {
            return Err("epoch must be a whole number of seconds, at least 1s".into());
        }
        if self.penalties.forfeit_bp > BP {
            return Err(format!("penalties.forfeit_bp {} is more than {BP}", self.penalties.forfeit_bp));
        }
        for name in self.kinds.keys() {
            if !EventKind::ALL.iter().any(|k| k.name() == name) {
                return Err(format!("kinds.{name}: not a kind of submission"));
            }
        }
        for kind in EventKind::ALL {
            let Some(k) = self.kinds.get(kind.name()) else {
                return Err(format!("kinds.{} is missing", kind.name()));
            };
            let ctx = |m: String| format!("kinds.{}: {m}", kind.name());
            if k.scorer.is_empty() {
                return Err(ctx("scorer must name a scorer version prefix".into()));
            }
            let Some(last) = k.tiers.last() else { return Err(ctx("needs at least one tier".into())) };
            if last.min_score_bp > -(BP as i64) {
                return Err(ctx(format!("the last tier ({}) must take any score: min_score_bp = -{BP}", last.name)));
            }
            if k.tiers.windows(2).any(|w| w[0].min_score_bp <= w[1].min_score_bp) {
                return Err(ctx("tiers must be listed best first, min_score_bp strictly falling".into()));
            }
        }
        Ok(())
    }

    /// The policy for submissions of `kind`.
    pub fn kind(&self, kind: EventKind) -> &KindPolicy {
        // `check` made sure every kind is present.
        &self.kinds[kind.name()]
    }
}

impl KindPolicy {
    /// The tier a score of `score_bp` falls in (the last tier takes anything).
    pub fn tier(&self, score_bp: i64) -> &Tier {
        self.tiers.iter().find(|t| score_bp >= t.min_score_bp).unwrap_or_else(|| &self.tiers[self.tiers.len() - 1])
    }
}

/// A score in basis points: `round(score × 10 000)`, the one place a float becomes an integer
/// (IEEE 754 multiplication and rounding give the same answer on every machine).
pub fn score_bp(score: f64) -> i64 {
    (score * BP as f64).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_policies_load_and_differ() {
        let v1 = Policy::builtin("v1").expect("v1");
        let v2 = Policy::builtin("v2").expect("v2");
        assert_eq!(v1.version, "v1");
        assert_eq!(v1.epoch, Duration::from_secs(86_400));
        assert_eq!(v1.kind(EventKind::ChatTurn).tier(8_500).name, "gold");
        assert_eq!(v1.kind(EventKind::ChatTurn).tier(-10_000).name, "bronze");
        assert_ne!(v1.sha256, v2.sha256);
        assert!(v2.cap_per_epoch < v1.cap_per_epoch);
        let demo = Policy::builtin("demo").expect("demo");
        assert_eq!((demo.version.as_str(), demo.epoch), ("demo", Duration::from_secs(20)));
        assert_eq!(demo.kind(EventKind::ChatTurn).tier(8_500), v1.kind(EventKind::ChatTurn).tier(8_500));
    }

    #[test]
    fn broken_policies_are_refused_with_the_rule() {
        let v1 = include_str!("../../policy/v1.toml");
        let cases = [
            (
                v1.replace(
                    "min_score_bp = -10_000, multiplier_bp = 5_000 },\n]\n\n[kinds.preference]",
                    "min_score_bp = 0, multiplier_bp = 5_000 },\n]\n\n[kinds.preference]",
                ),
                "must take any score",
            ),
            (v1.replace("forfeit_bp = 10_000", "forfeit_bp = 10_001"), "more than"),
            (v1.replace("[kinds.preference]", "[kinds.poem]"), "kinds.poem"),
            (v1.replace("epoch = \"1d\"", "epoch = \"1500ms\""), "whole number"),
            (v1.replace("base = 1_000_000_000", "base = 1.5"), "invalid type"),
        ];
        for (text, expected) in cases {
            let err = Policy::parse("t", &text).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert!(Policy::builtin("/nonexistent/v9.toml").is_none());
    }

    #[test]
    fn scores_become_basis_points() {
        assert_eq!(score_bp(0.25), 2_500);
        assert_eq!(score_bp(-0.12345), -1_235);
        assert_eq!(score_bp(1.0), 10_000);
    }
}
