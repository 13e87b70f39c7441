//! Who is asking: bearer tokens, stored only as SHA-256 hashes, mapped to principals with a
//! role and grants on tables and datasets.
//!
//! Tokens are random secrets of at least 128 bits (`gata token` makes one), so one unsalted
//! SHA-256 is enough to keep them out of configuration files and memory dumps: a slow password
//! hash protects guessable secrets, which these are not. A presented token is hashed and
//! compared in constant time against every principal's hash.
//!
//! Roles say what a principal may do; grants say which tables it may read:
//!
//! | role          | SQL, Flight SQL, `/v1/tables`  | submit events | review page, contributor views, `/metrics`, running queries |
//! |---------------|--------------------------------|---------------|---------------------------------------------|
//! | `admin`       | every table                    | yes           | yes                                          |
//! | `operator`    | every table                    | yes           | yes                                          |
//! | `analyst`     | granted tables                 | no            | review page when granted its tables          |
//! | `buyer`       | granted tables                 | no            | no                                           |
//! | `contributor` | none                           | as itself     | its own scores only                          |
//! | `app`         | none                           | for anyone    | no                                           |
//!
//! A contributor submits only under its own `contributor_id`; a trusted app (GataGPT's backend)
//! submits for the users signed in to it, operators and admins for anyone. Contributors may also
//! sign in with a wallet ([`wallet`]): the session is a contributor whose id is its address.

pub mod wallet;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a principal may do, beyond its table grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Runs the platform: every table, intake, metrics, dead letters, cancelling queries.
    Operator,
    /// SQL over the tables it is granted.
    Analyst,
    /// SQL over the tables (and, with the marketplace, the listings) it is granted.
    Buyer,
    /// Submits data as itself and reads its own scores.
    Contributor,
    /// A trusted application that submits for its signed-in users; runs no SQL.
    App,
    /// Labels image-text pairs on the review page; reads the tables behind it
    /// ([`REVIEW_TABLES`]) and whatever else it is granted.
    Reviewer,
}

/// The tables a reviewer reads without a grant: the pairs, their scores and votes, the labels.
pub const REVIEW_TABLES: [&str; 4] = ["image_text_pairs", "quality_scores", "dva_votes", "review_labels"];

impl Role {
    /// Reads every table whatever its grants.
    pub fn reads_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }

    /// May submit events to the intake routes.
    pub fn submits(self) -> bool {
        matches!(self, Role::Admin | Role::Operator | Role::Contributor | Role::App)
    }

    /// May submit events naming any contributor (else only its own `contributor_id`).
    pub fn submits_for_others(self) -> bool {
        matches!(self, Role::Admin | Role::Operator | Role::App)
    }

    /// May run SQL (over what its grants allow).
    pub fn queries(self) -> bool {
        !matches!(self, Role::Contributor | Role::App)
    }

    /// May see the platform's operation: metrics, every contributor's scores, running queries.
    pub fn operates(self) -> bool {
        self.reads_everything()
    }

    /// May label image-text pairs (accept or reject) on the review page.
    pub fn labels(self) -> bool {
        matches!(self, Role::Admin | Role::Operator | Role::Reviewer)
    }
}

/// One principal as configured: `[[auth.principals]]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Name, shown in logs and the running-queries list.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of its bearer token (`gata token` prints a token and its hash).
    pub token_sha256: String,
    /// Tables it may read, by SQL name.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Datasets (named groups of tables, `auth.datasets`) it may read.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// The contributor id a `contributor` principal acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributor_id: Option<String>,
    /// Its wallet address (`0x…`): a buyer's payments must come from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl std::fmt::Debug for PrincipalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalConfig")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("tables", &self.tables)
            .field("datasets", &self.datasets)
            .field("contributor_id", &self.contributor_id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// `[auth]`: the principals and the datasets grants can name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Who may call the API. Empty on a loopback address: open, everyone is a local admin.
    pub principals: Vec<PrincipalConfig>,
    /// Named groups of tables (`chat = ["chat_turns", "preferences"]`).
    pub datasets: BTreeMap<String, Vec<String>>,
    /// Sign-in with a wallet.
    pub wallet: wallet::WalletConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let set = |tables: &[&str]| tables.iter().map(|t| t.to_string()).collect();
        Self {
            principals: Vec::new(),
            datasets: BTreeMap::from([
                ("chat".to_string(), set(&["chat_turns", "preferences", "quality_scores"])),
                ("images".to_string(), set(&["image_text_pairs", "quality_scores", "dva_votes", "review_labels"])),
                ("operations".to_string(), set(&["events", "dead_letters", "rewards", "market_events"])),
            ]),
            wallet: wallet::WalletConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Whether requests must authenticate.
    pub fn enabled(&self) -> bool {
        !self.principals.is_empty()
    }

    /// What is wrong with the configuration, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for p in &self.principals {
            if !names.insert(&p.name) {
                problems.push(format!("auth.principals: the name {:?} is used twice", p.name));
            }
            if p.name.parse::<gata_wallet::Address>().is_ok() {
                problems.push(format!("auth.principals {:?}: names that are addresses belong to wallets", p.name));
            }
            if p.name == Principal::local_admin().name {
                problems
                    .push(format!("auth.principals: the name {:?} is reserved for open mode's local admin", p.name));
            }
            if p.token_sha256.len() != 64 || hex::decode(&p.token_sha256).is_err() {
                problems.push(format!("auth.principals {:?}: token_sha256 must be 64 hex digits", p.name));
            }
            if !hashes.insert(p.token_sha256.to_ascii_lowercase()) {
                problems.push(format!("auth.principals {:?}: two principals share one token", p.name));
            }
            for d in p.datasets.iter().filter(|d| !self.datasets.contains_key(*d)) {
                problems.push(format!("auth.principals {:?}: no dataset {d:?} in auth.datasets", p.name));
            }
            if let Some(a) = p.address.as_deref().filter(|a| a.parse::<gata_wallet::Address>().is_err()) {
                problems.push(format!("auth.principals {:?}: address {a:?} is not 0x and 40 hex digits", p.name));
            }
            if (p.role == Role::Contributor) != p.contributor_id.is_some() {
                problems.push(format!(
                    "auth.principals {:?}: a contributor_id is required for role contributor and only for it",
                    p.name
                ));
            }
        }
        problems.extend(self.wallet.problems());
        problems
    }

    /// Every principal, resolved for lookups; wallet sessions name `default_domain` unless
    /// `auth.wallet.domain` is set.
    pub fn authenticator(&self, default_domain: String) -> Authenticator {
        let principals = self
            .principals
            .iter()
            .filter_map(|p| {
                let hash: [u8; 32] = hex::decode(&p.token_sha256).ok()?.try_into().ok()?;
                let mut tables: BTreeSet<String> = p.tables.iter().cloned().collect();
                for d in &p.datasets {
                    tables.extend(self.datasets.get(d).into_iter().flatten().cloned());
                }
                if p.role == Role::Reviewer {
                    tables.extend(REVIEW_TABLES.map(String::from));
                }
                let grants = if p.role.reads_everything() { Grants::All } else { Grants::Tables(tables) };
                let address = p.address.as_deref().and_then(|a| a.parse().ok());
                let contributor_id = p.contributor_id.clone();
                Some((hash, Principal { name: p.name.clone(), role: p.role, grants, contributor_id, address }))
            })
            .collect();
        let wallets = Arc::new(wallet::WalletSessions::new(&self.wallet, default_domain));
        Authenticator { principals, wallets: Some(wallets) }
    }
}

/// The tables a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// Every table.
    All,
    /// These tables, by SQL name.
    Tables(BTreeSet<String>),
}

/// Someone calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Readable tables.
    pub grants: Grants,
    /// The contributor a `contributor` principal acts as.
    pub contributor_id: Option<String>,
    /// Its wallet address, when it has one (a signed-in wallet, or configured).
    pub address: Option<gata_wallet::Address>,
}

impl Principal {
    /// The caller when no principals are configured (open local mode).
    pub fn local_admin() -> Self {
        Self { name: "local".into(), role: Role::Admin, grants: Grants::All, contributor_id: None, address: None }
    }

    /// Whether this is open mode's local admin (no principal configured may be named like it).
    pub fn is_local_admin(&self) -> bool {
        *self == Self::local_admin()
    }

    /// May read `table` (by SQL name).
    pub fn can_read(&self, table: &str) -> bool {
        self.role.queries()
            && match &self.grants {
                Grants::All => true,
                Grants::Tables(t) => t.contains(table),
            }
    }
}

/// Finds the principal a bearer token belongs to.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    principals: Vec<([u8; 32], Principal)>,
    wallets: Option<Arc<wallet::WalletSessions>>,
}

impl Authenticator {
    /// Whether any principal is configured (else the API is open).
    pub fn enabled(&self) -> bool {
        !self.principals.is_empty()
    }

    /// The wallet sign-in service (nonces, sessions).
    pub fn wallets(&self) -> Option<&wallet::WalletSessions> {
        self.wallets.as_deref()
    }

    /// The principal holding `token`, if any. Compares every hash in constant time.
    pub fn principal(&self, token: &str) -> Option<&Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, principal) in &self.principals {
            if constant_time_eq(hash, &presented) {
                found = Some(principal);
            }
        }
        found
    }

    /// Resolves an `Authorization` header value: the wallet of a session token (`gws_…`), the
    /// local admin when auth is off, the principal of a valid `Bearer` token, else why not.
    pub fn authorize(&self, header: Option<&str>) -> Result<Principal, &'static str> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).map(str::trim);
        if let Some(session) = token.filter(|t| t.starts_with(wallet::SESSION_PREFIX)) {
            let wallets = self.wallets.as_deref().ok_or("wallet sessions are not accepted here")?;
            return wallets.principal(session, chrono::Utc::now());
        }
        if !self.enabled() {
            return Ok(Principal::local_admin());
        }
        let token = token.ok_or("send Authorization: Bearer <token>")?;
        self.principal(token).cloned().ok_or("the bearer token is not valid")
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (for secrets:
/// tokens, MACs, signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an HTTP `Host` header names this machine's loopback interface (`localhost`,
/// `127.0.0.1`, `[::1]`, with or without a port). Open mode answers only these: a web page that
/// points its own domain at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(ip, _)| ip),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }
        }),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A new random bearer token: two random (v4) UUIDs from the operating system's generator,
/// 244 random bits, as hex.
pub fn new_token() -> String {
    format!("gata_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The hex SHA-256 of `token`, as `token_sha256` stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            principals: vec![
                PrincipalConfig {
                    name: "ana".into(),
                    role: Role::Analyst,
                    token_sha256: token_hash("ana-token"),
                    tables: vec!["events".into()],
                    datasets: vec!["chat".into()],
                    contributor_id: None,
                    address: None,
                },
                PrincipalConfig {
                    name: "ops".into(),
                    role: Role::Operator,
                    token_sha256: token_hash("ops-token"),
                    tables: vec![],
                    datasets: vec![],
                    contributor_id: None,
                    address: None,
                },
            ],
            ..AuthConfig::default()
        }
    }

    #[test]
    fn tokens_resolve_to_principals_and_grants() {
        let auth = config().authenticator("localhost".into());
        let ana = auth.authorize(Some("Bearer ana-token")).expect("ana");
        assert_eq!(ana.name, "ana");
        assert!(ana.can_read("events") && ana.can_read("chat_turns") && ana.can_read("quality_scores"));
        assert!(!ana.can_read("image_text_pairs") && !ana.can_read("dead_letters"));
        let ops = auth.authorize(Some("Bearer ops-token")).expect("ops");
        assert!(ops.can_read("dead_letters") && ops.role.operates());
        assert_eq!(auth.authorize(Some("Bearer nope")), Err("the bearer token is not valid"));
        assert!(auth.authorize(None).is_err());
        assert!(auth.authorize(Some("Basic YQ==")).is_err());
        assert_eq!(
            AuthConfig::default().authenticator("localhost".into()).authorize(None),
            Ok(Principal::local_admin())
        );
    }

    #[test]
    fn bad_principals_are_named() {
        let mut cfg = config();
        cfg.principals[1].token_sha256 = cfg.principals[0].token_sha256.clone();
        cfg.principals[0].datasets.push("nope".into());
        cfg.principals.push(PrincipalConfig {
            name: "c".into(),
            role: Role::Contributor,
            token_sha256: "xyz".into(),
            tables: vec![],
            datasets: vec![],
            contributor_id: None,
            address: None,
        });
        let problems = cfg.problems().join("\n");
        for expected in ["share one token", "no dataset \"nope\"", "64 hex digits", "contributor_id is required"] {
            assert!(problems.contains(expected), "{expected} missing from {problems}");
        }
    }

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.5.6.7",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:8080",
            "10.0.0.1",
            "localhost.attacker.example",
            "[::2]:80",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let cfg = config();
        assert!(!format!("{cfg:?}").contains(&token_hash("ana-token")));
    }
}
