//! The lease book of outside validators: which pairs each account holds, until when, which of
//! them are gold (a known answer, invisible to the validator), and how each account did on gold.
//!
//! Bounds: at most [`MAX_OPEN_PER_ACCOUNT`] open leases per account, `max_leases` in all and
//! gold records of [`MAX_ACCOUNTS`] accounts; expired leases and votes are dropped whenever the
//! book is touched. An account is never given a pair it holds, nor one it voted on within a
//! lease's lifetime (by then its vote is in the lake, where the caller excludes it; a vote that
//! came twice anyway has the same id and counts once).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufRead as _, Write as _},
    path::Path,
};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ValidationError;

/// Open leases one account may hold.
pub const MAX_OPEN_PER_ACCOUNT: usize = 16;

/// Accounts whose gold record is kept; past it, new accounts are not leased anything.
pub const MAX_ACCOUNTS: usize = 1_000_000;

/// A pair handed to a validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Its id.
    pub id: Uuid,
    /// The validator's address.
    pub account: String,
    /// The pair's event id (a fresh one for a gold pair).
    pub pair: Uuid,
    /// Until when a vote is taken.
    pub expires_at: DateTime<Utc>,
    /// For a gold pair: whether it must be accepted.
    pub gold: Option<bool>,
    /// For a real pair: what its vote records about it.
    pub subject: Option<Subject>,
}

/// What a vote on a real pair records about the pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// Whose pair it is.
    pub contributor_id: String,
    /// When the contributor says it happened.
    pub occurred_at: DateTime<Utc>,
    /// Where the log holds it.
    pub source: gata_contract::LogPosition,
}

/// What an account did on gold pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Gold pairs answered.
    pub answered: u32,
    /// Answered right.
    pub correct: u32,
}

/// How an account qualifies: `after` gold answers, with at least `accuracy` of them right.
#[derive(Debug, Clone, Copy)]
pub struct Qualification {
    /// Gold answers before votes can count.
    pub after: u32,
    /// Share of gold answered right that keeps votes counting.
    pub accuracy: f64,
}

impl Record {
    /// Whether this account's votes count.
    pub fn qualifies(&self, q: Qualification) -> bool {
        self.answered >= q.after && f64::from(self.correct) >= q.accuracy * f64::from(self.answered)
    }
}

/// The open leases and every account's gold record.
#[derive(Debug, Default)]
pub struct Book {
    leases: HashMap<Uuid, Lease>,
    /// (account, pair) of every open lease.
    held: HashSet<(String, Uuid)>,
    /// (account, pair) voted on, until when it is remembered.
    voted: HashMap<(String, Uuid), DateTime<Utc>>,
    records: BTreeMap<String, Record>,
    /// Where gold answers are appended, so records outlive a restart.
    journal: Option<std::fs::File>,
}

/// One line of the journal: gold answers of one account (a delta when appended, the totals
/// once compacted; reading sums them).
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    account: String,
    answered: u32,
    correct: u32,
}

impl Book {
    /// A book whose gold records are read from the journal at `path` (compacted to one line per
    /// account) and appended to it from now on.
    pub fn open_journal(path: &Path) -> std::io::Result<Book> {
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        if let Ok(file) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(file).lines() {
                // A line cut short by a crash is the last one; what it held is lost, nothing else.
                let Ok(e) = serde_json::from_str::<Entry>(&line?) else { continue };
                if records.len() >= MAX_ACCOUNTS && !records.contains_key(&e.account) {
                    continue;
                }
                let r = records.entry(e.account).or_default();
                r.answered = r.answered.saturating_add(e.answered);
                r.correct = r.correct.saturating_add(e.correct);
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let compacted = path.with_extension("compacting");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&compacted)?);
        for (account, r) in &records {
            let entry = Entry { account: account.clone(), answered: r.answered, correct: r.correct };
            writeln!(out, "{}", serde_json::to_string(&entry)?)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&compacted, path)?;
        let journal = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Book { records, journal: Some(journal), ..Book::default() })
    }

    fn remember(&mut self, account: &str, correct: bool) {
        let Some(journal) = &mut self.journal else { return };
        let entry = Entry { account: account.to_string(), answered: 1, correct: u32::from(correct) };
        let line = serde_json::to_string(&entry).map(|l| l + "\n");
        if let Err(e) = line.map_err(std::io::Error::from).and_then(|l| journal.write_all(l.as_bytes())) {
            tracing::warn!(error = %e, account, "a gold answer was not journaled; it is lost at the next restart");
        }
    }

    fn forget_expired(&mut self, now: DateTime<Utc>) {
        let held = &mut self.held;
        self.leases.retain(|_, l| {
            let live = l.expires_at > now;
            if !live {
                held.remove(&(l.account.clone(), l.pair));
            }
            live
        });
        self.voted.retain(|_, until| *until > now);
    }

    /// Open leases of `account`.
    pub fn open(&mut self, account: &str, now: DateTime<Utc>) -> usize {
        self.forget_expired(now);
        self.leases.values().filter(|l| l.account == account).count()
    }

    /// Whether `account` holds `pair`, or voted on it lately.
    pub fn has_seen(&self, account: &str, pair: Uuid) -> bool {
        let key = (account.to_string(), pair);
        self.held.contains(&key) || self.voted.contains_key(&key)
    }

    /// Leases `pair` to `account` for `ttl`; `gold` is its known answer, if any, `subject` what
    /// a vote on a real pair records.
    #[allow(clippy::too_many_arguments)]
    pub fn lease(
        &mut self,
        account: &str,
        pair: Uuid,
        gold: Option<bool>,
        subject: Option<Subject>,
        ttl: Duration,
        max_leases: usize,
        now: DateTime<Utc>,
    ) -> Result<Lease, ValidationError> {
        let open = self.open(account, now);
        if open >= MAX_OPEN_PER_ACCOUNT {
            return Err(ValidationError::TooManyOpen(open));
        }
        if self.leases.len() >= max_leases
            || (self.records.len() >= MAX_ACCOUNTS && !self.records.contains_key(account))
        {
            return Err(ValidationError::Full);
        }
        let lease =
            Lease { id: Uuid::now_v7(), account: account.to_string(), pair, expires_at: now + ttl, gold, subject };
        self.leases.insert(lease.id, lease.clone());
        self.held.insert((account.to_string(), pair));
        Ok(lease)
    }

    /// The pair under open lease `id` of `account`, without closing it.
    pub fn leased_pair(&mut self, account: &str, id: Uuid, now: DateTime<Utc>) -> Result<Uuid, ValidationError> {
        self.forget_expired(now);
        match self.leases.get(&id) {
            None => Err(ValidationError::Unknown(id)),
            Some(l) if l.account != account => Err(ValidationError::NotYours(id)),
            Some(l) => Ok(l.pair),
        }
    }

    /// Gives lease `id` of `account` back unused.
    pub fn release(&mut self, account: &str, id: Uuid, now: DateTime<Utc>) -> Result<(), ValidationError> {
        self.take(account, id, now).map(|_| ())
    }

    /// Closes lease `id` of `account` with a vote `accept`; grades it when it is gold. Answers
    /// the lease and the account's record after it.
    pub fn vote(
        &mut self,
        account: &str,
        id: Uuid,
        accept: bool,
        now: DateTime<Utc>,
    ) -> Result<(Lease, Record), ValidationError> {
        let lease = self.take(account, id, now)?;
        if lease.gold.is_none() {
            let ttl = lease.expires_at - now;
            self.voted.insert((account.to_string(), lease.pair), now + ttl.max(Duration::minutes(1)));
        }
        let record = self.records.entry(account.to_string()).or_default();
        if let Some(expected) = lease.gold {
            record.answered += 1;
            record.correct += u32::from(expected == accept);
        }
        let record = *record;
        if let Some(expected) = lease.gold {
            self.remember(account, expected == accept);
        }
        Ok((lease, record))
    }

    fn take(&mut self, account: &str, id: Uuid, now: DateTime<Utc>) -> Result<Lease, ValidationError> {
        self.leased_pair(account, id, now)?;
        let lease = self.leases.remove(&id).ok_or(ValidationError::Unknown(id))?;
        self.held.remove(&(lease.account.clone(), lease.pair));
        Ok(lease)
    }

    /// `account`'s gold record.
    pub fn record(&self, account: &str) -> Record {
        self.records.get(account).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Qualification = Qualification { after: 2, accuracy: 0.75 };

    #[test]
    fn gold_answers_qualify_an_account_and_wrong_ones_unqualify_it() {
        let (mut book, now, ttl) = (Book::default(), Utc::now(), Duration::minutes(5));
        for n in 1..=2 {
            let lease = book.lease("v", Uuid::now_v7(), Some(true), None, ttl, 100, now).expect("lease");
            let (_, record) = book.vote("v", lease.id, true, now).expect("vote");
            assert_eq!((record.answered, record.correct), (n, n));
        }
        assert!(book.record("v").qualifies(Q));
        let lease = book.lease("v", Uuid::now_v7(), Some(false), None, ttl, 100, now).expect("lease");
        book.vote("v", lease.id, true, now).expect("vote");
        assert!(!book.record("v").qualifies(Q), "2 of 3 right is under 75%");
        assert!(!book.record("w").qualifies(Q), "an account that answered nothing");
    }

    #[test]
    fn gold_records_outlive_a_restart_through_the_journal() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("validation/gold.jsonl");
        let (now, ttl) = (Utc::now(), Duration::minutes(5));
        {
            let mut book = Book::open_journal(&path).expect("journal");
            for accept in [true, false, true] {
                let lease = book.lease("v", Uuid::now_v7(), Some(true), None, ttl, 100, now).expect("lease");
                book.vote("v", lease.id, accept, now).expect("vote");
            }
        }
        std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut f| f.write_all(b"{\"acc")).expect("torn");
        let book = Book::open_journal(&path).expect("reopen");
        assert_eq!(book.record("v"), Record { answered: 3, correct: 2 });
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1, "compacted to one line");
    }

    #[test]
    fn leases_are_bounded_owned_and_single_use() {
        let (mut book, now, ttl) = (Book::default(), Utc::now(), Duration::minutes(5));
        let pair = Uuid::now_v7();
        let lease = book.lease("v", pair, None, None, ttl, 100, now).expect("lease");
        assert!(book.has_seen("v", pair) && !book.has_seen("w", pair));
        book.release("v", lease.id, now).expect("release");
        assert!(!book.has_seen("v", pair), "a released pair may be leased again");
        let lease = book.lease("v", pair, None, None, ttl, 100, now).expect("lease again");
        assert_eq!(book.vote("w", lease.id, true, now), Err(ValidationError::NotYours(lease.id)));
        book.vote("v", lease.id, true, now).expect("vote");
        assert_eq!(book.vote("v", lease.id, true, now), Err(ValidationError::Unknown(lease.id)), "one vote per lease");
        assert!(book.has_seen("v", pair), "a pair voted on is not leased again while its vote lands");
        for _ in 0..MAX_OPEN_PER_ACCOUNT {
            book.lease("v", Uuid::now_v7(), None, None, ttl, 100, now).expect("lease");
        }
        assert!(matches!(
            book.lease("v", Uuid::now_v7(), None, None, ttl, 100, now),
            Err(ValidationError::TooManyOpen(_))
        ));
        assert_eq!(book.lease("w", Uuid::now_v7(), None, None, ttl, 16, now), Err(ValidationError::Full));
        // Expired leases free their places.
        let later = now + ttl + Duration::seconds(1);
        assert_eq!(book.open("v", later), 0);
        assert!(book.lease("w", Uuid::now_v7(), None, None, ttl, 16, later).is_ok());
    }
}
