//! The epoch fold: scored contributions of one epoch → payouts, as a pure function of the *set*
//! of scores. Nothing depends on the order scores arrive in, on how the log is partitioned, or
//! on how often a score was delivered: contributions are keyed by submission, sorted, and every
//! amount is integer arithmetic. Same scores + same policy → the same payouts and root, bit for
//! bit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gata_contract::{EventKind, Verdict};
use gata_wallet::Address;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Epoch, Result, RewardsError,
    merkle::{self, Hash},
    policy::{BP, Policy, score_bp},
    proof::leaf_bytes,
};

/// Namespace of payout event ids (UUIDv5 over `"<policy version>/<epoch start>/<account>"`).
const PAYOUT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3c9e_77a1_04d2_4b58_8f6e_1a2b_3c4d_5e6f);

/// A DVA worker's vote on a contribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The worker.
    pub validator: String,
    /// Whether it agreed with the consensus.
    pub agrees: bool,
}

/// One scored submission: what the fold needs of a score and its submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Who submitted it.
    pub contributor: String,
    /// The submission's event id.
    pub subject: Uuid,
    /// Its kind.
    pub kind: EventKind,
    /// The scorer version that scored it.
    pub scorer_version: String,
    /// The score.
    pub score: f64,
    /// Accept or reject.
    pub verdict: Verdict,
    /// The codes of the reasons that fired.
    pub reason_codes: Vec<String>,
    /// When the platform received the submission (decides its epoch).
    pub received_at: DateTime<Utc>,
    /// Validators' votes, for a consensus score.
    pub votes: Vec<Vote>,
}

/// A contributor's share of a marketplace sale (a purchase's revenue split), paid in the epoch
/// the platform received the purchase in, outside the cap and the penalty: a buyer paid for
/// accepted data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sale {
    /// The purchase.
    pub purchase: Uuid,
    /// The listing sold.
    pub listing: String,
    /// Who is paid.
    pub account: String,
    /// Their accepted submissions in the listing at the sale.
    pub accepted: u64,
    /// Their share, base units.
    pub amount: u64,
    /// When the platform received the purchase (decides its epoch).
    pub received_at: DateTime<Utc>,
}

/// What a line pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineRole {
    /// A submission of the account's.
    Contribution,
    /// The account's agreeing vote on someone's submission.
    Validation,
}

impl LineRole {
    /// As stored.
    pub fn name(self) -> &'static str {
        match self {
            LineRole::Contribution => "contribution",
            LineRole::Validation => "validation",
        }
    }
}

/// One amount and what earned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardLine {
    /// Contribution or validation.
    pub role: LineRole,
    /// The submission.
    pub subject: Uuid,
    /// Its kind.
    pub kind: EventKind,
    /// The scorer version paid on.
    pub scorer_version: String,
    /// The score in basis points.
    pub score_bp: i64,
    /// Accept or reject.
    pub verdict: Verdict,
    /// The tier (`rejected` for rejected submissions, `validator` for votes).
    pub tier: String,
    /// Base units, before the account's cap and penalty.
    pub amount: u64,
}

/// What one account is paid for one epoch: one leaf of the epoch's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// Deterministic id: UUIDv5 of policy version, epoch start and account. A recomputed or
    /// re-delivered payout has the same id, so it is paid once.
    pub event_id: Uuid,
    /// The account (contributor or DVA worker id).
    pub account: String,
    /// The address it is paid at: the account itself when it is an address, else the address
    /// linked to it before the epoch ended; none: not payable on chain until linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<Address>,
    /// Every line, contributions first, by submission id.
    pub lines: Vec<RewardLine>,
    /// Sum of the contribution lines.
    pub gross: u64,
    /// What the per-epoch cap took off the contribution rewards.
    pub cap_cut: u64,
    /// Whether a cluster penalty applied.
    pub flagged: bool,
    /// What the penalty took off.
    pub penalty: u64,
    /// Sum of the validation lines.
    pub validation: u64,
    /// The account's shares of sales in the epoch, by purchase.
    pub sales: Vec<Sale>,
    /// Paid: `gross − cap_cut − penalty + validation + Σ sales`.
    pub amount: u64,
    /// Position among the epoch's leaves (accounts in byte order).
    pub leaf_index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
}

/// One closed epoch's payouts and their Merkle root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRewards {
    /// The epoch.
    pub epoch: Epoch,
    /// Policy version.
    pub policy_version: String,
    /// Payouts, accounts in byte order.
    pub payouts: Vec<Payout>,
    /// Merkle root over the payouts' leaves.
    pub root: Hash,
    /// Sum of all amounts.
    pub total: u64,
}

impl EpochRewards {
    /// The payout of `account`, if it has one.
    pub fn payout(&self, account: &str) -> Option<&Payout> {
        self.payouts.iter().find(|p| p.account == account)
    }

    /// The leaf hashes, in order.
    pub fn leaves(&self) -> Vec<Hash> {
        self.payouts.iter().map(|p| p.leaf_hash).collect()
    }
}

/// The id of `account`'s payout for `epoch` under policy `version`.
pub fn payout_id(version: &str, epoch: &Epoch, account: &str) -> Uuid {
    Uuid::new_v5(&PAYOUT_ID_NAMESPACE, format!("{version}/{}/{account}", epoch.start.timestamp()).as_bytes())
}

/// Which of two scores of one submission is paid on: the later scorer version, then (for the
/// same version, which is the same score event) the higher score, so the choice is a function of
/// the set alone.
fn preferred(a: &Contribution, b: &Contribution) -> bool {
    (&a.scorer_version, score_bp(a.score), a.verdict == Verdict::Accept)
        > (&b.scorer_version, score_bp(b.score), b.verdict == Verdict::Accept)
}

/// Folds `contributions` and `sales` into `epoch`'s payouts under `policy`, each paid at the
/// address `payee` gives for its account. Contributions and sales received outside the epoch,
/// and contributions scored by a scorer the policy does not pay on, are ignored; a sale share
/// listed twice is paid once.
pub fn fold_epoch(
    policy: &Policy,
    epoch: Epoch,
    contributions: impl IntoIterator<Item = Contribution>,
    sales: impl IntoIterator<Item = Sale>,
    payee: impl Fn(&str) -> Option<Address>,
) -> Result<EpochRewards> {
    let mut chosen: BTreeMap<Uuid, Contribution> = BTreeMap::new();
    for c in contributions {
        if c.received_at < epoch.start
            || c.received_at >= epoch.end
            || !c.scorer_version.starts_with(&policy.kind(c.kind).scorer)
        {
            continue;
        }
        match chosen.get(&c.subject) {
            Some(current) if !preferred(&c, current) => {}
            _ => {
                chosen.insert(c.subject, c);
            }
        }
    }

    let mut lines: BTreeMap<String, Vec<RewardLine>> = BTreeMap::new();
    let mut flagged: BTreeMap<String, bool> = BTreeMap::new();
    for c in chosen.values() {
        let kind = policy.kind(c.kind);
        let bp = score_bp(c.score);
        let (tier, amount) = match c.verdict {
            Verdict::Reject => ("rejected".to_string(), 0),
            Verdict::Accept => {
                let tier = kind.tier(bp);
                let amount = u64::try_from(u128::from(kind.base) * u128::from(tier.multiplier_bp) / u128::from(BP))
                    .map_err(|_| RewardsError::Overflow { account: c.contributor.clone(), epoch: epoch.index })?;
                (tier.name.clone(), amount)
            }
        };
        let line = |role, tier, amount| RewardLine {
            role,
            subject: c.subject,
            kind: c.kind,
            scorer_version: c.scorer_version.clone(),
            score_bp: bp,
            verdict: c.verdict,
            tier,
            amount,
        };
        lines.entry(c.contributor.clone()).or_default().push(line(LineRole::Contribution, tier, amount));
        let hit = c.reason_codes.iter().any(|code| policy.penalties.codes.contains(code));
        *flagged.entry(c.contributor.clone()).or_default() |= hit;
        for vote in c.votes.iter().filter(|v| v.agrees) {
            let amount = policy.validators.per_agreeing_vote;
            lines.entry(vote.validator.clone()).or_default().push(line(
                LineRole::Validation,
                "validator".into(),
                amount,
            ));
        }
    }

    let mut shares: BTreeMap<String, Vec<Sale>> = BTreeMap::new();
    for sale in sales.into_iter().filter(|s| s.received_at >= epoch.start && s.received_at < epoch.end) {
        lines.entry(sale.account.clone()).or_default();
        shares.entry(sale.account.clone()).or_default().push(sale);
    }

    let mut payouts = Vec::with_capacity(lines.len());
    let mut total: u64 = 0;
    for (index, (account, mut lines)) in lines.into_iter().enumerate() {
        lines.sort_by_key(|l| (l.role, l.subject));
        let overflow = || RewardsError::Overflow { account: account.clone(), epoch: epoch.index };
        let sum = |role| {
            lines
                .iter()
                .filter(|l| l.role == role)
                .try_fold(0u64, |acc, l| acc.checked_add(l.amount))
                .ok_or_else(overflow)
        };
        let gross = sum(LineRole::Contribution)?;
        let validation = sum(LineRole::Validation)?;
        let capped = gross.min(policy.cap_per_epoch);
        let is_flagged = flagged.get(&account).copied().unwrap_or(false);
        let penalty = if is_flagged {
            u64::try_from(u128::from(capped) * u128::from(policy.penalties.forfeit_bp) / u128::from(BP))
                .map_err(|_| overflow())?
        } else {
            0
        };
        let mut sales = shares.remove(&account).unwrap_or_default();
        sales.sort();
        sales.dedup_by(|a, b| a.purchase == b.purchase);
        let sold = sales.iter().try_fold(0u64, |acc, s| acc.checked_add(s.amount)).ok_or_else(overflow)?;
        let amount =
            (capped - penalty).checked_add(validation).and_then(|a| a.checked_add(sold)).ok_or_else(overflow)?;
        total = total.checked_add(amount).ok_or_else(overflow)?;
        let payee = payee(&account);
        let leaf_hash = merkle::leaf_hash(&leaf_bytes(&epoch, &account, payee.as_ref(), amount));
        payouts.push(Payout {
            event_id: payout_id(&policy.version, &epoch, &account),
            account,
            payee,
            lines,
            gross,
            cap_cut: gross - capped,
            flagged: is_flagged,
            penalty,
            validation,
            sales,
            amount,
            leaf_index: index as u64,
            leaf_hash,
        });
    }
    let leaves: Vec<Hash> = payouts.iter().map(|p| p.leaf_hash).collect();
    Ok(EpochRewards { epoch, policy_version: policy.version.clone(), root: merkle::root(&leaves), payouts, total })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// No account has an address.
    pub(crate) fn no_payee(_: &str) -> Option<Address> {
        None
    }

    pub(crate) fn epoch() -> Epoch {
        Epoch::parse(Duration::from_secs(86_400), "2026-11-25").expect("epoch")
    }

    pub(crate) fn contribution(who: &str, n: u128, kind: EventKind, score: f64, verdict: Verdict) -> Contribution {
        Contribution {
            contributor: who.into(),
            subject: Uuid::from_u128(n),
            kind,
            scorer_version: if kind == EventKind::ImageTextPair { "dva/m@1".into() } else { "text-1.0.0".into() },
            score,
            verdict,
            reason_codes: vec![],
            received_at: epoch().start + chrono::Duration::minutes(n as i64),
            votes: vec![],
        }
    }

    fn sample() -> Vec<Contribution> {
        use EventKind::*;
        let mut bot = contribution("bot", 9, ChatTurn, 0.9, Verdict::Accept);
        bot.reason_codes = vec!["regular_intervals".into()];
        let mut pair = contribution("carol", 7, ImageTextPair, 0.31, Verdict::Accept);
        pair.votes =
            vec![Vote { validator: "w1".into(), agrees: true }, Vote { validator: "w2".into(), agrees: false }];
        vec![
            contribution("alice", 1, ChatTurn, 0.85, Verdict::Accept),
            contribution("alice", 2, ChatTurn, 0.65, Verdict::Accept),
            contribution("alice", 3, Preference, 0.5, Verdict::Accept),
            contribution("bob", 4, ChatTurn, 0.99, Verdict::Reject),
            contribution("bob", 5, ChatTurn, 0.1, Verdict::Accept),
            pair,
            bot,
        ]
    }

    #[test]
    fn amounts_follow_the_policy() {
        let policy = Policy::builtin("v1").expect("v1");
        let r = fold_epoch(&policy, epoch(), sample(), [], no_payee).expect("fold");
        let amount = |who: &str| r.payout(who).expect(who).amount;
        // gold 1.5 + silver 1.0 chat turns, a standard preference 0.25.
        assert_eq!(amount("alice"), 1_500_000_000 + 1_000_000_000 + 250_000_000);
        // A rejected turn earns nothing whatever its score; a bronze one half.
        assert_eq!(amount("bob"), 500_000_000);
        assert_eq!(r.payout("bob").expect("bob").lines[0].tier, "rejected");
        // Gold image (0.31 ≥ 0.30) at 2 × 1.5.
        assert_eq!(amount("carol"), 3_000_000_000);
        // Flagged: the whole contribution reward is forfeit.
        let bot = r.payout("bot").expect("bot");
        assert!(bot.flagged);
        assert_eq!((bot.gross, bot.penalty, bot.amount), (1_500_000_000, 1_500_000_000, 0));
        // Only the agreeing validator earns.
        assert_eq!(amount("w1"), 100_000_000);
        assert!(r.payout("w2").is_none());
        assert_eq!(r.total, r.payouts.iter().map(|p| p.amount).sum::<u64>());
        let accounts: Vec<&str> = r.payouts.iter().map(|p| p.account.as_str()).collect();
        assert_eq!(accounts, ["alice", "bob", "bot", "carol", "w1"]);
    }

    #[test]
    fn the_cap_limits_contribution_rewards_per_epoch() {
        let policy = Policy::builtin("v2").expect("v2");
        let many: Vec<Contribution> =
            (0..30).map(|n| contribution("dave", n, EventKind::ChatTurn, 0.9, Verdict::Accept)).collect();
        let r = fold_epoch(&policy, epoch(), many, [], no_payee).expect("fold");
        let p = r.payout("dave").expect("dave");
        assert_eq!((p.gross, p.amount, p.cap_cut), (45_000_000_000, 20_000_000_000, 25_000_000_000));
    }

    #[test]
    fn order_duplicates_and_other_epochs_change_nothing() {
        let policy = Policy::builtin("v1").expect("v1");
        let base = fold_epoch(&policy, epoch(), sample(), [], no_payee).expect("fold");
        let mut shuffled = sample();
        shuffled.reverse();
        shuffled.extend(sample());
        let mut late = contribution("alice", 99, EventKind::ChatTurn, 0.9, Verdict::Accept);
        late.received_at = epoch().end;
        shuffled.push(late);
        let mut other_scorer = contribution("alice", 98, EventKind::ChatTurn, 0.9, Verdict::Accept);
        other_scorer.scorer_version = "dva/m@1".into();
        shuffled.push(other_scorer);
        assert_eq!(fold_epoch(&policy, epoch(), shuffled, [], no_payee).expect("fold"), base);
    }

    #[test]
    fn a_later_scorer_version_is_paid_on() {
        let policy = Policy::builtin("v1").expect("v1");
        let old = contribution("alice", 1, EventKind::ChatTurn, 0.9, Verdict::Accept);
        let mut new = old.clone();
        new.scorer_version = "text-1.1.0".into();
        new.verdict = Verdict::Reject;
        for set in [vec![old.clone(), new.clone()], vec![new, old]] {
            let r = fold_epoch(&policy, epoch(), set, [], no_payee).expect("fold");
            assert_eq!(r.payout("alice").expect("alice").amount, 0);
        }
    }

    #[test]
    fn sale_shares_are_paid_on_top_once_in_their_epoch() {
        let policy = Policy::builtin("v2").expect("v2");
        let sale = |account: &str, purchase: u128, amount: u64, minutes: i64| Sale {
            purchase: Uuid::from_u128(purchase),
            listing: "l".into(),
            account: account.into(),
            accepted: 1,
            amount,
            received_at: epoch().start + chrono::Duration::minutes(minutes),
        };
        let many: Vec<Contribution> =
            (0..30).map(|n| contribution("dave", n, EventKind::ChatTurn, 0.9, Verdict::Accept)).collect();
        let sales = [sale("dave", 1, 7, 1), sale("dave", 1, 7, 1), sale("erin", 2, 5, 2), sale("erin", 3, 9, 24 * 60)];
        let r = fold_epoch(&policy, epoch(), many, sales, no_payee).expect("fold");
        let dave = r.payout("dave").expect("dave");
        // Capped contributions, then the sale share on top (once, though listed twice).
        assert_eq!((dave.cap_cut, dave.sales.len(), dave.amount), (25_000_000_000, 1, 20_000_000_007));
        // A seller without contributions is paid; a sale of the next epoch is not.
        let erin = r.payout("erin").expect("erin");
        assert_eq!((erin.gross, erin.amount, erin.lines.len()), (0, 5, 0));
        assert_eq!(r.total, 20_000_000_012);
    }
}
