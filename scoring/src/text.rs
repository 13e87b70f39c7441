//! Realism: does a text read like something a person wrote? Natural-language statistics in the
//! spirit of the Gopher, C4 and FineWeb quality rules, adapted to chat prompts (which are short):
//! word counts and lengths, symbol and non-alphabetic ratios, repeated lines and n-grams,
//! stop words, keyboard mash, character entropy, shouting, links and spam phrases, and the
//! language.
//!
//! Every rule that fires adds a [`Reason`] with a penalty in (0, 1]; realism is the product of
//! `1 - penalty` over the reasons, so a clean text scores 1 and a penalty of 1 zeroes it.

use std::collections::{HashMap, HashSet};

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
}

/// Texts longer than this many characters are suspicious for a chat prompt.
const MAX_CHARS: usize = 20_000;

const STOP_WORDS: [&str; 40] = [
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was", "be", "it", "this",
    "that", "i", "you", "my", "me", "we", "what", "how", "why", "do", "does", "can", "should", "at", "by", "from",
    "as", "if", "not", "but", "so", "have", "there",
];

const KEYBOARD_RUNS: [&str; 12] =
    ["qwer", "wert", "asdf", "sdfg", "dfgh", "fghj", "ghjk", "hjkl", "zxcv", "xcvb", "uiop", "yuio"];

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
    let chars = text.chars().count();
    let binary = text.chars().filter(|c| (c.is_control() && !c.is_whitespace()) || *c == '\u{FFFD}').count();
    if !text.chars().any(char::is_alphanumeric) {
        flag("empty_text", 1.0, "no letters or digits".into());
        return finish(reasons, None);
    }
    if binary * 100 > chars {
        flag("binary_junk", 1.0, format!("{binary} control or replacement characters in {chars}"));
    }
    if chars > MAX_CHARS {
        flag("too_long", 0.3, format!("{chars} characters (> {MAX_CHARS})"));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    if words.len() < 3 {
        flag("too_short", 0.5, format!("{} words", words.len()));
    }
    if chars > 60 && words.len() == 1 {
        flag("no_spaces", 0.7, format!("{chars} characters without a space"));
    }
    let alpha_words: Vec<&str> = words.iter().copied().filter(|w| w.chars().any(char::is_alphabetic)).collect();
    if words.len() >= 5 {
        let mean =
            alpha_words.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / alpha_words.len().max(1) as f64;
        if !(2.5..=12.0).contains(&mean) {
            flag("word_length", 0.5, format!("mean word length {mean:.1}"));
        }
        let ratio = alpha_words.len() as f64 / words.len() as f64;
        if ratio < 0.7 {
            flag("non_alphabetic", 0.6, format!("{:.0}% of words have a letter", ratio * 100.0));
        }
        let symbols = words.iter().filter(|w| w.contains('#') || w.contains("...") || w.contains('…')).count();
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
        let stops =
            lower.iter().filter(|w| STOP_WORDS.contains(&w.trim_matches(|c: char| !c.is_alphanumeric()))).count();
        if stops < 2 {
            flag("no_stop_words", 0.4, format!("{stops} stop words in {} words", words.len()));
        }
    }
    let symbols = text.chars().filter(|c| !c.is_alphanumeric() && !c.is_whitespace()).count();
    if chars >= 10 && symbols * 10 > chars * 3 {
        flag("symbol_soup", 0.8, format!("{}% punctuation and symbols", symbols * 100 / chars));
    }
    if matches!(language, None | Some("eng")) {
        keyboard_mash(&lower, &mut flag);
    }
    entropy(text, chars, &mut flag);
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    let upper = letters.iter().filter(|c| c.is_uppercase()).count();
    if letters.len() >= 20 && upper * 10 > letters.len() * 6 {
        flag("shouting", 0.4, format!("{}% capitals", upper * 100 / letters.len()));
    }
    spam(text, &lower, &mut flag);
    finish(reasons, language)
}

fn finish(reasons: Vec<Reason>, language: Option<&'static str>) -> TextReport {
    let realism = reasons.iter().fold(1.0, |acc, r| acc * (1.0 - r.penalty));
    TextReport { realism, language, reasons }
}

/// Repeated lines and repeated word 3-grams (Gopher's duplicate-line and n-gram fractions).
fn repetition(text: &str, lower: &[String], flag: &mut impl FnMut(&'static str, f64, String)) {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.len() >= 3 {
        let distinct: HashSet<&str> = lines.iter().copied().collect();
        let dup = 1.0 - distinct.len() as f64 / lines.len() as f64;
        if dup > 0.3 {
            flag("repeated_lines", 0.6, format!("{:.0}% of lines repeat", dup * 100.0));
        }
    }
    if lower.len() >= 8 {
        let mut counts: HashMap<&[String], usize> = HashMap::new();
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
fn keyboard_mash(lower: &[String], flag: &mut impl FnMut(&'static str, f64, String)) {
    let candidates: Vec<&str> = lower
        .iter()
        .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()))
        .filter(|w| w.chars().count() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    let mashed = candidates
        .iter()
        .filter(|w| {
            let vowel = |c: char| "aeiouy".contains(c);
            let no_vowel = !w.chars().any(vowel);
            let run = w.chars().fold((0, 0), |(cur, max), c| {
                let cur = if vowel(c) { 0 } else { cur + 1 };
                (cur, max.max(cur))
            });
            let pairs: Vec<&[u8]> = w.as_bytes().windows(2).collect();
            let common =
                pairs.iter().filter(|p| COMMON_BIGRAMS[(p[0] - b'a') as usize][(p[1] - b'a') as usize]).count();
            no_vowel || run.1 >= 5 || KEYBOARD_RUNS.iter().any(|k| w.contains(k)) || common * 2 < pairs.len()
        })
        .count();
    if mashed >= 2 && mashed * 10 > candidates.len() * 3 {
        flag("keyboard_mash", 0.8, format!("{mashed} of {} words look mashed", candidates.len()));
    }
}

/// Shannon entropy of the characters: repetition is low, random characters and encodings high.
fn entropy(text: &str, chars: usize, flag: &mut impl FnMut(&'static str, f64, String)) {
    if chars < 40 {
        return;
    }
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let h: f64 = counts
        .values()
        .map(|n| {
            let p = *n as f64 / chars as f64;
            -p * p.log2()
        })
        .sum();
    let spaces = text.chars().filter(|c| c.is_whitespace()).count() as f64 / chars as f64;
    if h < 2.5 {
        flag("low_entropy", 0.6, format!("{h:.2} bits per character"));
    } else if h > 5.0 && spaces < 0.08 {
        flag("high_entropy", 0.8, format!("{h:.2} bits per character, {:.0}% spaces", spaces * 100.0));
    }
}

/// Links and the phrases of promotional spam.
fn spam(text: &str, lower: &[String], flag: &mut impl FnMut(&'static str, f64, String)) {
    let links =
        lower.iter().filter(|w| w.contains("http://") || w.contains("https://") || w.starts_with("www.")).count();
    let lowered = text.to_lowercase();
    let phrases: Vec<&str> = SPAM_PHRASES.iter().copied().filter(|p| lowered.contains(p)).collect();
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
