//! Sign-In with Ethereum (EIP-4361): the plain-text message a wallet shows and signs with
//! `personal_sign`, parsed strictly and written back exactly as the EIP lays it out.
//!
//! ```text
//! example.com wants you to sign in with your Ethereum account:
//! 0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2
//!
//! Submit data to Gata.
//!
//! URI: https://example.com/login
//! Version: 1
//! Chain ID: 1
//! Nonce: 32891756
//! Issued At: 2021-09-30T16:25:24Z
//! Expiration Time: 2021-09-30T16:35:24Z
//! ```
//!
//! [`SignInMessage::signer`] checks that a signature is this message's, signed by its address;
//! what the message must say (domain, chain, nonce, times) is the server's to check.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};

use crate::{
    Result, WalletError,
    account::{Address, personal_digest, recover},
};

/// The longest message accepted, in bytes: a real one is a few hundred.
pub const MAX_MESSAGE_BYTES: usize = 4096;

const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// What starts the resource that turns a sign-in message into a link: the address that signs
/// `urn:gata:link:<contributor id>` agrees to be that contributor's payee.
pub const LINK_RESOURCE_PREFIX: &str = "urn:gata:link:";

/// The resource a message lists to link `contributor_id` to the signing address.
pub fn link_resource(contributor_id: &str) -> String {
    format!("{LINK_RESOURCE_PREFIX}{contributor_id}")
}

/// One EIP-4361 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInMessage {
    /// The URI scheme of the origin (`https`), when the message names one.
    pub scheme: Option<String>,
    /// The authority (host and optional port) asking for the sign-in.
    pub domain: String,
    /// The account signing in (written in its EIP-55 form).
    pub address: Address,
    /// What the user agrees to, one line.
    pub statement: Option<String>,
    /// The resource the sign-in is for.
    pub uri: String,
    /// Always `1`.
    pub version: String,
    /// The chain the account is on.
    pub chain_id: u64,
    /// A server-issued random value (at least 8 letters or digits).
    pub nonce: String,
    /// When the message was made.
    pub issued_at: DateTime<Utc>,
    /// After this the message is void.
    pub expiration_time: Option<DateTime<Utc>>,
    /// Before this the message is not yet valid.
    pub not_before: Option<DateTime<Utc>>,
    /// A request id of the application's own.
    pub request_id: Option<String>,
    /// Resources the sign-in covers.
    pub resources: Vec<String>,
}

fn bad(reason: impl Into<String>) -> WalletError {
    WalletError::SignIn(reason.into())
}

/// Reads the lines of a message one by one, naming what was expected when a line is missing.
struct Lines<'a> {
    lines: std::iter::Peekable<std::str::Split<'a, char>>,
}

impl<'a> Lines<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str> {
        self.lines.next().ok_or_else(|| bad(format!("ends before {what}")))
    }

    /// The value of a required `Tag: value` line.
    fn tagged(&mut self, tag: &str) -> Result<&'a str> {
        let line = self.next(tag)?;
        line.strip_prefix(tag)
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| bad(format!("expected a line \"{tag}: …\", found {line:?}")))
    }

    /// The value of an optional `Tag: value` line.
    fn optional(&mut self, tag: &str) -> Option<&'a str> {
        let value = self.lines.peek()?.strip_prefix(tag)?.strip_prefix(": ")?;
        self.lines.next();
        Some(value)
    }
}

fn time(tag: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad(format!("{tag} {text:?} is not an RFC 3339 time: {e}")))
}

impl FromStr for SignInMessage {
    type Err = WalletError;

    fn from_str(text: &str) -> Result<SignInMessage> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(bad(format!("is {} bytes; at most {MAX_MESSAGE_BYTES}", text.len())));
        }
        let mut lines = Lines { lines: text.split('\n').peekable() };
        let origin = lines
            .next("the first line")?
            .strip_suffix(PREAMBLE)
            .ok_or_else(|| bad(format!("the first line must end with {PREAMBLE:?}")))?;
        let (scheme, domain) = match origin.split_once("://") {
            Some((scheme, domain)) => (Some(scheme.to_string()), domain),
            None => (None, origin),
        };
        if domain.is_empty() || domain.contains(char::is_whitespace) || domain.contains('/') {
            return Err(bad(format!("{domain:?} is no domain")));
        }
        let written = lines.next("the address")?;
        let address: Address = written.parse()?;
        if address.to_string() != written {
            return Err(bad(format!("the address must be written in its EIP-55 form {address}")));
        }
        if !lines.next("the blank line after the address")?.is_empty() {
            return Err(bad("the address must be followed by a blank line"));
        }
        let statement = match lines.next("the statement or URI")? {
            "" => None,
            line => {
                if !lines.next("the blank line after the statement")?.is_empty() {
                    return Err(bad("the statement is one line, followed by a blank line"));
                }
                Some(line.to_string())
            }
        };
        let uri = lines.tagged("URI")?.to_string();
        let version = lines.tagged("Version")?.to_string();
        if version != "1" {
            return Err(bad(format!("version {version:?}; only 1 exists")));
        }
        let chain = lines.tagged("Chain ID")?;
        let chain_id = chain.parse().map_err(|_| bad(format!("chain id {chain:?} is no number")))?;
        let nonce = lines.tagged("Nonce")?.to_string();
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("the nonce is at least 8 letters or digits"));
        }
        let issued_at = time("Issued At", lines.tagged("Issued At")?)?;
        let expiration_time = lines.optional("Expiration Time").map(|t| time("Expiration Time", t)).transpose()?;
        let not_before = lines.optional("Not Before").map(|t| time("Not Before", t)).transpose()?;
        let request_id = lines.optional("Request ID").map(str::to_string);
        let mut resources = Vec::new();
        if lines.lines.next_if_eq(&"Resources:").is_some() {
            while let Some(line) = lines.lines.next_if(|l| l.starts_with("- ")) {
                resources.push(line[2..].to_string());
            }
        }
        if let Some(extra) = lines.lines.next() {
            return Err(bad(format!("unexpected line {extra:?}")));
        }
        Ok(SignInMessage {
            scheme,
            domain: domain.to_string(),
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }
}

impl fmt::Display for SignInMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rfc3339 = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        write!(f, "{}{PREAMBLE}\n{}\n\n", self.domain, self.address)?;
        if let Some(statement) = &self.statement {
            writeln!(f, "{statement}")?;
        }
        write!(
            f,
            "\nURI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri,
            self.version,
            self.chain_id,
            self.nonce,
            rfc3339(&self.issued_at)
        )?;
        if let Some(t) = &self.expiration_time {
            write!(f, "\nExpiration Time: {}", rfc3339(t))?;
        }
        if let Some(t) = &self.not_before {
            write!(f, "\nNot Before: {}", rfc3339(t))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\nRequest ID: {id}")?;
        }
        if !self.resources.is_empty() {
            f.write_str("\nResources:")?;
            for r in &self.resources {
                write!(f, "\n- {r}")?;
            }
        }
        Ok(())
    }
}

impl SignInMessage {
    /// Parses `text` and checks that `signature` is `text` signed with `personal_sign` by the
    /// address it names.
    pub fn verify(text: &str, signature: &[u8]) -> Result<SignInMessage> {
        let message: SignInMessage = text.parse()?;
        let signer = recover(&personal_digest(text.as_bytes()), signature)?;
        if signer == message.address {
            Ok(message)
        } else {
            Err(WalletError::Signature(format!("signed by {signer}, not by the message's {}", message.address)))
        }
    }

    /// The contributor id this message links its address to, if it lists a link resource.
    pub fn linked_contributor(&self) -> Option<&str> {
        self.resources.iter().find_map(|r| r.strip_prefix(LINK_RESOURCE_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;

    /// The EIP's own example message.
    const EXAMPLE: &str = "service.org wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.org/tos

URI: https://service.org/login
Version: 1
Chain ID: 1
Nonce: 32891757
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://Qme7ss3ARVgxv6rXqVPiikMJ8u2NLgmgszg13pYrDKEoiu
- https://example.com/my-web2-claim.json";

    #[test]
    fn the_eip_example_parses_and_writes_back() {
        let m: SignInMessage = EXAMPLE.parse().unwrap();
        assert_eq!(m.domain, "service.org");
        assert_eq!(m.address.to_string(), "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2");
        assert_eq!(m.chain_id, 1);
        assert_eq!(m.nonce, "32891757");
        assert_eq!(m.resources.len(), 2);
        assert_eq!(m.to_string(), EXAMPLE);
        // Without a statement, the ABNF leaves two blank lines.
        let bare = EXAMPLE.replace("I accept the ServiceOrg Terms of Service: https://service.org/tos\n", "");
        let m: SignInMessage = bare.parse().unwrap();
        assert_eq!((m.statement.clone(), m.to_string()), (None, bare));
    }

    #[test]
    fn malformed_messages_say_why() {
        for (text, why) in [
            (
                EXAMPLE.replace(
                    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                    "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
                ),
                "EIP-55",
            ),
            (EXAMPLE.replace("Version: 1", "Version: 2"), "only 1"),
            (EXAMPLE.replace("Nonce: 32891757", "Nonce: 12"), "nonce"),
            (EXAMPLE.replace("16:25:24Z", "16:25"), "RFC 3339"),
            (EXAMPLE.replace("Chain ID: 1\n", ""), "Chain ID"),
            (format!("{EXAMPLE}\nextra"), "unexpected line"),
            ("x".repeat(MAX_MESSAGE_BYTES + 1), "at most"),
        ] {
            let err = text.parse::<SignInMessage>().expect_err(why).to_string();
            assert!(err.contains(why), "{err} lacks {why}");
        }
    }

    #[test]
    fn only_the_address_own_signature_passes() {
        let account = Account::from_private_key_hex(&"42".repeat(32)).unwrap();
        let mut m: SignInMessage = EXAMPLE.parse().unwrap();
        m.address = account.address();
        let text = m.to_string();
        let sig = account.sign_digest(&personal_digest(text.as_bytes())).unwrap();
        assert_eq!(SignInMessage::verify(&text, &sig).unwrap(), m);
        // Another offset for the same instant is other bytes: the signature covers the text.
        let other = text.replace("16:25:24Z", "18:25:24+02:00");
        assert_eq!(other.parse::<SignInMessage>().unwrap().issued_at, m.issued_at);
        let err = SignInMessage::verify(&other, &sig).unwrap_err().to_string();
        assert!(err.contains("not by the message's"), "{err}");
    }
}
