//! Realism: does a text read like something a person wrote? Natural-language statistics in the
//! spirit of the Gopher, C4 and FineWeb quality rules, adapted to chat prompts (which are short):
//! word counts and lengths, symbol and non-alphabetic ratios, repeated lines and n-grams,
//! stop words, keyboard mash, character entropy, shouting, links and spam phrases, and the
//! language.
//!
//! Every rule that fires adds a [`Reason`] with a penalty in (0, 1]; realism is the product of
//! `1 - penalty` over the reasons, so a clean text scores 1 and a penalty of 1 zeroes it.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use foldhash::{HashMap, HashMapExt, HashSet};

use crate::Reason;

/// What [`assess`] found in one text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextReport {
    /// In [0, 1].
    pub realism: f64,
    /// ISO 639-3 code of the most likely language (short texts can be misread).
    pub language: Option<&'static str>,
    /// Every rule that fired.
    pub reasons: Vec<Reason>,
    /// Whitespace-separated words.
    pub words: usize,
}

/// Texts longer than this many characters are suspicious for a chat prompt.
const MAX_CHARS: usize = 20_000;

const STOP_WORDS: [&str; 40] = [
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was", "be", "it", "this",
    "that", "i", "you", "my", "me", "we", "what", "how", "why", "do", "does", "can", "should", "at", "by", "from",
    "as", "if", "not", "but", "so", "have", "there",
];

const KEYBOARD_RUNS: [[u8; 4]; 12] = [
    *b"qwer", *b"wert", *b"asdf", *b"sdfg", *b"dfgh", *b"fghj", *b"ghjk", *b"hjkl", *b"zxcv", *b"xcvb", *b"uiop",
    *b"yuio",
];

/// The 274 most frequent letter pairs of English text (Norvig's counts over the Google books
/// corpus), as a 26×26 table: a per-word test of pronounceability.
const COMMON_BIGRAMS: [[bool; 26]; 26] = {
    const PAIRS: &[u8] = b"th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no ct us ac ot il tr ly nc et ut ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab gh ty op wo sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep tt oc fa ef cu rn sc gi da yo cr cl du ga qu ue ff ba ey ls va um pp ua up lu go ht ru ug ds lt pi rc rr eg au ck ew mu br bi pt ak pu ui rg ib tl ny ki rk ys ob mm fu ph og ms ye ud mb ip ub oi rl gu dr hr cc tw ft wn nu af hu nn eo vo rv nf xp gn sm fl iz ok nl my gl aw ju oa eq sy sl ps jo lf nv je nk kn gs dy hy ze ks xt bs ik dd cy rp sk xi oe oy ws lv dl rf eu dg wr xa yi";
    let mut table = [[false; 26]; 26];
    let mut i = 0;
    while i + 1 < PAIRS.len() {
        table[(PAIRS[i] - b'a') as usize][(PAIRS[i + 1] - b'a') as usize] = true;
        i += 3;
    }
    table
};

const SPAM_PHRASES: [&str; 16] = [
    "buy now",
    "click here",
    "free money",
    "limited offer",
    "work from home",
    "giveaway",
    "followers",
    "promo code",
    "discount code",
    "casino",
    "telegram",
    "whatsapp",
    "earn $",
    "make money",
    "100% free",
    "act now",
];

/// Assesses one text. Never fails: empty, binary or enormous input gets a low score and a reason.
pub fn assess(text: &str) -> TextReport {
    let mut reasons = Vec::new();
    let mut flag = |code: &'static str, penalty: f64, detail: String| reasons.push(Reason::new(code, penalty, detail));
    let stats = CharStats::of(text);
    let chars = stats.chars;
    if !stats.alphanumeric {
        flag("empty_text", 1.0, "no letters or digits".into());
        return finish(reasons, None, text.split_whitespace().count());
    }
    if stats.binary * 100 > chars {
        flag("binary_junk", 1.0, format!("{} control or replacement characters in {chars}", stats.binary));
    }
    if chars > MAX_CHARS {
        flag("too_long", 0.3, format!("{chars} characters (> {MAX_CHARS})"));
    }
    // Lower-casing never creates or removes whitespace, so the two word lists align; ASCII
    // keeps every byte where it was, so its lower-case words are cut at the same offsets.
    let words: Vec<&str> = text.split_whitespace().collect();
    let (lowered, lower): (String, Vec<&str>);
    if stats.ascii_only() {
        lowered = text.to_ascii_lowercase();
        lower = words.iter().map(|w| &lowered[w.as_ptr() as usize - text.as_ptr() as usize..][..w.len()]).collect();
    } else {
        lowered = text.to_lowercase();
        lower = lowered.split_whitespace().collect();
    }
    if words.len() < 3 {
        flag("too_short", 0.5, format!("{} words", words.len()));
    }
    if chars > 60 && words.len() == 1 {
        flag("no_spaces", 0.7, format!("{chars} characters without a space"));
    }
    if words.len() >= 5 {
        let (mut alpha, mut alpha_chars, mut symbols) = (0usize, 0usize, 0usize);
        for w in &words {
            if w.chars().any(char::is_alphabetic) {
                alpha += 1;
                alpha_chars += w.chars().count();
            }
            if w.contains('#') || (w.contains('.') && w.contains("...")) || w.contains('…') {
                symbols += 1;
            }
        }
        let mean = alpha_chars as f64 / alpha.max(1) as f64;
        if !(2.5..=12.0).contains(&mean) {
            flag("word_length", 0.5, format!("mean word length {mean:.1}"));
        }
        let ratio = alpha as f64 / words.len() as f64;
        if ratio < 0.7 {
            flag("non_alphabetic", 0.6, format!("{:.0}% of words have a letter", ratio * 100.0));
        }
        if symbols as f64 / words.len() as f64 > 0.1 {
            flag("symbols", 0.3, format!("{symbols} hashtag or ellipsis words"));
        }
    }
    repetition(text, &lower, &mut flag);
    let language = crate::lang::identify(text);
    if language.is_none() && chars >= 80 {
        flag("unknown_language", 0.2, "no language detected".into());
    }
    if language == Some("eng") && words.len() >= 8 {
        let stops = lower.iter().filter(|w| is_stop_word(w.trim_matches(|c: char| !c.is_alphanumeric()))).count();
        if stops < 2 {
            flag("no_stop_words", 0.4, format!("{stops} stop words in {} words", words.len()));
        }
    }
    if chars >= 10 && stats.symbols * 10 > chars * 3 {
        flag("symbol_soup", 0.8, format!("{}% punctuation and symbols", stats.symbols * 100 / chars));
    }
    if matches!(language, None | Some("eng")) {
        keyboard_mash(&lower, &mut flag);
    }
    stats.entropy(&mut flag);
    if stats.letters >= 20 && stats.upper * 10 > stats.letters * 6 {
        flag("shouting", 0.4, format!("{}% capitals", stats.upper * 100 / stats.letters));
    }
    spam(&lowered, &lower, &mut flag);
    finish(reasons, language, words.len())
}

fn finish(reasons: Vec<Reason>, language: Option<&'static str>, words: usize) -> TextReport {
    let realism = reasons.iter().fold(1.0, |acc, r| acc * (1.0 - r.penalty));
    TextReport { realism, language, reasons, words }
}

/// Character counts of a text, taken in one pass.
struct CharStats {
    chars: usize,
    /// Control characters other than whitespace, and replacement characters.
    binary: usize,
    /// Whether any letter or digit occurs.
    alphanumeric: bool,
    /// Neither letters, digits nor whitespace.
    symbols: usize,
    spaces: usize,
    letters: usize,
    upper: usize,
    ascii: [u32; 128],
    other: HashMap<char, u32>,
}

impl CharStats {
    fn of(text: &str) -> Self {
        let mut s = Self {
            chars: 0,
            binary: 0,
            alphanumeric: false,
            symbols: 0,
            spaces: 0,
            letters: 0,
            upper: 0,
            ascii: [0; 128],
            other: HashMap::new(),
        };
        // ASCII characters are only counted here; their classes are added up from the counts
        // below. Other characters are classified one by one.
        for c in text.chars() {
            if let Some(n) = s.ascii.get_mut(c as usize) {
                *n += 1;
                continue;
            }
            *s.other.entry(c).or_default() += 1;
            s.count(c, 1);
        }
        for (byte, n) in s.ascii.into_iter().enumerate() {
            if n > 0 {
                s.count(char::from(byte as u8), n as usize);
            }
        }
        s
    }

    /// Adds `n` occurrences of `c` to the class counts.
    fn count(&mut self, c: char, n: usize) {
        self.chars += n;
        let whitespace = c.is_whitespace();
        if whitespace {
            self.spaces += n;
        }
        if (c.is_control() && !whitespace) || c == '\u{FFFD}' {
            self.binary += n;
        }
        if c.is_alphanumeric() {
            self.alphanumeric = true;
        } else if !whitespace {
            self.symbols += n;
        }
        if c.is_alphabetic() {
            self.letters += n;
            if c.is_uppercase() {
                self.upper += n;
            }
        }
    }

    /// Whether every character is ASCII.
    fn ascii_only(&self) -> bool {
        self.other.is_empty()
    }

    /// Shannon entropy of the characters: repetition is low, random characters and encodings
    /// high.
    fn entropy(&self, flag: &mut impl FnMut(&'static str, f64, String)) {
        if self.chars < 40 {
            return;
        }
        let mut other: Vec<(char, u32)> = self.other.iter().map(|(c, n)| (*c, *n)).collect();
        other.sort_unstable();
        let counts = self.ascii.iter().copied().chain(other.into_iter().map(|(_, n)| n)).filter(|n| *n > 0);
        let h: f64 = counts
            .map(|n| {
                let p = f64::from(n) / self.chars as f64;
                -p * p.log2()
            })
            .sum();
        let spaces = self.spaces as f64 / self.chars as f64;
        if h < 2.5 {
            flag("low_entropy", 0.6, format!("{h:.2} bits per character"));
        } else if h > 5.0 && spaces < 0.08 {
            flag("high_entropy", 0.8, format!("{h:.2} bits per character, {:.0}% spaces", spaces * 100.0));
        }
    }
}

/// Whether `word` (lower case) is one of the English [`STOP_WORDS`].
fn is_stop_word(word: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOP_WORDS.into_iter().collect()).contains(word)
}

/// Repeated lines and repeated word 3-grams (Gopher's duplicate-line and n-gram fractions).
fn repetition(text: &str, lower: &[&str], flag: &mut impl FnMut(&'static str, f64, String)) {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.len() >= 3 {
        let distinct: HashSet<&str> = lines.iter().copied().collect();
        let dup = 1.0 - distinct.len() as f64 / lines.len() as f64;
        if dup > 0.3 {
            flag("repeated_lines", 0.6, format!("{:.0}% of lines repeat", dup * 100.0));
        }
    }
    if lower.len() >= 8 {
        let mut counts: HashMap<&[&str], usize> = HashMap::with_capacity(lower.len());
        for gram in lower.windows(3) {
            *counts.entry(gram).or_default() += 1;
        }
        let repeated: usize = counts.values().filter(|c| **c > 1).sum();
        let frac = repeated as f64 / (lower.len() - 2) as f64;
        if frac > 0.3 {
            flag("repeated_ngrams", 0.6, format!("{:.0}% of word 3-grams repeat", frac * 100.0));
        }
    }
}

/// Words no one types on purpose: no vowel, five consonants in a row, a keyboard row, or
/// letter pairs English hardly uses (fewer than half of the word's pairs are common ones).
fn keyboard_mash(lower: &[&str], flag: &mut impl FnMut(&'static str, f64, String)) {
    let candidates: Vec<&[u8]> = lower
        .iter()
        .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()))
        .filter(|w| w.len() >= 4 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(str::as_bytes)
        .collect();
    let mashed = candidates.iter().filter(|w| looks_mashed(w)).count();
    if mashed >= 2 && mashed * 10 > candidates.len() * 3 {
        flag("keyboard_mash", 0.8, format!("{mashed} of {} words look mashed", candidates.len()));
    }
}

/// The test of [`keyboard_mash`] for one lower-case ASCII word of four letters or more.
fn looks_mashed(w: &[u8]) -> bool {
    let vowel = |c: u8| b"aeiouy".contains(&c);
    let (mut run, mut longest) = (0, 0);
    for c in w {
        run = if vowel(*c) { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    let pairs = w.len() - 1;
    let common = w.windows(2).filter(|p| COMMON_BIGRAMS[usize::from(p[0] - b'a')][usize::from(p[1] - b'a')]).count();
    let keyboard_row = w.windows(4).any(|q| KEYBOARD_RUNS.contains(&[q[0], q[1], q[2], q[3]]));
    !w.iter().any(|c| vowel(*c)) || longest >= 5 || keyboard_row || common * 2 < pairs
}

/// One automaton for every [`SPAM_PHRASES`] entry: a single pass over the text finds them all.
fn spam_phrases() -> &'static AhoCorasick {
    static AUTOMATON: OnceLock<AhoCorasick> = OnceLock::new();
    AUTOMATON.get_or_init(|| AhoCorasick::new(SPAM_PHRASES).expect("a few short literal phrases always build"))
}

/// Links and the phrases of promotional spam.
fn spam(lowered: &str, lower: &[&str], flag: &mut impl FnMut(&'static str, f64, String)) {
    let link =
        |w: &str| (w.contains(':') && (w.contains("http://") || w.contains("https://"))) || w.starts_with("www.");
    let links = lower.iter().filter(|w| link(w)).count();
    let mut found = [false; SPAM_PHRASES.len()];
    for m in spam_phrases().find_overlapping_iter(lowered) {
        found[m.pattern().as_usize()] = true;
    }
    let phrases: Vec<&str> = SPAM_PHRASES.iter().zip(found).filter(|(_, f)| *f).map(|(p, _)| *p).collect();
    if links >= 2 || (links == 1 && !phrases.is_empty()) {
        flag("links", 0.8, format!("{links} links"));
    }
    if !phrases.is_empty() {
        flag("spam_phrases", 0.6, phrases.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<&'static str> {
        assess(text).reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn a_real_question_is_clean() {
        let r = assess(
            "My sourdough starter smells like nail polish remover after two days. Is it ruined, and how do I fix it?",
        );
        assert!(r.reasons.is_empty(), "{:?}", r.reasons);
        assert_eq!((r.realism, r.language), (1.0, Some("eng")));
    }

    #[test]
    fn junk_is_named() {
        assert_eq!(codes("   "), ["empty_text"]);
        assert_eq!(codes("?!?! ..."), ["empty_text"]);
        assert!(codes("asdfgh qwerty zxcvb sdfg hjkl dfgh jkjkjk").contains(&"keyboard_mash"));
        assert!(codes(&"buy now ".repeat(20)).contains(&"repeated_ngrams"));
        assert!(
            codes("aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCBqdW5rIGRhdGEgMTIzNDU2Nzg5MA==")
                .contains(&"no_spaces")
        );
        assert!(codes("BUY CHEAP FOLLOWERS NOW AT http://spam.example and https://x.example").contains(&"links"));
        assert!(codes("WHY IS NOBODY ANSWERING MY QUESTION ABOUT THE TAXES").contains(&"shouting"));
        assert!(codes("line one here\nline one here\nline one here\nline one here").contains(&"repeated_lines"));
        assert!(codes("hi").contains(&"too_short"));
        assert!(codes("abc\u{0}\u{1}\u{2}\u{3}\u{4}").contains(&"binary_junk"));
    }

    #[test]
    fn realism_multiplies_penalties() {
        let r = assess("zxcvbnm qwrtplk sdfghj hjklmnb");
        let expected: f64 = r.reasons.iter().map(|r| 1.0 - r.penalty).product();
        assert!((r.realism - expected).abs() < 1e-12);
        assert!(r.realism < 0.3, "{r:?}");
    }

    #[test]
    fn other_languages_are_not_penalised() {
        let r = assess("¿Cuál es la mejor manera de aprender a programar en Rust si ya conozco Python y Java?");
        assert_eq!(r.language, Some("spa"));
        assert!(r.realism > 0.9, "{r:?}");
    }
}
