//! Topic embeddings for diversity: feature-hashed bags of words and character 3-grams, L2
//! normalised, so the cosine of two prompts says how much vocabulary they share.
//!
//! This is the documented alternative to a sentence model: it needs no model file and no
//! runtime, is deterministic to the bit (replays score alike), and runs at millions of prompts
//! per second. It sees topics through shared words, not meaning ("car" and "automobile" are
//! unrelated to it); an ONNX sentence model can replace [`embed`] behind the same signature.

use crate::minhash::{FNV_OFFSET, fnv1a, splitmix64, words};

/// Embedding dimensions.
pub const DIMS: usize = 256;

/// An L2-normalised embedding (all zeros for a text without words).
pub type Embedding = [f32; DIMS];

/// The embedding of `text`: each word weighs 1 and each character 3-gram of a word 0.5, hashed
/// into [`DIMS`] buckets with a hashed sign.
pub fn embed(text: &str) -> Embedding {
    embed_words(&words(text))
}

/// The embedding of already normalised [`words`](crate::minhash::words).
pub fn embed_words(words: &[String]) -> Embedding {
    let mut v = [0f32; DIMS];
    let mut add = |feature: u64, weight: f32| {
        let h = splitmix64(feature);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % DIMS as u64) as usize] += sign * weight;
    };
    for word in words {
        if word.chars().count() <= 2 {
            continue;
        }
        add(fnv1a(FNV_OFFSET, word.as_bytes()), 1.0);
        let mut gram = |bytes: &[u8]| add(fnv1a(FNV_OFFSET, bytes) ^ 0x5bd1_e995, 0.5);
        if word.is_ascii() {
            word.as_bytes().windows(3).for_each(&mut gram);
        } else {
            // Character 3-grams are the UTF-8 bytes between every fourth character boundary.
            let bounds: Vec<usize> = word.char_indices().map(|(i, _)| i).chain([word.len()]).collect();
            bounds.windows(4).for_each(|b| gram(&word.as_bytes()[b[0]..b[3]]));
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Cosine similarity of two embeddings (their dot product: both are normalised).
pub fn cosine(a: &Embedding, b: &Embedding) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// An embedding with the set of dimensions where it is not zero. A prompt touches a few dozen
/// of the [`DIMS`] dimensions, so two topics share fewer still: [`Topic::cosine`] visits only
/// those.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    values: Embedding,
    support: [u64; DIMS / 64],
}

impl Topic {
    /// The topic of already normalised [`words`](crate::minhash::words).
    pub fn of_words(words: &[String]) -> Self {
        let values = embed_words(words);
        let mut support = [0u64; DIMS / 64];
        for (i, v) in values.iter().enumerate() {
            if *v != 0.0 {
                support[i / 64] |= 1 << (i % 64);
            }
        }
        Self { values, support }
    }

    /// The [`cosine`] of two topics: the same products added in the same order, less the zero
    /// ones, so the result is the same float (a zero result may differ in sign).
    pub fn cosine(&self, other: &Topic) -> f32 {
        let mut sum = 0f32;
        for (word, (a, b)) in self.support.iter().zip(&other.support).enumerate() {
            let mut shared = a & b;
            while shared != 0 {
                let i = word * 64 + shared.trailing_zeros() as usize;
                sum += self.values[i] * other.values[i];
                shared &= shared - 1;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_topics_are_closer_than_unrelated_ones() {
        let bread = embed("How long should I proof sourdough bread dough in a cold fridge?");
        let bread2 = embed("My sourdough bread comes out flat after proofing overnight, why?");
        let tax = embed("Which expenses can a freelancer deduct on their annual tax return?");
        assert!(
            cosine(&bread, &bread2) > cosine(&bread, &tax) + 0.2,
            "{} vs {}",
            cosine(&bread, &bread2),
            cosine(&bread, &tax)
        );
        assert!((cosine(&bread, &bread) - 1.0).abs() < 1e-5);
        assert_eq!(cosine(&embed("?!"), &bread), 0.0);
    }

    #[test]
    fn sparse_cosines_equal_dense_ones_to_the_bit() {
        let prompts = [
            "How long should I proof sourdough bread dough in a cold fridge?",
            "My sourdough bread comes out flat after proofing overnight, why?",
            "Which expenses can a freelancer deduct on their annual tax return?",
            "Ünïcödé wörds änd ñoñ-ÄSCII ǅ letters, 東京 and Москва",
            "?!",
        ];
        // And long texts over a shared vocabulary, which meet in dimensions of every word of
        // the support.
        let vocabulary = ["bread", "dough", "proof", "oven", "tax", "return", "fridge", "flour", "salt", "yeast"];
        let long: Vec<String> = (0..40)
            .map(|i| (0..30).map(|j| vocabulary[(i * 7 + j * j) % vocabulary.len()]).collect::<Vec<_>>().join(" "))
            .collect();
        let topics: Vec<(Embedding, Topic)> = prompts
            .iter()
            .copied()
            .chain(long.iter().map(String::as_str))
            .map(|p| (embed(p), Topic::of_words(&crate::minhash::words(p))))
            .collect();
        for (a, ta) in &topics {
            for (b, tb) in &topics {
                let (dense, sparse) = (cosine(a, b), ta.cosine(tb));
                assert!(dense == sparse, "{dense} vs {sparse}");
            }
        }
    }
}
