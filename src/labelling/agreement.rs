//! Agreement between reviewers: Fleiss' kappa over the pairs labelled by two reviewers or more.
//!
//! Each reviewer's newest label of a pair counts. With a varying number of reviewers per pair,
//! the observed agreement is the share of agreeing ordered reviewer pairs over every pair
//! labelled twice or more, and chance agreement comes from the overall share of each decision
//! (Fleiss 1971, as generalised to unequal rater counts). With exactly two reviewers per pair it
//! equals Scott's pi, the two-rater kappa with pooled marginals.

use schemars::JsonSchema;
use serde::Serialize;

/// Pairs that got the same labels: `pairs` pairs, each with `labels` newest labels of which
/// `accepts` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Accepting labels of each pair.
    pub accepts: u64,
    /// Labels of each pair (one per reviewer).
    pub labels: u64,
    /// How many pairs.
    pub pairs: u64,
}

/// How well reviewers agree (`GET /v1/review/agreement`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Agreement {
    /// Pairs with at least one label.
    pub labelled_pairs: u64,
    /// Pairs labelled by two reviewers or more: the ones agreement is measured on.
    pub pairs_labelled_twice: u64,
    /// Reviewers who labelled anything.
    pub reviewers: usize,
    /// Share of agreeing reviewer pairs on the pairs labelled twice or more.
    pub observed: Option<f64>,
    /// The agreement expected by chance from how often each decision is made.
    pub expected: Option<f64>,
    /// Fleiss' kappa: (observed − expected) / (1 − expected); absent with fewer than one pair
    /// labelled twice, or when every label is the same decision.
    pub kappa: Option<f64>,
}

/// The agreement of the labels tallied in `tallies`, given by `reviewers` reviewers.
pub fn agreement(tallies: &[Tally], reviewers: usize) -> Agreement {
    let (mut agreeing, mut ordered, mut accepts, mut all, mut twice) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in tallies.iter().filter(|t| t.labels >= 2 && t.accepts <= t.labels) {
        let rejects = t.labels - t.accepts;
        agreeing += t.pairs * (t.accepts * t.accepts.saturating_sub(1) + rejects * rejects.saturating_sub(1));
        ordered += t.pairs * t.labels * (t.labels - 1);
        accepts += t.pairs * t.accepts;
        all += t.pairs * t.labels;
        twice += t.pairs;
    }
    let (observed, expected) = if ordered == 0 {
        (None, None)
    } else {
        let share = accepts as f64 / all as f64;
        (Some(agreeing as f64 / ordered as f64), Some(share * share + (1.0 - share) * (1.0 - share)))
    };
    let kappa = match (observed, expected) {
        (Some(o), Some(e)) if e < 1.0 => Some((o - e) / (1.0 - e)),
        _ => None,
    };
    Agreement {
        labelled_pairs: tallies.iter().map(|t| t.pairs).sum(),
        pairs_labelled_twice: twice,
        reviewers,
        observed,
        expected,
        kappa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(accepts: u64, labels: u64, pairs: u64) -> Tally {
        Tally { accepts, labels, pairs }
    }

    #[test]
    fn two_reviewers_match_scotts_pi_by_hand() {
        // 10 pairs, two reviewers: both accept 4, both reject 3, they split on 3.
        let got = agreement(&[tally(2, 2, 4), tally(0, 2, 3), tally(1, 2, 3)], 2);
        // observed 7/10; accept share (8 + 3) / 20 = 0.55, expected 0.55² + 0.45² = 0.505.
        assert_eq!((got.labelled_pairs, got.pairs_labelled_twice, got.reviewers), (10, 10, 2));
        assert!((got.observed.unwrap() - 0.7).abs() < 1e-12);
        assert!((got.expected.unwrap() - 0.505).abs() < 1e-12);
        assert!((got.kappa.unwrap() - (0.7 - 0.505) / 0.495).abs() < 1e-12);
    }

    #[test]
    fn three_reviewers_follow_fleiss() {
        // Fleiss' formula on 2 pairs with 3 raters: (3 accept) and (2 accept, 1 reject).
        // P_i = 1 and 1/3, P̄ = 2/3; p_accept = 5/6, P_e = 26/36.
        let got = agreement(&[tally(3, 3, 1), tally(2, 3, 1)], 3);
        let (p, e) = (2.0 / 3.0, 26.0 / 36.0);
        assert!((got.kappa.unwrap() - (p - e) / (1.0 - e)).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn disagreement_is_negative_and_single_labels_do_not_count() {
        let got = agreement(&[tally(1, 2, 2), tally(1, 1, 1)], 3);
        assert_eq!((got.labelled_pairs, got.pairs_labelled_twice), (3, 2));
        assert_eq!(got.observed, Some(0.0));
        assert!(got.kappa.unwrap() < 0.0);
        let lone = agreement(&[tally(1, 1, 1)], 1);
        assert_eq!((lone.observed, lone.kappa), (None, None));
        let unanimous = agreement(&[tally(2, 2, 1)], 2);
        assert_eq!((unanimous.observed, unanimous.kappa), (Some(1.0), None), "kappa is undefined with one decision");
    }
}
