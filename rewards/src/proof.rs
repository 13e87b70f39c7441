//! Payout proofs: the leaf encoding a contract can rebuild, and inclusion proofs that check
//! without the lake.
//!
//! Leaf bytes (big-endian integers, no padding):
//!
//! | bytes | field |
//! |---|---|
//! | 14 | ASCII `gata.reward.v1` (domain tag) |
//! | 8 | epoch start, Unix seconds (u64) |
//! | 8 | epoch end, Unix seconds (u64) |
//! | 2 | account length in bytes (u16) |
//! | n | account, UTF-8 |
//! | 8 | amount in token base units (u64) |
//!
//! A payout with a payee address (the account is an address, or a contributor id linked to one)
//! has a `gata.reward.v2` leaf instead: the same fields, with the payee's 20 bytes between the
//! account and the amount. That is the leaf a merkle-distributor contract pays: it sends
//! `amount` to `payee` once the leaf's proof checks against the epoch root. A payout without a
//! payee keeps the `v1` leaf, so epochs recorded before addresses existed keep their roots.
//!
//! | bytes | field (`gata.reward.v2`) |
//! |---|---|
//! | 14 | ASCII `gata.reward.v2` |
//! | 8 + 8 | epoch start and end |
//! | 2 + n | account length and account |
//! | 20 | payee address |
//! | 8 | amount |
//!
//! The leaf hash is `SHA-256(0x00 ‖ leaf bytes)`, inner nodes `SHA-256(0x01 ‖ left ‖ right)`
//! (RFC 6962); leaves are the epoch's accounts in byte order.

use gata_wallet::Address;
use serde::{Deserialize, Serialize};

use crate::{
    Epoch, EpochRewards, Result, RewardsError,
    merkle::{self, Hash},
};

/// The domain tag that starts a leaf without a payee.
pub const LEAF_TAG: &[u8; 14] = b"gata.reward.v1";

/// The domain tag that starts a leaf with a payee address.
pub const PAYEE_LEAF_TAG: &[u8; 14] = b"gata.reward.v2";

/// The leaf bytes of `account`'s `amount` in `epoch`, paid to `payee` when it has one (see the
/// module docs).
pub fn leaf_bytes(epoch: &Epoch, account: &str, payee: Option<&Address>, amount: u64) -> Vec<u8> {
    let account = account.as_bytes();
    // Contributor and validator ids are bounded far below 64 KiB by the event contract.
    let len = u16::try_from(account.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(60 + account.len());
    out.extend_from_slice(if payee.is_some() { PAYEE_LEAF_TAG } else { LEAF_TAG });
    out.extend_from_slice(&(epoch.start.timestamp() as u64).to_be_bytes());
    out.extend_from_slice(&(epoch.end.timestamp() as u64).to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&account[..usize::from(len)]);
    if let Some(payee) = payee {
        out.extend_from_slice(&payee.0);
    }
    out.extend_from_slice(&amount.to_be_bytes());
    out
}

/// A proof that `account` is paid `amount` in `epoch`, in the tree with root `root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// `gata.reward.v1`, or `gata.reward.v2` for a leaf with a payee.
    pub format: String,
    /// Policy version the amount was computed under.
    pub policy_version: String,
    /// The epoch.
    pub epoch: Epoch,
    /// The account.
    pub account: String,
    /// The address it is paid at (`gata.reward.v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<Address>,
    /// Base units paid.
    pub amount: u64,
    /// Position of the leaf.
    pub leaf_index: u64,
    /// Leaves in the tree.
    pub tree_size: u64,
    /// Audit path, bottom up, hex.
    pub path: Vec<String>,
    /// The epoch root, hex.
    pub root: String,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The path does not lead from this leaf to the root the proof names.
    PathMismatch {
        /// Where it leads instead (`None`: the path is the wrong length for index and size).
        computed: Option<String>,
    },
    /// The proof is consistent but its root is not the trusted one.
    UntrustedRoot {
        /// The proof's root.
        claimed: String,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::PathMismatch { computed: Some(root) } => {
                write!(f, "the path leads to root {root}, not the proof's root")
            }
            Rejection::PathMismatch { computed: None } => {
                write!(f, "the path has the wrong length for leaf index and tree size")
            }
            Rejection::UntrustedRoot { claimed } => write!(f, "the proof's root {claimed} is not the trusted root"),
        }
    }
}

impl Proof {
    /// The proof for `account`'s payout in `rewards`, if it has one.
    pub fn of(rewards: &EpochRewards, account: &str) -> Option<Proof> {
        let payout = rewards.payout(account)?;
        let leaves = rewards.leaves();
        Some(Proof {
            format: String::from_utf8_lossy(if payout.payee.is_some() { PAYEE_LEAF_TAG } else { LEAF_TAG })
                .into_owned(),
            policy_version: rewards.policy_version.clone(),
            epoch: rewards.epoch,
            account: payout.account.clone(),
            payee: payout.payee,
            amount: payout.amount,
            leaf_index: payout.leaf_index,
            tree_size: leaves.len() as u64,
            path: merkle::audit_path(&leaves, payout.leaf_index as usize).iter().map(hex::encode).collect(),
            root: hex::encode(rewards.root),
        })
    }

    /// Reads a proof document (JSON).
    pub fn from_json(text: &str) -> Result<Proof> {
        let proof: Proof = serde_json::from_str(text).map_err(|e| RewardsError::ProofFormat(e.to_string()))?;
        let expected: &[u8] = if proof.payee.is_some() { PAYEE_LEAF_TAG } else { LEAF_TAG };
        if proof.format.as_bytes() != expected {
            return Err(RewardsError::ProofFormat(format!(
                "format {:?} with{} a payee",
                proof.format,
                if proof.payee.is_some() { "" } else { "out" }
            )));
        }
        Ok(proof)
    }

    /// Checks the proof: its leaf, rebuilt from epoch, account, payee and amount, leads through the path
    /// to its root, and that root is `trusted` when one is given (the root anchored on chain).
    /// No lake needed.
    pub fn verify(&self, trusted: Option<&str>) -> Result<std::result::Result<(), Rejection>> {
        let decode = |h: &str| -> Result<Hash> {
            hex::decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| RewardsError::ProofFormat(format!("{h:?} is not a 32-byte hex hash")))
        };
        let path = self.path.iter().map(|h| decode(h)).collect::<Result<Vec<_>>>()?;
        let root = decode(&self.root)?;
        let leaf = merkle::leaf_hash(&leaf_bytes(&self.epoch, &self.account, self.payee.as_ref(), self.amount));
        let computed = merkle::root_from_path(leaf, self.leaf_index, self.tree_size, &path);
        if computed != Some(root) {
            return Ok(Err(Rejection::PathMismatch { computed: computed.map(hex::encode) }));
        }
        if let Some(trusted) = trusted
            && decode(trusted)? != root
        {
            return Ok(Err(Rejection::UntrustedRoot { claimed: self.root.clone() }));
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use gata_contract::{EventKind, Verdict};

    use super::*;
    use crate::{
        fold::{
            fold_epoch,
            tests::{contribution, epoch},
        },
        policy::Policy,
    };

    /// Five payouts; `ben` and `dan` are paid at addresses.
    fn rewards() -> EpochRewards {
        let people = ["ann", "ben", "cat", "dan", "eve"];
        let set = people
            .iter()
            .enumerate()
            .map(|(i, who)| contribution(who, i as u128, EventKind::ChatTurn, 0.9, Verdict::Accept));
        let payee = |who: &str| match who {
            "ben" => Some(Address([1; 20])),
            "dan" => Some(Address([2; 20])),
            _ => None,
        };
        fold_epoch(&Policy::builtin("v1").expect("v1"), epoch(), set, [], payee).expect("fold")
    }

    #[test]
    fn leaf_bytes_are_as_documented() {
        let e = epoch();
        let bytes = leaf_bytes(&e, "ann", None, 258);
        assert_eq!(&bytes[..14], b"gata.reward.v1");
        assert_eq!(&bytes[14..22], &(e.start.timestamp() as u64).to_be_bytes());
        assert_eq!(&bytes[22..30], &(e.end.timestamp() as u64).to_be_bytes());
        assert_eq!(&bytes[30..32], &[0, 3]);
        assert_eq!(&bytes[32..35], b"ann");
        assert_eq!(&bytes[35..], &[0, 0, 0, 0, 0, 0, 1, 2]);

        let payee = Address([0xab; 20]);
        let paid = leaf_bytes(&e, "ann", Some(&payee), 258);
        assert_eq!(&paid[..14], b"gata.reward.v2");
        assert_eq!(&paid[14..35], &bytes[14..35]);
        assert_eq!(&paid[35..55], &[0xab; 20]);
        assert_eq!(&paid[55..], &[0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn every_proof_verifies_against_the_root_and_any_change_fails() {
        let r = rewards();
        let root = hex::encode(r.root);
        for p in &r.payouts {
            let proof = Proof::of(&r, &p.account).expect("proof");
            let json = serde_json::to_string(&proof).expect("json");
            let back = Proof::from_json(&json).expect("parse");
            assert_eq!(back.verify(Some(&root)).expect("verify"), Ok(()));

            let mut more = back.clone();
            more.amount += 1;
            assert!(matches!(more.verify(None).expect("verify"), Err(Rejection::PathMismatch { .. })));
            let mut other = back.clone();
            other.account = "mallory".into();
            assert!(other.verify(None).expect("verify").is_err());
            // Paying another address breaks a v2 proof; a v1 proof given a payee is refused.
            let mut redirected = back.clone();
            redirected.payee = Some(Address([9; 20]));
            match p.payee {
                Some(_) => assert!(redirected.verify(None).expect("verify").is_err()),
                None => assert!(Proof::from_json(&serde_json::to_string(&redirected).expect("json")).is_err()),
            }
            let mut moved = back.clone();
            moved.leaf_index = (moved.leaf_index + 1) % moved.tree_size;
            assert!(moved.verify(None).expect("verify").is_err());
        }
        let formats: Vec<&str> = r
            .payouts
            .iter()
            .map(|p| if Proof::of(&r, &p.account).expect("proof").format.ends_with("v2") { "v2" } else { "v1" })
            .collect();
        assert_eq!(formats, ["v1", "v2", "v1", "v2", "v1"]);
        let proof = Proof::of(&r, "ann").expect("proof");
        let elsewhere = hex::encode([7u8; 32]);
        assert!(matches!(proof.verify(Some(&elsewhere)).expect("verify"), Err(Rejection::UntrustedRoot { .. })));
        assert!(Proof::from_json("{\"format\": \"x\"}").is_err());
    }
}
