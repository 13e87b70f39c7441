//! Wallet sign-in (Sign-In with Ethereum, EIP-4361) and the bearer sessions it hands out.
//!
//! 1. The client asks for a nonce. A nonce is `expiry ‖ random ‖ MAC`, so issuing one stores
//!    nothing: a flood of nonce requests costs no memory.
//! 2. The wallet signs an EIP-4361 message naming this server's domain and chain, the nonce,
//!    and its issue (and optional expiry) time.
//! 3. The server checks the domain, chain, nonce (its MAC, its expiry, and that it was never
//!    used), the times, and the signature, then returns a session: `gws_<address>.<expiry>.<MAC>`.
//!    Sessions are checked by their MAC alone, so any instance holding the same secret accepts
//!    them; a nonce is single-use on the instance that took the sign-in.
//!
//! A session is a `contributor` principal whose contributor id is its address (EIP-55), or, when
//! the message lists the resource [`BUYER_RESOURCE`], a `buyer` named by its address (its
//! purchases are paid from it).
//! Used nonces are remembered until they expire, at most `max_used_nonces` of them; when that
//! many sign-ins happened within one nonce lifetime, further ones wait (`429`) rather than grow
//! memory.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, Utc};
use gata_wallet::{Address, SignInMessage, parse_signature, siwe::link_resource};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Grants, Principal, Role, constant_time_eq};

/// Prefix of a wallet session token.
pub const SESSION_PREFIX: &str = "gws_";

/// The sign-in resource asking for a buyer session instead of a contributor one.
pub const BUYER_RESOURCE: &str = "urn:gata:role:buyer";

/// `[auth.wallet]`: who may sign in with a wallet, and for how long.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalletConfig {
    /// Whether wallets may sign in (as contributors).
    pub enabled: bool,
    /// The domain (host, and port when not the scheme's default) sign-in messages must name:
    /// the address users reach this API at. Unset: `localhost:<port of http.addr>`.
    pub domain: Option<String>,
    /// The chain id sign-in messages must name (`56`: BNB Smart Chain).
    pub chain_id: u64,
    /// How long a session lasts (a message's own expiry may shorten it).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How long a nonce may be used after it was issued.
    #[serde(with = "humantime_serde")]
    pub nonce_ttl: Duration,
    /// Hex of at least 32 random bytes that sessions and nonces are MACed with; set the same
    /// on every instance behind one address (`GATA_AUTH__WALLET__SECRET`). Unset: a random
    /// secret per process, so sessions end when it restarts.
    pub secret: Option<String>,
    /// Sign-ins remembered (to refuse a nonce's second use) within one nonce lifetime.
    pub max_used_nonces: usize,
    /// The roles a wallet may sign in as: `contributor` (the default) and `buyer`.
    pub roles: Vec<Role>,
}

impl std::fmt::Debug for WalletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletConfig")
            .field("enabled", &self.enabled)
            .field("domain", &self.domain)
            .field("chain_id", &self.chain_id)
            .field("session_ttl", &self.session_ttl)
            .field("nonce_ttl", &self.nonce_ttl)
            .field("max_used_nonces", &self.max_used_nonces)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            domain: None,
            chain_id: 56,
            session_ttl: Duration::from_secs(3600),
            nonce_ttl: Duration::from_secs(300),
            secret: None,
            max_used_nonces: 200_000,
            roles: vec![Role::Contributor, Role::Buyer],
        }
    }
}

impl WalletConfig {
    /// What is wrong with this section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(secret) = &self.secret
            && hex::decode(secret).map_or(true, |b| b.len() < 32)
        {
            problems.push("auth.wallet.secret must be the hex of at least 32 random bytes".to_string());
        }
        if self.session_ttl.is_zero() || self.nonce_ttl.is_zero() || self.max_used_nonces == 0 {
            problems.push("auth.wallet: session_ttl, nonce_ttl and max_used_nonces must be above zero".to_string());
        }
        if let Some(r) = self.roles.iter().find(|r| !matches!(r, Role::Contributor | Role::Buyer)) {
            problems.push(format!("auth.wallet.roles: a wallet signs in as contributor or buyer, not {r:?}"));
        }
        problems
    }
}

/// Why a sign-in or a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Wallet sign-in is turned off.
    #[error("wallet sign-in is turned off on this server")]
    Disabled,
    /// The message or signature is malformed, or says something this server does not accept.
    #[error("{0}")]
    Refused(String),
    /// Too many sign-ins within one nonce lifetime; try again after the given seconds.
    #[error("too many sign-ins right now; retry in {retry_after} s")]
    Busy {
        /// Seconds until the oldest remembered nonce expires.
        retry_after: u64,
    },
}

/// A fresh nonce to put into a sign-in message.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Nonce {
    /// The value for the message's `Nonce:` line.
    pub nonce: String,
    /// The domain the message must name.
    pub domain: String,
    /// The chain id the message must name.
    pub chain_id: u64,
    /// After this the nonce is refused.
    pub expires_at: DateTime<Utc>,
}

/// A signed-in wallet's bearer session.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Session {
    /// The bearer token (`Authorization: Bearer gws_…`).
    pub token: String,
    /// The address signed in: the contributor id it submits as, or the buyer it is.
    #[schemars(with = "String")]
    pub address: Address,
    /// `contributor` or `buyer`.
    pub role: Role,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

/// Issues nonces, checks sign-in messages and resolves session tokens.
pub struct WalletSessions {
    domain: String,
    chain_id: u64,
    session_ttl: chrono::Duration,
    nonce_ttl: chrono::Duration,
    enabled: bool,
    roles: Vec<Role>,
    secret: Vec<u8>,
    used: Mutex<UsedNonces>,
    max_used: usize,
}

impl std::fmt::Debug for WalletSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletSessions").field("domain", &self.domain).finish_non_exhaustive()
    }
}

/// Nonces already used, each until it expires.
#[derive(Default)]
struct UsedNonces {
    by_expiry: BTreeSet<(DateTime<Utc>, String)>,
    set: HashSet<String>,
}

impl UsedNonces {
    fn forget_expired(&mut self, now: DateTime<Utc>) {
        while let Some(first) = self.by_expiry.first().filter(|(expiry, _)| *expiry < now).cloned() {
            self.by_expiry.remove(&first);
            self.set.remove(&first.1);
        }
    }
}

fn refuse(reason: impl Into<String>) -> SignInError {
    SignInError::Refused(reason.into())
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Bytes from two random (v4) UUIDs: 244 bits from the operating system's generator.
fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

impl WalletSessions {
    /// Sessions for `cfg`; `default_domain` applies when the configuration names none.
    pub fn new(cfg: &WalletConfig, default_domain: String) -> WalletSessions {
        let secret = cfg.secret.as_deref().and_then(|s| hex::decode(s).ok()).unwrap_or_else(|| random_bytes().to_vec());
        WalletSessions {
            domain: cfg.domain.clone().unwrap_or(default_domain),
            chain_id: cfg.chain_id,
            session_ttl: chrono_duration(cfg.session_ttl),
            nonce_ttl: chrono_duration(cfg.nonce_ttl),
            enabled: cfg.enabled,
            roles: cfg.roles.clone(),
            secret,
            used: Mutex::new(UsedNonces::default()),
            max_used: cfg.max_used_nonces,
        }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// A new nonce, valid for `nonce_ttl` from `now`.
    pub fn nonce(&self, now: DateTime<Utc>) -> Result<Nonce, SignInError> {
        if !self.enabled {
            return Err(SignInError::Disabled);
        }
        let expires_at = now + self.nonce_ttl;
        let mut body = (expires_at.timestamp() as u64).to_be_bytes().to_vec();
        body.extend_from_slice(&random_bytes()[..12]);
        let mac = self.mac("nonce", &body);
        body.extend_from_slice(&mac[..12]);
        Ok(Nonce { nonce: hex::encode(body), domain: self.domain.clone(), chain_id: self.chain_id, expires_at })
    }

    /// When `nonce` was issued by this server (any instance sharing the secret) and expires,
    /// if it was.
    fn nonce_expiry(&self, nonce: &str) -> Option<DateTime<Utc>> {
        let bytes = hex::decode(nonce).ok().filter(|b| b.len() == 32)?;
        let (body, mac) = bytes.split_at(20);
        let expected = self.mac("nonce", body);
        if !constant_time_eq(mac, &expected[..12]) {
            return None;
        }
        let secs = u64::from_be_bytes(body[..8].try_into().ok()?);
        DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)
    }

    /// Checks a signed message as a sign-in does (domain, chain, nonce, times, signature) and
    /// uses its nonce up; answers the message.
    fn accept(&self, message: &str, signature: &str, now: DateTime<Utc>) -> Result<SignInMessage, SignInError> {
        if !self.enabled {
            return Err(SignInError::Disabled);
        }
        let signature = parse_signature(signature).map_err(|e| refuse(e.to_string()))?;
        let m = SignInMessage::verify(message, &signature).map_err(|e| refuse(e.to_string()))?;
        if m.domain != self.domain {
            return Err(refuse(format!(
                "the message is for {:?}; this server signs in for {:?}",
                m.domain, self.domain
            )));
        }
        if m.chain_id != self.chain_id {
            return Err(refuse(format!(
                "the message names chain {}; this server expects {}",
                m.chain_id, self.chain_id
            )));
        }
        let skew = chrono::Duration::seconds(60);
        let nonce_expiry = self
            .nonce_expiry(&m.nonce)
            .ok_or_else(|| refuse("the nonce was not issued by this server (GET /v1/auth/nonce)"))?;
        if nonce_expiry < now {
            return Err(refuse("the nonce has expired; ask for a new one"));
        }
        if m.issued_at > now + skew {
            return Err(refuse("the message is issued in the future"));
        }
        if m.expiration_time.is_some_and(|t| t <= now) {
            return Err(refuse("the message has expired"));
        }
        if m.not_before.is_some_and(|t| t > now + skew) {
            return Err(refuse("the message is not valid yet (Not Before)"));
        }
        // The set stays whole whatever a panicking holder did: only inserts and removals.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.forget_expired(now);
        if used.set.contains(&m.nonce) {
            return Err(refuse("the nonce was already used; ask for a new one"));
        }
        if used.set.len() >= self.max_used {
            let oldest = used.by_expiry.first().map_or(now, |(t, _)| *t);
            return Err(SignInError::Busy { retry_after: (oldest - now).num_seconds().max(1) as u64 });
        }
        used.set.insert(m.nonce.clone());
        used.by_expiry.insert((nonce_expiry, m.nonce.clone()));
        Ok(m)
    }

    /// Checks a signed sign-in message and opens a session for its address.
    pub fn sign_in(&self, message: &str, signature: &str, now: DateTime<Utc>) -> Result<Session, SignInError> {
        let m = self.accept(message, signature, now)?;
        if m.linked_contributor().is_some() {
            return Err(refuse("the message links an id to the address; send it to POST /v1/auth/link"));
        }
        let role = if m.resources.iter().any(|r| r == BUYER_RESOURCE) { Role::Buyer } else { Role::Contributor };
        if !self.roles.contains(&role) {
            return Err(refuse(format!("wallets may not sign in as {} here", role_name(role))));
        }
        let expires_at = m.expiration_time.map_or(now + self.session_ttl, |t| t.min(now + self.session_ttl));
        let body = format!("{}.{}.{}", role_name(role), m.address, expires_at.timestamp());
        let token = format!("{SESSION_PREFIX}{body}.{}", hex::encode(self.mac("session", body.as_bytes())));
        Ok(Session { token, address: m.address, role, expires_at })
    }

    /// Checks a signed message that links `contributor_id` to its address: a sign-in message
    /// (checked and its nonce used up as for a sign-in) listing the resource
    /// `urn:gata:link:<contributor_id>`. Answers the address.
    pub fn link(
        &self,
        contributor_id: &str,
        message: &str,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<Address, SignInError> {
        let m = self.accept(message, signature, now)?;
        match m.linked_contributor() {
            Some(id) if id == contributor_id => Ok(m.address),
            Some(id) => Err(refuse(format!("the message links {id}, not {contributor_id}"))),
            None => Err(refuse(format!("the message does not list the resource {}", link_resource(contributor_id)))),
        }
    }

    /// The principal of a session token (`gws_…`), or why it is refused.
    pub fn principal(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, &'static str> {
        let rest = token.strip_prefix(SESSION_PREFIX).ok_or("not a wallet session")?;
        let (body, mac) = rest.rsplit_once('.').ok_or("malformed wallet session")?;
        let mac = hex::decode(mac).map_err(|_| "malformed wallet session")?;
        if !constant_time_eq(&mac, &self.mac("session", body.as_bytes())) {
            return Err("the wallet session is not valid (signed in elsewhere, or the server's secret changed)");
        }
        let malformed = "malformed wallet session";
        let mut parts = body.split('.');
        let (Some(role), Some(address), Some(expiry), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let expiry: i64 = expiry.parse().map_err(|_| malformed)?;
        if expiry <= now.timestamp() {
            return Err("the wallet session has expired; sign in again");
        }
        let address: Address = address.parse().map_err(|_| malformed)?;
        let role = [Role::Contributor, Role::Buyer].into_iter().find(|r| role_name(*r) == role).ok_or(malformed)?;
        Ok(Principal::wallet(address, role))
    }
}

fn role_name(role: Role) -> &'static str {
    if role == Role::Buyer { "buyer" } else { "contributor" }
}

impl Principal {
    /// A signed-in wallet, named by its address: a contributor whose id is the address, or a
    /// buyer paying from it.
    pub fn wallet(address: Address, role: Role) -> Principal {
        Principal {
            name: address.to_string(),
            role,
            grants: Grants::Tables(BTreeSet::new()),
            contributor_id: (role == Role::Contributor).then(|| address.to_string()),
            address: Some(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use gata_wallet::{Account, personal_digest};

    use super::*;

    fn sessions(max_used: usize) -> WalletSessions {
        let cfg = WalletConfig { max_used_nonces: max_used, ..WalletConfig::default() };
        WalletSessions::new(&cfg, "gata.example".into())
    }

    fn signed(account: &Account, domain: &str, nonce: &str, issued: DateTime<Utc>) -> (String, String) {
        signed_with(account, domain, nonce, issued, "")
    }

    /// A signed message for `domain` with `tail` (lines such as `Resources:`) at its end.
    fn signed_with(
        account: &Account,
        domain: &str,
        nonce: &str,
        issued: DateTime<Utc>,
        tail: &str,
    ) -> (String, String) {
        let message = format!(
            "{domain} wants you to sign in with your Ethereum account:\n{}\n\nSubmit data to Gata.\n\nURI: https://{domain}/\nVersion: 1\nChain ID: 56\nNonce: {nonce}\nIssued At: {}{tail}",
            account.address(),
            issued.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let sig = account.sign_digest(&personal_digest(message.as_bytes())).expect("sign");
        (message, format!("0x{}", hex::encode(sig)))
    }

    #[test]
    fn a_signed_in_wallet_is_a_contributor_named_by_its_address() {
        let s = sessions(10);
        let now = Utc::now();
        let account = Account::from_private_key_hex(&"07".repeat(32)).expect("key");
        let nonce = s.nonce(now).expect("nonce").nonce;
        let (message, sig) = signed(&account, "gata.example", &nonce, now);
        let session = s.sign_in(&message, &sig, now).expect("sign in");
        let p = s.principal(&session.token, now).expect("principal");
        assert_eq!(p.contributor_id.as_deref(), Some(account.address().to_string().as_str()));
        assert_eq!(p.role, Role::Contributor);
        assert!(s.sign_in(&message, &sig, now).unwrap_err().to_string().contains("already used"));
        assert!(s.principal(&session.token, session.expires_at).unwrap_err().contains("expired"));
        let forged = session.token.replace(&account.address().to_string(), &Address([9; 20]).to_string());
        assert!(s.principal(&forged, now).unwrap_err().contains("not valid"));
        // Another server's secret: neither its nonces nor its sessions pass.
        let other = sessions(10);
        assert!(other.principal(&session.token, now).is_err());
        let (message, sig) = signed(&account, "gata.example", &other.nonce(now).expect("nonce").nonce, now);
        assert!(s.sign_in(&message, &sig, now).unwrap_err().to_string().contains("not issued"));
    }

    #[test]
    fn a_wallet_signs_in_as_a_buyer_when_it_asks_and_may() {
        let s = sessions(10);
        let now = Utc::now();
        let account = Account::from_private_key_hex(&"09".repeat(32)).expect("key");
        let buyer = format!("\nResources:\n- {BUYER_RESOURCE}");
        let (message, sig) = signed_with(&account, "gata.example", &s.nonce(now).expect("nonce").nonce, now, &buyer);
        let session = s.sign_in(&message, &sig, now).expect("sign in");
        let p = s.principal(&session.token, now).expect("principal");
        assert_eq!((p.role, p.contributor_id, p.address), (Role::Buyer, None, Some(account.address())));
        // A session's role is under its MAC.
        let promoted = session.token.replacen("buyer", "contributor", 1);
        assert!(s.principal(&promoted, now).is_err());
        let cfg = WalletConfig { roles: vec![Role::Contributor], ..WalletConfig::default() };
        let strict = WalletSessions::new(&cfg, "gata.example".into());
        let nonce = strict.nonce(now).expect("nonce").nonce;
        let (message, sig) = signed_with(&account, "gata.example", &nonce, now, &buyer);
        assert!(strict.sign_in(&message, &sig, now).unwrap_err().to_string().contains("may not sign in as buyer"));
    }

    #[test]
    fn a_link_names_its_contributor_uses_its_nonce_and_is_no_sign_in() {
        let s = sessions(10);
        let now = Utc::now();
        let account = Account::from_private_key_hex(&"0b".repeat(32)).expect("key");
        let link = format!("\nResources:\n- {}", link_resource("ctr_7Hq2mZ"));
        let (message, sig) = signed_with(&account, "gata.example", &s.nonce(now).expect("nonce").nonce, now, &link);
        assert!(s.link("ctr_other", &message, &sig, now).unwrap_err().to_string().contains("links ctr_7Hq2mZ"));
        // The refusal above used the nonce up, as any checked message does.
        let (message, sig) = signed_with(&account, "gata.example", &s.nonce(now).expect("nonce").nonce, now, &link);
        assert!(s.sign_in(&message, &sig, now).unwrap_err().to_string().contains("POST /v1/auth/link"));
        let (message, sig) = signed_with(&account, "gata.example", &s.nonce(now).expect("nonce").nonce, now, &link);
        assert_eq!(s.link("ctr_7Hq2mZ", &message, &sig, now).expect("link"), account.address());
        assert!(s.link("ctr_7Hq2mZ", &message, &sig, now).unwrap_err().to_string().contains("already used"));
        let (plain, sig) = signed(&account, "gata.example", &s.nonce(now).expect("nonce").nonce, now);
        assert!(s.link("ctr_7Hq2mZ", &plain, &sig, now).unwrap_err().to_string().contains("urn:gata:link:ctr_7Hq2mZ"));
    }

    #[test]
    fn wrong_domain_expired_nonce_and_foreign_signatures_are_refused() {
        let s = sessions(10);
        let now = Utc::now();
        let account = Account::from_private_key_hex(&"07".repeat(32)).expect("key");
        let nonce = s.nonce(now).expect("nonce").nonce;
        let (message, sig) = signed(&account, "evil.example", &nonce, now);
        assert!(s.sign_in(&message, &sig, now).unwrap_err().to_string().contains("this server signs in for"));
        let (message, sig) = signed(&account, "gata.example", &nonce, now);
        let later = now + chrono::Duration::seconds(301);
        assert!(s.sign_in(&message, &sig, later).unwrap_err().to_string().contains("expired"));
        let thief = Account::from_private_key_hex(&"08".repeat(32)).expect("key");
        let (_, theirs) = signed(&thief, "gata.example", &nonce, now);
        assert!(s.sign_in(&message, &theirs, now).unwrap_err().to_string().contains("not by the message's"));
    }

    #[test]
    fn remembered_nonces_are_bounded() {
        let s = sessions(2);
        let now = Utc::now();
        let account = Account::from_private_key_hex(&"07".repeat(32)).expect("key");
        let sign_in = |at: DateTime<Utc>| {
            let (message, sig) = signed(&account, "gata.example", &s.nonce(at).expect("nonce").nonce, at);
            s.sign_in(&message, &sig, at)
        };
        assert!(sign_in(now).is_ok() && sign_in(now).is_ok());
        assert!(matches!(sign_in(now), Err(SignInError::Busy { .. })));
        // Once the first two nonces expire, their places free up.
        let later = now + chrono::Duration::seconds(302);
        assert!(sign_in(later).is_ok());
    }
}
