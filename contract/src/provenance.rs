//! Who submitted an event and who wrote it: the principal intake records (`submitted_by`), and
//! the author's optional EIP-712 signature over the event's canonical bytes (`signature`).
//!
//! **Canonical bytes**: the event as JSON without `submitted_by` and `signature`, object keys
//! sorted by their UTF-8 bytes, no whitespace, strings escaped as `JSON.stringify` escapes them.
//! Events hold no floating-point numbers, so this is RFC 8785 (JCS). Times are written as intake
//! writes them (RFC 3339 in UTC with `Z`, fractional seconds only when present), and a signed
//! event carries its own `event_id`.
//!
//! **What is signed**: the EIP-712 message `Submission(string schema,bytes32 contentHash)` with
//! `schema` the contract name (`chat_turn.v1`) and `contentHash` the keccak-256 of the
//! canonical bytes, in the domain `{name: "Gata", version: "1", chainId}`. A wallet shows the
//! schema and the hash; anyone holding the payload (the lake, the Greenfield mirror) recomputes
//! both and recovers the signer.

use gata_wallet::{
    Address,
    eip712::{self, Field, Types},
    keccak256, parse_signature, recover,
};
use serde_json::{Value, json};

use super::{Event, Violation};

/// The fields of an event that are not part of what its author signs.
const UNSIGNED_FIELDS: [&str; 2] = ["submitted_by", "signature"];

impl Event {
    /// The principal that submitted this event, as intake recorded it.
    pub fn submitted_by(&self) -> Option<&str> {
        match self {
            Event::ChatTurn(e) => e.submitted_by.as_deref(),
            Event::Preference(e) => e.submitted_by.as_deref(),
            Event::ImageTextPair(e) => e.submitted_by.as_deref(),
        }
    }

    /// Records the principal that submitted this event.
    pub fn set_submitted_by(&mut self, principal: &str) {
        let slot = match self {
            Event::ChatTurn(e) => &mut e.submitted_by,
            Event::Preference(e) => &mut e.submitted_by,
            Event::ImageTextPair(e) => &mut e.submitted_by,
        };
        *slot = Some(principal.to_string());
    }

    /// The author's signature, as sent.
    pub fn signature(&self) -> Option<&str> {
        match self {
            Event::ChatTurn(e) => e.signature.as_deref(),
            Event::Preference(e) => e.signature.as_deref(),
            Event::ImageTextPair(e) => e.signature.as_deref(),
        }
    }

    /// The canonical bytes an author signs (see the module documentation).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("events serialize: all keys are strings");
        if let Value::Object(map) = &mut value {
            for field in UNSIGNED_FIELDS {
                map.remove(field);
            }
        }
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        out
    }

    /// The EIP-712 digest the author signs on chain `chain_id`.
    pub fn signing_digest(&self, chain_id: u64) -> [u8; 32] {
        let message = json!({
            "schema": self.kind().schema_name(),
            "contentHash": format!("0x{}", hex::encode(keccak256(&self.canonical_bytes()))),
        });
        gata_digest(chain_id, "Submission", &[("schema", "string"), ("contentHash", "bytes32")], &message)
    }

    /// Checks the author's signature, when there is one: it must recover, on chain `chain_id`,
    /// to the address that `contributor_id` names.
    pub fn check_signature(&self, chain_id: u64) -> Result<(), Violation> {
        let Some(text) = self.signature() else { return Ok(()) };
        let author: Address = self.contributor_id().parse().map_err(|_| {
            Violation::new("contributor_id", "a signed event's contributor_id is its author's address (0x…)")
        })?;
        let signature = parse_signature(text).map_err(|e| Violation::new("signature", e.to_string()))?;
        let signer = recover(&self.signing_digest(chain_id), &signature)
            .map_err(|e| Violation::new("signature", e.to_string()))?;
        if signer == author {
            Ok(())
        } else {
            Err(Violation::new(
                "signature",
                format!(
                    "recovers to {signer}, not to {author}: sign the EIP-712 Submission over the canonical bytes \
                     (keys sorted, no whitespace, event_id included, times as intake writes them) on chain {chain_id}"
                ),
            ))
        }
    }
}

/// The EIP-712 digest a validator signs for its vote `score` (a decimal in [-1, 1], as sent) on
/// `pair` under lease `lease`: `Vote(string leaseId,string pairId,string score)` in the domain
/// `{name: "Gata", version: "1", chainId}`.
pub fn vote_digest(chain_id: u64, lease: uuid::Uuid, pair: uuid::Uuid, score: &str) -> [u8; 32] {
    let message = json!({ "leaseId": lease.to_string(), "pairId": pair.to_string(), "score": score });
    gata_digest(chain_id, "Vote", &[("leaseId", "string"), ("pairId", "string"), ("score", "string")], &message)
}

/// The EIP-712 digest of `message`, of struct type `primary` with `fields`, in Gata's domain
/// `{name: "Gata", version: "1", chainId}`.
fn gata_digest(chain_id: u64, primary: &str, fields: &[(&str, &str)], message: &Value) -> [u8; 32] {
    let field = |(name, ty): &(&str, &str)| Field::new(*name, *ty);
    let domain_fields = [("name", "string"), ("version", "string"), ("chainId", "uint256")];
    let types = Types::from([
        ("EIP712Domain".to_string(), domain_fields.iter().map(field).collect()),
        (primary.to_string(), fields.iter().map(field).collect()),
    ]);
    let domain = json!({ "name": "Gata", "version": "1", "chainId": chain_id });
    eip712::digest(&types, &domain, primary, message).expect("Gata's types fit their messages")
}

/// Writes `value` with object keys sorted and no whitespace.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("strings serialize");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

#[cfg(test)]
mod tests {
    use gata_wallet::Account;

    use super::*;
    use crate::{EventKind, Limits};

    fn signed_turn(account: &Account, chain_id: u64) -> Event {
        let json = format!(
            r#"{{"event_id":"0193a1b2-0000-7000-8000-000000000001","contributor_id":"{}","turn_id":"t1",
               "occurred_at":"2026-12-01T10:00:00Z","prompt":"Why is the sky blue?",
               "responses":[{{"response_id":"a","model":"m1","text":"Rayleigh"}},{{"response_id":"b","model":"m2","text":"Dust"}}]}}"#,
            account.address()
        );
        let mut event = Event::parse(EventKind::ChatTurn, json.as_bytes(), &Limits::default()).expect("valid");
        let signature = account.sign_digest(&event.signing_digest(chain_id)).expect("sign");
        if let Event::ChatTurn(t) = &mut event {
            t.signature = Some(format!("0x{}", hex::encode(signature)));
        }
        event
    }

    #[test]
    fn canonical_bytes_sort_keys_and_leave_out_provenance() {
        let account = Account::from_private_key_hex(&"05".repeat(32)).expect("key");
        let mut event = signed_turn(&account, 56);
        event.set_submitted_by("gatagpt");
        let text = String::from_utf8(event.canonical_bytes()).expect("utf-8");
        assert!(text.starts_with(r#"{"contributor_id":"0x"#), "{text}");
        assert!(text.contains(r#""occurred_at":"2026-12-01T10:00:00Z","prompt":"Why is the sky blue?""#), "{text}");
        assert!(!text.contains("signature") && !text.contains("submitted_by"));
        assert!(!text.contains("\": ") && !text.contains(", \""), "{text}");
    }

    #[test]
    fn only_the_author_signature_on_the_same_chain_and_content_passes() {
        let account = Account::from_private_key_hex(&"05".repeat(32)).expect("key");
        let event = signed_turn(&account, 56);
        event.check_signature(56).expect("the author's signature");
        assert_eq!(event.check_signature(1).unwrap_err().field, "signature");
        let mut edited = event.clone();
        if let Event::ChatTurn(t) = &mut edited {
            t.prompt.push('!');
        }
        assert!(edited.check_signature(56).unwrap_err().reason.contains("recovers to"));
        let mut claimed = event.clone();
        if let Event::ChatTurn(t) = &mut claimed {
            t.contributor_id = Account::from_private_key_hex(&"06".repeat(32)).expect("key").address().to_string();
        }
        assert!(claimed.check_signature(56).is_err());
        let mut named = event;
        if let Event::ChatTurn(t) = &mut named {
            t.contributor_id = "ctr_1".into();
        }
        assert_eq!(named.check_signature(56).unwrap_err().field, "contributor_id");
    }
}
