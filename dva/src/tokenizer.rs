//! CLIP's byte-level BPE tokenizer: the text clean-up CLIP applies (ftfy's deterministic
//! fixes, HTML unescaping twice, whitespace collapsing, lower case), its word pattern, its
//! byte-to-unicode table and merge ranks from `bpe_simple_vocab_16e6.txt.gz`, start and end
//! tokens, a context of 77 ids padded with zeros.
//!
//! Of ftfy's `fix_text`, the fixes a caption can need are reproduced (curly quotes, Latin
//! ligatures, full-width characters, control characters, line breaks, NFC normalisation);
//! its repair of mojibake (UTF-8 decoded as Latin-1 upstream) is not: such text is tokenized
//! as it arrives.

use std::{collections::HashMap, io::Read, sync::Mutex};

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::{DvaError, Result};

/// Ids per caption.
pub const CONTEXT_LENGTH: usize = 77;
/// Merges CLIP uses from its vocabulary file.
const MERGES: usize = 49152 - 256 - 2;

/// A CLIP tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    byte_chars: [char; 256],
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    pattern: Regex,
    sot: u32,
    eot: u32,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

fn printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
}

/// The byte → printable character table of GPT-2 and CLIP: printable bytes stand for
/// themselves, the others for 256, 257, … in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for b in 0..=255u8 {
        let c = if printable(b) {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    table
}

/// The bytes in vocabulary order: the printable ones first, then the rest (as CLIP lists them).
fn vocabulary_order() -> impl Iterator<Item = u8> {
    (0..=255u8).filter(|b| printable(*b)).chain((0..=255u8).filter(|b| !printable(*b)))
}

impl Tokenizer {
    /// Loads the merges from the bytes of a gzipped `bpe_simple_vocab_16e6.txt.gz`.
    pub fn from_gzip(bytes: &[u8]) -> Result<Tokenizer> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| DvaError::Model(format!("not a gzipped vocabulary: {e}")))?;
        Self::from_merges(&text)
    }

    /// Builds the tokenizer from the text of the merges file (first line a header).
    pub fn from_merges(text: &str) -> Result<Tokenizer> {
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .filter_map(|line| line.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
        if merges.len() != MERGES {
            return Err(DvaError::Model(format!("vocabulary has {} merges; CLIP's has {MERGES}", merges.len())));
        }
        let byte_chars = bytes_to_unicode();
        let mut vocab: Vec<String> = vocabulary_order().map(|b| byte_chars[b as usize].to_string()).collect();
        vocab.extend(vocabulary_order().map(|b| format!("{}</w>", byte_chars[b as usize])));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(["<|startoftext|>".to_string(), "<|endoftext|>".to_string()]);
        let encoder: HashMap<String, u32> = vocab.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        let ranks = merges.into_iter().enumerate().map(|(i, m)| (m, i)).collect();
        let pattern = Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .map_err(|e| DvaError::Model(e.to_string()))?;
        let (sot, eot) = (encoder["<|startoftext|>"], encoder["<|endoftext|>"]);
        Ok(Tokenizer { byte_chars, encoder, ranks, pattern, sot, eot, cache: Mutex::new(HashMap::new()) })
    }

    /// The BPE ids of `text` without start and end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = whitespace_clean(&basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            let token: String = m.as_str().bytes().map(|b| self.byte_chars[b as usize]).collect();
            ids.extend(self.bpe(&token));
        }
        ids
    }

    /// `CONTEXT_LENGTH` ids: start, the caption's ids (cut to fit), end, zeros.
    pub fn tokenize(&self, text: &str) -> [i64; CONTEXT_LENGTH] {
        let mut out = [0i64; CONTEXT_LENGTH];
        let ids = self.encode(text);
        out[0] = i64::from(self.sot);
        let n = ids.len().min(CONTEXT_LENGTH - 2);
        for (slot, id) in out[1..=n].iter_mut().zip(&ids) {
            *slot = i64::from(*id);
        }
        out[n + 1] = i64::from(self.eot);
        out
    }

    /// Applies the merges to one pre-tokenized word, lowest rank first.
    fn bpe(&self, token: &str) -> Vec<u32> {
        if let Some(ids) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(token) {
            return ids.clone();
        }
        let chars: Vec<char> = token.chars().collect();
        let mut word: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|p| self.ranks.get(&(p[0].clone(), p[1].clone())).map(|r| (*r, p[0].clone(), p[1].clone())))
                .min();
            let Some((_, first, second)) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        let ids: Vec<u32> = word.iter().filter_map(|w| self.encoder.get(w).copied()).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() < 100_000 {
            cache.insert(token.to_string(), ids.clone());
        }
        ids
    }
}

/// ftfy's deterministic fixes, then HTML unescaping twice, trimmed (CLIP's `basic_clean`).
fn basic_clean(text: &str) -> String {
    let fixed: String = text
        .replace("\r\n", "\n")
        .chars()
        .filter_map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => Some("'".to_string()),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => Some("\"".to_string()),
            '\u{fb00}' => Some("ff".into()),
            '\u{fb01}' => Some("fi".into()),
            '\u{fb02}' => Some("fl".into()),
            '\u{fb03}' => Some("ffi".into()),
            '\u{fb04}' => Some("ffl".into()),
            '\u{fb05}' | '\u{fb06}' => Some("st".into()),
            '\u{3000}' => Some(" ".into()),
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).map(|c| c.to_string()),
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => Some("\n".into()),
            c if c.is_control() && c != '\n' && c != '\t' => None,
            c => Some(c.to_string()),
        })
        .collect();
    let nfc: String = fixed.nfc().collect();
    let once = html_escape::decode_html_entities(&nfc).into_owned();
    html_escape::decode_html_entities(&once).trim().to_string()
}

/// Runs of whitespace become one space (CLIP's `whitespace_clean`).
fn whitespace_clean(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_follows_clip() {
        assert_eq!(
            whitespace_clean(&basic_clean("  Caf\u{e9}\u{a0}con   leche &amp;amp; \u{201c}love\u{201d}\r\n")),
            "Caf\u{e9} con leche & \"love\""
        );
        assert_eq!(basic_clean("e\u{301}"), "\u{e9}", "NFC");
        assert_eq!(basic_clean("\u{fb01}ne \u{ff21}\u{ff22}"), "fine AB");
    }

    #[test]
    fn byte_table_is_a_bijection_onto_printables() {
        let t = bytes_to_unicode();
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], '\u{120}');
    }
}
