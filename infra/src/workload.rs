//! A seeded, realistic workload: many contributors, a few bots and spammers, multi-model chat
//! turns with preferences, and image-text pairs with small generated images.
//!
//! The same seed always yields the same events (ids included), so demos, tests and benchmarks
//! are repeatable. Humans ask varied questions and judge answers; bots repeat templated prompts;
//! spammers paste links and always pick the first answer.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use uuid::Uuid;

use gata_contract::{ChatTurn, ClientInfo, Event, ImagePayload, ImageTextPair, ModelResponse, Preference};

/// How a generated contributor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persona {
    /// Varied prompts, honest judgements.
    Human,
    /// The same templated prompt over and over.
    Bot,
    /// Links and filler, always picks the first answer.
    Spammer,
}

/// A generated contributor.
#[derive(Debug, Clone)]
pub struct Contributor {
    /// `ctr_…` id.
    pub id: String,
    /// Behaviour.
    pub persona: Persona,
}

/// Generates events from a seed.
#[derive(Debug)]
pub struct Workload {
    rng: StdRng,
    contributors: Vec<Contributor>,
    start: DateTime<Utc>,
    tick: i64,
    turns: u64,
    /// Distinguishes this run's turn ids from other seeds'.
    run: u32,
}

const MODELS: [&str; 5] = ["gpt-4o", "claude-3.5-sonnet", "deepseek-v3", "llama-3.1-70b", "gemini-1.5-pro"];
const TOPICS: [&str; 12] = [
    "my sourdough starter",
    "a 30-year fixed mortgage",
    "the Rust borrow checker",
    "training for a first marathon",
    "repotting a monstera",
    "learning Japanese kana",
    "a leaking kitchen faucet",
    "index funds versus ETFs",
    "photosynthesis",
    "writing a cover letter",
    "brewing pour-over coffee",
    "the French Revolution",
];
const ASKS: [&str; 6] = [
    "How should I think about {}?",
    "What are common mistakes with {}?",
    "Explain {} to a beginner.",
    "Give me a step-by-step plan for {}.",
    "What does the research say about {}?",
    "Is it worth it to bother with {}?",
];
/// What a person adds about their situation, so that two people's questions rarely match.
const DETAILS: [&str; 16] = [
    "I only have about twenty minutes a day for this.",
    "My partner thinks I am overcomplicating it.",
    "I already tried once last spring and gave up after a month.",
    "Money is tight, so cheap options matter more than perfect ones.",
    "I live in a small flat with no garden or balcony.",
    "A friend swears by one approach but I never understood why.",
    "My teacher mentioned it in passing and now I am curious.",
    "I read three blog posts and they all disagreed with each other.",
    "Our kids want to help, so it should be safe and simple.",
    "I am sixty-two and not very patient with jargon.",
    "Work keeps me travelling two weeks out of four.",
    "The local library has a few books on it, if that helps.",
    "I keep notes in a spreadsheet and like numbers.",
    "Last time I asked, the answer was far too vague to act on.",
    "Winters here are long and dark, which seems to matter.",
    "I would rather understand the reasons than follow a recipe.",
];
/// What a person wants out of the answer.
const GOALS: [&str; 10] = [
    "Please keep it short.",
    "A checklist would be ideal.",
    "Point out anything risky.",
    "Which sources should I trust?",
    "What would you do first in my place?",
    "Compare two options honestly.",
    "How will I know it is working?",
    "What mistakes do beginners regret?",
    "Is there a cheaper way?",
    "Explain it like I am new to this.",
];
const COLORS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 170, 60]),
    ("blue", [40, 80, 220]),
    ("yellow", [240, 210, 40]),
    ("purple", [140, 60, 180]),
    ("orange", [245, 140, 30]),
];

/// Seconds the workload's clock moves on, at most, from one event to the next.
const MAX_STEP_SECONDS: i64 = 19;

impl Workload {
    /// A workload of `contributors` people (about 1 in 12 a bot, 1 in 15 a spammer), from `seed`.
    pub fn new(seed: u64, contributors: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let contributors = (0..contributors.max(1))
            .map(|i| {
                let persona = match i % 60 {
                    5 | 29 | 53 => Persona::Bot,
                    11 | 41 | 47 | 59 => Persona::Spammer,
                    _ => Persona::Human,
                };
                Contributor { id: format!("ctr_{:08x}", rng.random::<u32>()), persona }
            })
            .collect();
        let start = DateTime::parse_from_rfc3339("2026-11-20T08:00:00Z").expect("constant parses").with_timezone(&Utc);
        Self { rng, contributors, start, tick: 0, turns: 0, run: (seed as u32) ^ (seed >> 32) as u32 }
    }

    /// The generated contributors.
    pub fn contributors(&self) -> &[Contributor] {
        &self.contributors
    }

    fn uuid(&mut self) -> Uuid {
        let ms = (self.start + Duration::seconds(self.tick)).timestamp_millis() as u64;
        uuid::Builder::from_unix_timestamp_millis(ms, &self.rng.random()).into_uuid()
    }

    /// The same workload with its clock starting at `start` (by default 2026-11-20 08:00 UTC).
    pub fn starting_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    /// The longest the clock of [`Workload::events`]`(turns, images)` can run: each event moves
    /// it on by at most [`MAX_STEP_SECONDS`].
    pub fn max_span(turns: usize, images: usize) -> Duration {
        Duration::seconds(MAX_STEP_SECONDS * (2 * turns + images) as i64)
    }

    fn now(&mut self) -> DateTime<Utc> {
        self.tick += self.rng.random_range(1..MAX_STEP_SECONDS + 1);
        self.start + Duration::seconds(self.tick)
    }

    fn contributor(&mut self) -> Contributor {
        self.contributors.choose(&mut self.rng).expect("at least one contributor").clone()
    }

    /// One chat turn and, most of the time, the contributor's preference for it.
    pub fn chat(&mut self) -> Vec<Event> {
        let who = self.contributor();
        self.turns += 1;
        let turn_id = format!("turn_{:08x}_{:06}", self.run, self.turns);
        let topic = *TOPICS.choose(&mut self.rng).expect("topics");
        let prompt = match who.persona {
            Persona::Human => format!(
                "{} {} {}",
                ASKS.choose(&mut self.rng).expect("asks").replace("{}", topic),
                DETAILS.choose(&mut self.rng).expect("details"),
                GOALS.choose(&mut self.rng).expect("goals"),
            ),
            Persona::Bot => "Tell me about the weather today.".to_string(),
            Persona::Spammer => "BEST DEALS click http://spam.example/win now now now".to_string(),
        };
        let n = self.rng.random_range(2..=4);
        let models: Vec<&str> = MODELS.choose_multiple(&mut self.rng, n).copied().collect();
        let responses: Vec<ModelResponse> = models
            .iter()
            .enumerate()
            .map(|(i, model)| ModelResponse {
                response_id: format!("rsp_{}", (b'a' + i as u8) as char),
                model: model.to_string(),
                text: format!(
                    "About {topic}: {} ({model} view, {} points).",
                    ["start small and be consistent", "measure before you change anything", "the basics matter most"]
                        [i % 3],
                    2 + i
                ),
                latency_ms: Some(self.rng.random_range(300..4000)),
            })
            .collect();
        let occurred_at = self.now();
        let turn = ChatTurn {
            event_id: self.uuid(),
            contributor_id: who.id.clone(),
            session_id: Some(format!("ses_{}", &who.id[4..])),
            turn_id: turn_id.clone(),
            occurred_at,
            prompt,
            responses: responses.clone(),
            client: Some(ClientInfo {
                app: Some("gatagpt-web".into()),
                version: Some("2.3.1".into()),
                locale: Some("en-US".into()),
            }),
            submitted_by: None,
            signature: None,
        };
        let mut out = vec![Event::ChatTurn(turn)];
        if who.persona == Persona::Bot || self.rng.random_bool(0.15) {
            return out;
        }
        let chosen = match who.persona {
            Persona::Spammer => 0,
            _ => self.rng.random_range(0..responses.len()),
        };
        let ids: Vec<String> = responses.iter().map(|r| r.response_id.clone()).collect();
        let occurred_at = self.now();
        out.push(Event::Preference(Preference {
            event_id: self.uuid(),
            contributor_id: who.id.clone(),
            session_id: Some(format!("ses_{}", &who.id[4..])),
            turn_id,
            occurred_at,
            chosen_response_id: Some(ids[chosen].clone()),
            rejected_response_ids: ids
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != chosen)
                .map(|(_, id)| id.clone())
                .collect(),
            all_bad: false,
            rating: (who.persona == Persona::Human).then(|| self.rng.random_range(2..=5)),
            reason: (who.persona == Persona::Human && self.rng.random_bool(0.4))
                .then(|| "Clearer and more concrete.".to_string()),
            submitted_by: None,
            signature: None,
        }));
        out
    }

    /// One image-text pair: a small generated PNG of two colours, captioned truthfully by humans.
    pub fn image_pair(&mut self) -> Event {
        let who = self.contributor();
        let (bg_name, bg) = *COLORS.choose(&mut self.rng).expect("colors");
        let (fg_name, fg) = *COLORS.choose(&mut self.rng).expect("colors");
        let side = self.rng.random_range(16..=48u32);
        let png = square_png(side, bg, fg);
        let caption = match who.persona {
            Persona::Human => format!("A {fg_name} square on a {bg_name} background"),
            Persona::Bot => "image".to_string(),
            Persona::Spammer => "cheap pills http://spam.example".to_string(),
        };
        let occurred_at = self.now();
        Event::ImageTextPair(ImageTextPair {
            event_id: self.uuid(),
            contributor_id: who.id,
            occurred_at,
            caption,
            image: ImagePayload {
                content_type: "image/png".into(),
                base64: Some(base64::engine::general_purpose::STANDARD.encode(png)),
                url: None,
            },
            source_url: Some(format!("https://images.example.org/{side}/{bg_name}-{fg_name}.png")),
            license: Some("CC-BY-4.0".into()),
            submitted_by: None,
            signature: None,
        })
    }

    /// `turns` chat turns (with their preferences) and `images` image-text pairs, interleaved.
    pub fn events(&mut self, turns: usize, images: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(turns * 2 + images);
        let (mut t, mut i) = (0, 0);
        while t < turns || i < images {
            if t < turns && (i >= images || self.rng.random_bool(turns as f64 / (turns + images) as f64)) {
                out.extend(self.chat());
                t += 1;
            } else {
                out.push(self.image_pair());
                i += 1;
            }
        }
        out
    }
}

/// A `side`×`side` RGB PNG: background `bg` with a centred square of `fg`.
fn square_png(side: u32, bg: [u8; 3], fg: [u8; 3]) -> Vec<u8> {
    let (lo, hi) = (side / 4, side - side / 4);
    let mut pixels = Vec::with_capacity((side * side * 3) as usize);
    for y in 0..side {
        for x in 0..side {
            let inside = (lo..hi).contains(&x) && (lo..hi).contains(&y);
            pixels.extend_from_slice(if inside { &fg } else { &bg });
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().expect("PNG header into a Vec");
    writer.write_image_data(&pixels).expect("pixel count matches the header");
    drop(writer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gata_contract::Limits;

    #[test]
    fn same_seed_same_events_and_all_valid() {
        let a = Workload::new(7, 50).events(40, 10);
        let b = Workload::new(7, 50).events(40, 10);
        assert_eq!(a, b);
        let limits = Limits { max_future_skew: std::time::Duration::from_secs(10 * 365 * 86400), ..Limits::default() };
        for e in &a {
            assert!(e.violations(&limits).is_empty(), "{e:?}: {:?}", e.violations(&limits));
        }
        assert_eq!(a.iter().filter(|e| matches!(e, Event::ImageTextPair(_))).count(), 10);
        assert_eq!(a.iter().filter(|e| matches!(e, Event::ChatTurn(_))).count(), 40);
    }

    #[test]
    fn the_crowd_has_bots_and_spammers() {
        let w = Workload::new(1, 120);
        let count = |p| w.contributors().iter().filter(|c| c.persona == p).count();
        assert!(count(Persona::Bot) >= 2 && count(Persona::Spammer) >= 2 && count(Persona::Human) > 100);
    }
}
