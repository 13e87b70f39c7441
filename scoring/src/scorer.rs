//! The stateful scorer: what it remembers between submissions and how each signal becomes a
//! reason.

use std::collections::VecDeque;

use foldhash::HashMap;

use chrono::{DateTime, Utc};
use gata_contract::{ChatTurn, Event, Preference};

use crate::{
    Reason, Score, SubScores, Verdict,
    embed::Topic,
    minhash::{LshIndex, MAX_BUCKET, Signature, hash_words, signature_of_words, similarity, words},
    text::{TextReport, assess},
};

/// Version of the scoring rules; stored with every score so history can be re-scored by a
/// newer version and the two compared. Bump it whenever a rule, weight or threshold changes.
pub const SCORER_VERSION: &str = "text-1.0.0";

/// Thresholds of the scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerConfig {
    /// Overall scores below this are rejected.
    pub reject_below: f64,
    /// A realism or behaviour sub-score below this rejects on its own: one clear sign of junk
    /// text or of a bot is enough, however good the rest looks.
    pub sub_score_floor: f64,
    /// Similarity from which an earlier prompt counts as a near duplicate.
    pub near_duplicate: f64,
    /// Similarity from which two of a contributor's prompts share a template.
    pub template: f64,
    /// Similar earlier prompts in the contributor's window that make a template.
    pub template_uses: usize,
    /// Distinct accounts sharing near-duplicate prompts that make a Sybil cluster.
    pub sybil_accounts: usize,
    /// Recent submissions remembered per contributor.
    pub window: usize,
    /// Submissions within one minute that make a burst.
    pub burst_per_minute: usize,
    /// Inter-arrival coefficients of variation below this are machine-regular.
    pub regular_cv: f64,
    /// Words per second a person can read answers at, at most.
    pub reading_words_per_second: f64,
    /// Prompts with at least this many words must not be exact copies.
    pub exact_copy_min_words: usize,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            reject_below: 0.5,
            sub_score_floor: 0.35,
            near_duplicate: 0.8,
            template: 0.3,
            template_uses: 2,
            sybil_accounts: 3,
            window: 32,
            burst_per_minute: 4,
            regular_cv: 0.1,
            reading_words_per_second: 15.0,
            exact_copy_min_words: 6,
        }
    }
}

/// Scores chat turns and preferences in log order.
#[derive(Debug, Default)]
pub struct Scorer {
    cfg: ScorerConfig,
    prompts: LshIndex<u32>,
    exact: HashMap<u64, Vec<u32>>,
    contributors: HashMap<String, u32>,
    state: Vec<Contributor>,
    turns: HashMap<String, TurnFacts>,
}

/// What the scorer remembers of one contributor.
#[derive(Debug, Default)]
struct Contributor {
    times: VecDeque<DateTime<Utc>>,
    prompts: VecDeque<(Signature, Topic)>,
    positions: HashMap<usize, u32>,
    preferences: u32,
}

/// What a preference needs to know of its turn.
#[derive(Debug)]
struct TurnFacts {
    occurred_at: DateTime<Utc>,
    response_ids: Vec<String>,
    answer_words: usize,
}

/// What a chat turn's own texts say, whatever the scorer remembers: computed without the
/// scorer, so a batch of turns can be assessed on several threads and then folded in log order
/// by [`Scorer::score_prepared_turn`].
#[derive(Debug, Clone)]
pub struct TurnText {
    prompt: TextReport,
    worst_answer: f64,
    /// The rules that fired on the answers, sorted and distinct (when the worst is junk).
    answer_codes: Vec<&'static str>,
    words: usize,
    sig: Option<Signature>,
    fingerprint: u64,
    topic: Topic,
    answer_words: usize,
}

impl TurnText {
    /// Assesses the prompt and the answers of `turn`.
    pub fn of(turn: &ChatTurn) -> Self {
        let answers: Vec<TextReport> = turn.responses.iter().map(|r| assess(&r.text)).collect();
        let worst_answer = answers.iter().map(|a| a.realism).fold(1.0, f64::min);
        let mut answer_codes = Vec::new();
        if worst_answer < 0.5 {
            answer_codes = answers.iter().flat_map(|a| a.reasons.iter().map(|r| r.code)).collect();
            answer_codes.sort_unstable();
            answer_codes.dedup();
        }
        let words = words(&turn.prompt);
        Self {
            prompt: assess(&turn.prompt),
            worst_answer,
            answer_codes,
            words: words.len(),
            sig: signature_of_words(&words),
            fingerprint: hash_words(&words),
            topic: Topic::of_words(&words),
            answer_words: answers.iter().map(|a| a.words).sum(),
        }
    }
}

/// What a shard keeps of a chat turn another shard judges ([`Scorer::remember`]): its prompt's
/// signature and fingerprint, for copies across accounts, and its answers' length, for the
/// preferences that judge it.
#[derive(Debug, Clone)]
pub struct Remembered {
    sig: Option<Signature>,
    fingerprint: u64,
    answer_words: usize,
}

impl Remembered {
    /// What a shard keeps of `turn`; its texts are not judged.
    pub fn of(turn: &ChatTurn) -> Self {
        let words = words(&turn.prompt);
        Self {
            sig: signature_of_words(&words),
            fingerprint: hash_words(&words),
            answer_words: turn.responses.iter().map(|r| r.text.split_whitespace().count()).sum(),
        }
    }
}

/// What a preference's written reason says: see [`TurnText`].
#[derive(Debug, Clone)]
pub struct PreferenceText {
    reason: Option<TextReport>,
}

impl PreferenceText {
    /// Assesses the written reason of `pref`, when it has one.
    pub fn of(pref: &Preference) -> Self {
        Self { reason: pref.reason.as_deref().filter(|r| !r.trim().is_empty()).map(assess) }
    }
}

/// A submission's texts, assessed ahead of scoring.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A chat turn's.
    Turn(Box<TurnText>),
    /// A preference's.
    Preference(PreferenceText),
    /// What a shard keeps of a chat turn another shard judges, for [`Scorer::remember`].
    Remembered(Box<Remembered>),
    /// Nothing assessed: an image-text pair (not this scorer's), or a submission whose texts
    /// [`Scorer::score_event`] is to assess itself.
    Nothing,
}

impl Prepared {
    /// Assesses the texts of `event`.
    pub fn of(event: &Event) -> Self {
        match event {
            Event::ChatTurn(turn) => Self::Turn(Box::new(TurnText::of(turn))),
            Event::Preference(pref) => Self::Preference(PreferenceText::of(pref)),
            Event::ImageTextPair(_) => Self::Nothing,
        }
    }

    /// What a shard keeps of `event` when another shard judges it ([`Remembered`]; nothing of
    /// a preference), for [`Scorer::remember`].
    pub fn remembered(event: &Event) -> Self {
        match event {
            Event::ChatTurn(turn) => Self::Remembered(Box::new(Remembered::of(turn))),
            Event::Preference(_) | Event::ImageTextPair(_) => Self::Nothing,
        }
    }
}

/// Turns remembered for their preferences; the oldest half is forgotten past this.
const MAX_TURNS: usize = 200_000;

impl Scorer {
    /// A scorer with `cfg`.
    pub fn new(cfg: ScorerConfig) -> Self {
        Self { cfg, ..Self::default() }
    }

    /// Scores a chat turn and remembers it.
    pub fn score_turn(&mut self, turn: &ChatTurn) -> Score {
        self.score_prepared_turn(turn, TurnText::of(turn))
    }

    /// Scores a submission, its texts already assessed ([`Prepared::of`]); none for the kinds
    /// this scorer does not judge (image-text pairs). `prepared` of another submission kind is
    /// ignored and the texts assessed here.
    pub fn score_event(&mut self, event: &Event, prepared: Prepared) -> Option<Score> {
        Some(match (event, prepared) {
            (Event::ChatTurn(turn), Prepared::Turn(text)) => self.score_prepared_turn(turn, *text),
            (Event::ChatTurn(turn), _) => self.score_turn(turn),
            (Event::Preference(pref), Prepared::Preference(text)) => self.score_prepared_preference(pref, text),
            (Event::Preference(pref), _) => self.score_preference(pref),
            (Event::ImageTextPair(_), _) => return None,
        })
    }

    /// Takes in a submission that another shard judges, `prepared` by [`Prepared::remembered`]
    /// (else computed here), judging nothing. Shards split the work by contributor, so a shard
    /// keeps of others' submissions only what its own contributors' verdicts depend on: every
    /// prompt, for copies across accounts and Sybil clusters, and every turn, for the
    /// preferences that judge it. Its own contributors' verdicts are then the ones a single
    /// scorer fed every submission in the same order gives.
    pub fn remember(&mut self, event: &Event, prepared: Prepared) {
        let Event::ChatTurn(turn) = event else { return };
        let Remembered { sig, fingerprint, answer_words } = match prepared {
            Prepared::Remembered(kept) => *kept,
            _ => Remembered::of(turn),
        };
        let who = self.contributor_index(&turn.contributor_id);
        if let Some(sig) = sig {
            self.remember_copyable(who, sig, fingerprint);
        }
        self.remember_turn(turn, answer_words);
    }

    /// Scores a chat turn whose texts were assessed by [`TurnText::of`], and remembers it.
    pub fn score_prepared_turn(&mut self, turn: &ChatTurn, text: TurnText) -> Score {
        let who = self.contributor_index(&turn.contributor_id);
        let TurnText { prompt, worst_answer, answer_codes, words, sig, fingerprint, topic, answer_words } = text;
        // The prompt is the contributor's own text; junk answers can only lower it.
        let realism = prompt.realism * (0.75 + 0.25 * worst_answer);
        let mut reasons = prompt.reasons;
        if worst_answer < 0.5 {
            reasons.push(Reason::new("junk_answers", 0.5, answer_codes.join(", ")));
        }

        let (originality, original_reasons) = self.originality(who, sig.as_ref(), fingerprint, words);
        reasons.extend(original_reasons);
        let (diversity, diversity_reasons) = self.diversity(who, sig.as_ref(), &topic);
        reasons.extend(diversity_reasons);
        let mut behaviour_reasons = self.timing(who, turn.occurred_at);
        if let Some(sig) = sig {
            behaviour_reasons.extend(self.template(who, &sig));
        }
        let behaviour = product(&behaviour_reasons);
        reasons.extend(behaviour_reasons);

        self.remember_prompt(who, sig, fingerprint, topic);
        self.remember_turn(turn, answer_words);
        self.verdict(SubScores { realism, originality, diversity, behaviour }, reasons, prompt.language)
    }

    /// Whether the scorer has seen (and still remembers) turn `turn_id`.
    pub fn knows_turn(&self, turn_id: &str) -> bool {
        self.turns.contains_key(turn_id)
    }

    /// Scores a preference against the turn it judges (when the scorer saw it) and remembers it.
    pub fn score_preference(&mut self, pref: &Preference) -> Score {
        self.score_prepared_preference(pref, PreferenceText::of(pref))
    }

    /// Scores a preference whose written reason was assessed by [`PreferenceText::of`].
    pub fn score_prepared_preference(&mut self, pref: &Preference, text: PreferenceText) -> Score {
        let who = self.contributor_index(&pref.contributor_id);
        let mut behaviour = self.timing(who, pref.occurred_at);
        if let Some(chosen) = &pref.chosen_response_id
            && pref.rejected_response_ids.contains(chosen)
        {
            behaviour.push(Reason::new("chosen_is_rejected", 1.0, format!("{chosen} is both chosen and rejected")));
        }
        match self.turns.get(&pref.turn_id) {
            None => behaviour.push(Reason::new("unknown_turn", 0.2, format!("turn {} not seen", pref.turn_id))),
            Some(turn) => {
                let elapsed = (pref.occurred_at - turn.occurred_at).num_milliseconds() as f64 / 1000.0;
                let needed = (turn.answer_words as f64 / self.cfg.reading_words_per_second).max(1.0);
                if elapsed < needed * 0.5 {
                    behaviour.push(Reason::new(
                        "too_fast_to_read",
                        0.8,
                        format!("judged {elapsed:.1}s after the turn; reading its answers takes ~{needed:.0}s"),
                    ));
                }
                let position =
                    pref.chosen_response_id.as_ref().and_then(|c| turn.response_ids.iter().position(|r| r == c));
                if let Some(position) = position {
                    behaviour.extend(self.position_bias(who, position));
                }
            }
        }
        let realism_report = text.reason;
        let realism = realism_report.as_ref().map_or(1.0, |r| 0.5 + 0.5 * r.realism);
        let language = realism_report.as_ref().and_then(|r| r.language);
        let mut reasons: Vec<Reason> = realism_report.map(|r| r.reasons).unwrap_or_default();
        // The written reason is optional: its faults weigh half, and never reject on their own.
        reasons.iter_mut().for_each(|r| r.penalty = (r.penalty * 0.5).min(0.5));
        let sub = SubScores { realism, originality: 1.0, diversity: 1.0, behaviour: product(&behaviour) };
        reasons.extend(behaviour);
        self.verdict(sub, reasons, language)
    }

    fn verdict(&self, sub: SubScores, reasons: Vec<Reason>, language: Option<&'static str>) -> Score {
        let weighted = [(sub.realism, 0.4), (sub.originality, 0.3), (sub.behaviour, 0.2), (sub.diversity, 0.1)];
        let overall = weighted.iter().map(|(s, w)| s.max(1e-6).powf(*w)).product::<f64>();
        let overall = if overall < 1e-3 { 0.0 } else { overall };
        let floored = sub.realism.min(sub.behaviour) < self.cfg.sub_score_floor;
        let verdict = if overall < self.cfg.reject_below || floored || reasons.iter().any(Reason::is_hard) {
            Verdict::Reject
        } else {
            Verdict::Accept
        };
        Score { sub, overall, verdict, reasons, language }
    }

    fn contributor_index(&mut self, id: &str) -> u32 {
        if let Some(i) = self.contributors.get(id) {
            return *i;
        }
        let i = u32::try_from(self.state.len()).unwrap_or(u32::MAX);
        self.contributors.insert(id.to_string(), i);
        self.state.push(Contributor::default());
        i
    }

    /// Exact and near duplicates of earlier prompts, anyone's; copies across accounts; clusters
    /// of accounts sharing one prompt.
    fn originality(&mut self, who: u32, sig: Option<&Signature>, fingerprint: u64, words: usize) -> (f64, Vec<Reason>) {
        let mut reasons = Vec::new();
        let Some(sig) = sig else { return (1.0, reasons) };
        let (near_duplicate, mut closest, mut near) = (self.cfg.near_duplicate, 0.0, Vec::new());
        self.prompts.for_each_match(sig, self.cfg.template.min(near_duplicate), |key, similarity| {
            closest = f64::max(closest, similarity);
            if similarity >= near_duplicate {
                near.push(key);
            }
        });
        near.sort_unstable();
        near.dedup();
        let exact_owners = self.exact.get(&fingerprint).map_or(&[][..], Vec::as_slice);
        if !exact_owners.is_empty() && words >= self.cfg.exact_copy_min_words {
            let others = exact_owners.iter().filter(|o| **o != who).count();
            let whose = if others > 0 { "another account's" } else { "their own" };
            reasons.push(Reason::new("exact_duplicate", 1.0, format!("repeats {whose} earlier prompt word for word")));
        } else if closest >= self.cfg.near_duplicate {
            reasons.push(Reason::new(
                "near_duplicate",
                1.0,
                format!("{:.0}% similar to an earlier prompt", closest * 100.0),
            ));
        }
        if near.iter().any(|o| *o != who) {
            reasons.push(Reason::new(
                "copied_across_accounts",
                0.5,
                "an earlier near-identical prompt came from another account".into(),
            ));
        }
        let accounts = near.len() + usize::from(near.binary_search(&who).is_err());
        if accounts >= self.cfg.sybil_accounts {
            reasons.push(Reason::new("sybil_cluster", 1.0, format!("{accounts} accounts share this prompt")));
        }
        (1.0 - closest, reasons)
    }

    /// How far the prompt is from the contributor's recent ones, and how varied those are.
    fn diversity(&self, who: u32, sig: Option<&Signature>, topic: &Topic) -> (f64, Vec<Reason>) {
        let recent = &self.state[who as usize].prompts;
        if sig.is_none() || recent.len() < 4 {
            return (1.0, Vec::new());
        }
        let mean = recent.iter().map(|(_, t)| topic.cosine(t)).sum::<f32>() / recent.len() as f32;
        let diversity = f64::from(1.0 - mean).clamp(0.0, 1.0);
        let mut reasons = Vec::new();
        if mean > 0.6 {
            reasons.push(Reason::new(
                "low_topic_diversity",
                0.5,
                format!("{:.0}% topic overlap with their last {} prompts", mean * 100.0, recent.len()),
            ));
        }
        (diversity, reasons)
    }

    /// The contributor's recent prompts that this one follows as a template.
    fn template(&self, who: u32, sig: &Signature) -> Option<Reason> {
        let recent = &self.state[who as usize].prompts;
        let uses = recent.iter().filter(|(s, _)| similarity(sig, s) >= self.cfg.template).count();
        (uses >= self.cfg.template_uses).then(|| {
            Reason::new(
                "template_reuse",
                0.7,
                format!("follows the same template as {uses} of their last {} prompts", recent.len()),
            )
        })
    }

    /// Submission rate and regularity over the contributor's recent submissions.
    fn timing(&mut self, who: u32, at: DateTime<Utc>) -> Vec<Reason> {
        let window = self.cfg.window;
        let times = &mut self.state[who as usize].times;
        times.push_back(at);
        if times.len() > window {
            times.pop_front();
        }
        let mut reasons = Vec::new();
        let last_minute = times.iter().filter(|t| (at - **t).num_seconds().abs() < 60).count();
        if last_minute >= self.cfg.burst_per_minute {
            reasons.push(Reason::new("burst", 0.7, format!("{last_minute} submissions within a minute")));
        }
        let mut sorted: Vec<i64> = times.iter().map(DateTime::timestamp_millis).collect();
        sorted.sort_unstable();
        let gaps: Vec<f64> = sorted.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        if gaps.len() >= 8 {
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
            let cv = if mean > 0.0 { sd / mean } else { 0.0 };
            if cv < self.cfg.regular_cv {
                reasons.push(Reason::new(
                    "regular_intervals",
                    0.7,
                    format!("submits every {:.1}s ± {:.0}%", mean / 1000.0, cv * 100.0),
                ));
            }
        }
        reasons
    }

    /// Always choosing the answer in the same position.
    fn position_bias(&mut self, who: u32, position: usize) -> Option<Reason> {
        let state = &mut self.state[who as usize];
        state.preferences += 1;
        *state.positions.entry(position).or_default() += 1;
        let top = state.positions.values().copied().max().unwrap_or(0);
        (state.preferences >= 10 && top * 10 >= state.preferences * 9).then(|| {
            Reason::new(
                "same_position",
                0.7,
                format!("chose the same position in {top} of {} judgements", state.preferences),
            )
        })
    }

    fn remember_prompt(&mut self, who: u32, sig: Option<Signature>, fingerprint: u64, topic: Topic) {
        let Some(sig) = sig else { return };
        self.remember_copyable(who, sig, fingerprint);
        let recent = &mut self.state[who as usize].prompts;
        recent.push_back((sig, topic));
        if recent.len() > self.cfg.window {
            recent.pop_front();
        }
    }

    /// Indexes a prompt of `who` for the copies that may follow it, from any account.
    fn remember_copyable(&mut self, who: u32, sig: Signature, fingerprint: u64) {
        self.prompts.insert(who, sig);
        let owners = self.exact.entry(fingerprint).or_default();
        // Bounded like the LSH buckets: a flood of one prompt costs constant work per copy.
        if owners.len() < MAX_BUCKET && !owners.contains(&who) {
            owners.push(who);
        }
    }

    fn remember_turn(&mut self, turn: &ChatTurn, answer_words: usize) {
        if self.turns.len() >= MAX_TURNS {
            let cutoff = {
                let mut times: Vec<DateTime<Utc>> = self.turns.values().map(|t| t.occurred_at).collect();
                times.sort_unstable();
                times[times.len() / 2]
            };
            self.turns.retain(|_, t| t.occurred_at > cutoff);
        }
        self.turns.insert(
            turn.turn_id.clone(),
            TurnFacts {
                occurred_at: turn.occurred_at,
                response_ids: turn.responses.iter().map(|r| r.response_id.clone()).collect(),
                answer_words,
            },
        );
    }
}

fn product(reasons: &[Reason]) -> f64 {
    reasons.iter().fold(1.0, |acc, r| acc * (1.0 - r.penalty))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use gata_contract::ModelResponse;

    use super::*;

    fn turn(who: &str, id: &str, at: DateTime<Utc>, prompt: &str) -> ChatTurn {
        let answer = |rid: &str, text: &str| ModelResponse {
            response_id: rid.into(),
            model: "m".into(),
            text: text.into(),
            latency_ms: None,
        };
        ChatTurn {
            event_id: uuid_for(id),
            contributor_id: who.into(),
            session_id: None,
            turn_id: id.into(),
            occurred_at: at,
            prompt: prompt.into(),
            responses: vec![
                answer("a", "Feed it twice a day with equal weights of flour and water, and keep it somewhere warm."),
                answer(
                    "b",
                    "Discard most of it, feed it rye flour for a few days, and the smell should fade within a week.",
                ),
            ],
            client: None,
            submitted_by: None,
            signature: None,
        }
    }

    fn uuid_for(s: &str) -> uuid::Uuid {
        uuid::Uuid::from_u128(s.bytes().fold(7u128, |h, b| h.wrapping_mul(131).wrapping_add(u128::from(b))))
    }

    fn pref(who: &str, turn: &str, at: DateTime<Utc>, chosen: &str, rejected: &str) -> Preference {
        Preference {
            event_id: uuid_for(&format!("{turn}{who}")),
            contributor_id: who.into(),
            session_id: None,
            turn_id: turn.into(),
            occurred_at: at,
            chosen_response_id: Some(chosen.into()),
            rejected_response_ids: vec![rejected.into()],
            all_bad: false,
            rating: None,
            reason: None,
            submitted_by: None,
            signature: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T08:00:00Z").unwrap().with_timezone(&Utc)
    }

    const PROMPTS: [&str; 6] = [
        "My sourdough starter smells like nail polish remover after two days. Is it ruined?",
        "What should I look for when comparing a fixed and a variable rate mortgage?",
        "Why does the borrow checker reject two mutable references to one vector in Rust?",
        "How many weeks of training does a beginner need before running a first marathon?",
        "When is the right season to repot a monstera, and which soil mix works best?",
        "Explain photosynthesis to a ten year old using an analogy with a kitchen.",
    ];

    #[test]
    fn genuine_varied_turns_are_accepted() {
        let mut s = Scorer::default();
        for (i, p) in PROMPTS.iter().enumerate() {
            let score = s.score_turn(&turn(
                "alice",
                &format!("t{i}"),
                t0() + Duration::seconds(97 * i as i64 * i as i64 + 40),
                p,
            ));
            assert_eq!(score.verdict, Verdict::Accept, "{p}: {score:?}");
            assert!(score.overall > 0.8, "{score:?}");
        }
    }

    #[test]
    fn copies_templates_and_sybils_are_rejected_with_reasons() {
        let mut s = Scorer::default();
        s.score_turn(&turn("alice", "t0", t0(), PROMPTS[0]));
        let copy = s.score_turn(&turn("bob", "t1", t0() + Duration::minutes(5), PROMPTS[0]));
        assert_eq!(copy.verdict, Verdict::Reject);
        assert!(copy.reasons.iter().any(|r| r.code == "exact_duplicate"), "{copy:?}");
        let near = s.score_turn(&turn("carol", "t2", t0() + Duration::minutes(9), &format!("{} Thanks!", PROMPTS[0])));
        let codes: Vec<&str> = near.reasons.iter().map(|r| r.code).collect();
        assert!(codes.contains(&"copied_across_accounts") && codes.contains(&"sybil_cluster"), "{codes:?}");
        assert_eq!(near.verdict, Verdict::Reject);

        let mut bot = Scorer::default();
        let mut last = None;
        for (i, city) in ["Paris", "Lima", "Oslo", "Rome", "Cairo", "Quito"].iter().enumerate() {
            let prompt = format!("Write a short travel guide for a weekend in {city} with a budget of 500 euros");
            last =
                Some(bot.score_turn(&turn("bot", &format!("b{i}"), t0() + Duration::minutes(7 * i as i64), &prompt)));
        }
        let last = last.unwrap();
        assert!(last.reasons.iter().any(|r| r.code == "template_reuse"), "{last:?}");
        assert_eq!(last.verdict, Verdict::Reject);
    }

    #[test]
    fn regular_bursts_are_bot_behaviour() {
        let mut s = Scorer::default();
        let mut last = None;
        for i in 0..12 {
            let prompt = format!("{} (variant {i})", PROMPTS[i % PROMPTS.len()]);
            last =
                Some(s.score_turn(&turn("macro", &format!("m{i}"), t0() + Duration::seconds(5 * i as i64), &prompt)));
        }
        let codes: Vec<&str> = last.unwrap().reasons.iter().map(|r| r.code).collect();
        assert!(codes.contains(&"burst") && codes.contains(&"regular_intervals"), "{codes:?}");
    }

    #[test]
    fn preference_patterns() {
        let mut s = Scorer::default();
        for i in 0..12 {
            s.score_turn(&turn("asker", &format!("t{i}"), t0() + Duration::minutes(10 * i), PROMPTS[i as usize % 6]));
        }
        // Judged after a reasonable read, varied positions: accepted.
        let ok = s.score_preference(&pref("judge", "t0", t0() + Duration::seconds(40), "b", "a"));
        assert_eq!(ok.verdict, Verdict::Accept, "{ok:?}");
        // Judged one second after the answers arrived.
        let fast =
            s.score_preference(&pref("judge", "t1", t0() + Duration::minutes(10) + Duration::seconds(1), "a", "b"));
        assert!(fast.reasons.iter().any(|r| r.code == "too_fast_to_read"), "{fast:?}");
        // Chosen and rejected at once.
        let both = s.score_preference(&pref("judge", "t2", t0() + Duration::minutes(21), "a", "a"));
        assert_eq!(both.verdict, Verdict::Reject);
        // Always the first answer.
        let mut last = None;
        for i in 0..12 {
            last = Some(s.score_preference(&pref(
                "lazy",
                &format!("t{i}"),
                t0() + Duration::minutes(10 * i + 2) + Duration::seconds(i * 7),
                "a",
                "b",
            )));
        }
        assert!(last.unwrap().reasons.iter().any(|r| r.code == "same_position"));
        let unknown = s.score_preference(&pref("judge", "nope", t0(), "a", "b"));
        assert!(unknown.reasons.iter().any(|r| r.code == "unknown_turn"));
    }

    #[test]
    fn texts_assessed_in_parallel_fold_to_the_same_scores() {
        let events = gata_infra::workload::Workload::new(3, 40).events(1500, 0);
        let mut one_at_a_time = Scorer::default();
        let expected: Vec<Score> =
            events.iter().filter_map(|e| one_at_a_time.score_event(e, Prepared::Nothing)).collect();
        let mut batched = Scorer::default();
        let mut got = Vec::new();
        for batch in events.chunks(100) {
            let prepared = gata_parallel::map_ordered(batch, 3, gata_parallel::SMALL_ITEMS_PER_THREAD, Prepared::of);
            got.extend(batch.iter().zip(prepared).filter_map(|(e, p)| batched.score_event(e, p)));
        }
        assert_eq!(got.len(), events.len());
        assert!(got.iter().any(|s| s.verdict == Verdict::Reject) && got.iter().any(|s| s.verdict == Verdict::Accept));
        assert_eq!(got, expected);
    }

    #[test]
    fn junk_input_gets_a_reject_not_a_crash() {
        let mut s = Scorer::default();
        for (i, junk) in ["", "\u{0}\u{1}\u{2}\u{3}", &"ab".repeat(50_000), "🙂🙂🙂🙂"].iter().enumerate() {
            let score = s.score_turn(&turn("x", &format!("j{i}"), t0() + Duration::minutes(i as i64 * 13), junk));
            assert_eq!(score.verdict, Verdict::Reject, "{:?}", &junk[..junk.len().min(20)]);
            assert!(!score.reasons.is_empty());
        }
    }
}
