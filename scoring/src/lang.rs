//! Language identification for prompts: by script for non-Latin alphabets, by stop-word votes
//! among the common Latin-script languages.
//!
//! Prompts are short, which defeats character n-gram models (a 20-word English question reads
//! as Danish or German to them); stop words are what short texts do have, and a vote over them
//! is predictable and explainable. Codes are ISO 639-3.

use std::sync::OnceLock;

use foldhash::{HashMap, HashMapExt};

/// The language of `text`, or none when nothing decides it.
pub fn identify(text: &str) -> Option<&'static str> {
    let mut scripts = [0usize; SCRIPTS.len()];
    let mut latin = 0usize;
    if text.is_ascii() {
        latin = text.bytes().filter(u8::is_ascii_alphabetic).count();
    } else {
        for c in text.chars() {
            if c.is_ascii() {
                latin += usize::from(c.is_ascii_alphabetic());
            } else if ('\u{C0}'..='\u{24F}').contains(&c) {
                latin += 1;
            } else if let Some(i) = SCRIPTS.iter().position(|(_, ranges)| ranges.iter().any(|r| r.contains(&c))) {
                scripts[i] += 1;
            }
        }
    }
    let (best, count) = scripts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    if *count > latin {
        // Kana beside Han is Japanese.
        let kana = scripts[SCRIPTS.iter().position(|(l, _)| *l == "jpn")?];
        return Some(if SCRIPTS[best].0 == "cmn" && kana > 0 { "jpn" } else { SCRIPTS[best].0 });
    }
    let mut votes = [0usize; STOP_WORDS.len()];
    let mut lowered = String::new();
    for word in text.split(|c: char| !c.is_alphabetic() && c != '\'').filter(|w| !w.is_empty()) {
        let word = if word.is_ascii() {
            if word.len() > LONGEST_STOP_WORD {
                continue;
            }
            lowered.clear();
            lowered.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            lowered.as_str()
        } else {
            lowered = word.to_lowercase();
            lowered.as_str()
        };
        let languages = stop_word_languages().get(word).copied().unwrap_or(0);
        for (i, vote) in votes.iter_mut().enumerate() {
            *vote += usize::from(languages >> i & 1);
        }
    }
    let mut ranked: Vec<(&str, usize)> =
        STOP_WORDS.iter().zip(votes).filter(|(_, n)| *n > 0).map(|((lang, _), n)| (*lang, n)).collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    match ranked.as_slice() {
        [] => None,
        [(lang, _)] => Some(lang),
        [(lang, a), (_, b), ..] => (a > b).then_some(*lang),
    }
}

/// Each stop word with the languages (bits, in [`STOP_WORDS`] order) whose list has it.
fn stop_word_languages() -> &'static HashMap<&'static str, u8> {
    static MAP: OnceLock<HashMap<&'static str, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        for (i, (_, words)) in STOP_WORDS.iter().enumerate() {
            for w in *words {
                *map.entry(*w).or_default() |= 1 << i;
            }
        }
        map
    })
}

/// Bytes in the longest stop word: a longer ASCII word is none of them.
const LONGEST_STOP_WORD: usize = 8;

type Ranges = &'static [std::ops::RangeInclusive<char>];

const SCRIPTS: [(&str, Ranges); 10] = [
    ("rus", &['\u{400}'..='\u{4FF}']),
    ("ell", &['\u{370}'..='\u{3FF}']),
    ("heb", &['\u{590}'..='\u{5FF}']),
    ("ara", &['\u{600}'..='\u{6FF}']),
    ("hin", &['\u{900}'..='\u{97F}']),
    ("tha", &['\u{E00}'..='\u{E7F}']),
    ("kor", &['\u{AC00}'..='\u{D7AF}', '\u{1100}'..='\u{11FF}']),
    ("jpn", &['\u{3040}'..='\u{30FF}']),
    ("cmn", &['\u{4E00}'..='\u{9FFF}']),
    ("ben", &['\u{980}'..='\u{9FF}']),
];

const STOP_WORDS: [(&str, &[&str]); 7] = [
    (
        "eng",
        &[
            "the", "and", "is", "are", "of", "to", "in", "it", "what", "how", "why", "i", "my", "you", "with", "for",
            "this", "that", "do", "can", "does", "should", "a", "an",
        ],
    ),
    (
        "spa",
        &[
            "el", "la", "los", "las", "y", "es", "de", "que", "en", "un", "una", "por", "para", "cómo", "qué", "con",
            "mi", "lo", "del", "se",
        ],
    ),
    (
        "fra",
        &[
            "le", "la", "les", "et", "est", "de", "des", "que", "un", "une", "pour", "dans", "comment", "avec", "mon",
            "je", "ce", "du", "pas", "qui",
        ],
    ),
    (
        "deu",
        &[
            "der", "die", "das", "und", "ist", "nicht", "ich", "mit", "ein", "eine", "wie", "was", "warum", "für",
            "auf", "mein", "zu", "den", "sich", "es",
        ],
    ),
    (
        "por",
        &[
            "o", "os", "as", "e", "é", "de", "que", "em", "um", "uma", "para", "como", "com", "meu", "não", "do", "da",
            "se", "por", "mais",
        ],
    ),
    (
        "ita",
        &[
            "il", "lo", "gli", "le", "e", "è", "di", "che", "un", "una", "per", "come", "con", "mio", "non", "del",
            "della", "sono", "perché", "si",
        ],
    ),
    (
        "nld",
        &[
            "de", "het", "een", "en", "is", "van", "dat", "niet", "ik", "met", "hoe", "wat", "waarom", "voor", "mijn",
            "op", "zijn", "te", "er", "ook",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::identify;

    #[test]
    fn no_stop_word_is_longer_than_the_bound() {
        for (_, words) in super::STOP_WORDS {
            assert!(words.iter().all(|w| w.len() <= super::LONGEST_STOP_WORD), "{words:?}");
        }
    }

    #[test]
    fn short_prompts_are_identified() {
        let cases = [
            ("My sourdough starter smells like nail polish remover after two days. Is it ruined?", Some("eng")),
            ("¿Cuál es la mejor manera de aprender a programar si ya conozco Python?", Some("spa")),
            ("Comment est-ce que je peux réparer le robinet de ma cuisine qui fuit ?", Some("fra")),
            ("Warum ist der Himmel blau und nicht grün?", Some("deu")),
            ("Почему небо голубое?", Some("rus")),
            ("空はなぜ青いのですか", Some("jpn")),
            ("天空为什么是蓝色的", Some("cmn")),
            ("하늘은 왜 파란가요", Some("kor")),
            ("zxcv qwrt plkj", None),
        ];
        for (text, want) in cases {
            assert_eq!(identify(text), want, "{text}");
        }
    }
}
