//! Near-duplicate detection: MinHash signatures over word 3-shingles and a banded LSH index.
//!
//! Texts are normalised (lower case, letters and digits only) and cut into overlapping word
//! 3-grams. A signature keeps, for each of [`PERMUTATIONS`] seeded hash functions, the minimum
//! over the shingles; the fraction of equal positions in two signatures estimates the Jaccard
//! similarity of their shingle sets. The index splits signatures into [`BANDS`] bands of
//! [`ROWS`] rows: texts sharing a band are candidates (about 50% similarity finds each other
//! half the time, 80% almost always), and candidates are confirmed on the whole signature.
//!
//! Hashing is FNV-1a and SplitMix64, defined here, so signatures are identical on every
//! platform and Rust version: a replay scores history exactly as it was scored.

use std::hash::Hash;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

/// Hash functions per signature.
pub const PERMUTATIONS: usize = 64;
/// Bands of the LSH index.
pub const BANDS: usize = 16;
/// Rows per band (`BANDS * ROWS == PERMUTATIONS`).
pub const ROWS: usize = PERMUTATIONS / BANDS;

/// Texts a band bucket keeps. A band shared by more texts is a template or a flood: the
/// first ones are enough to recognise it, and a lookup then compares against at most
/// `BANDS * MAX_BUCKET` texts however many copies arrive.
pub const MAX_BUCKET: usize = 64;

/// A MinHash signature.
pub type Signature = [u32; PERMUTATIONS];

/// The normalised words of a text: lower case, split on anything that is not a letter or digit.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The signature of `text`, or none when it has no words.
pub fn signature(text: &str) -> Option<Signature> {
    signature_of_words(&words(text))
}

/// The signature of already normalised [`words`], or none when there are none.
pub fn signature_of_words(words: &[String]) -> Option<Signature> {
    if words.is_empty() {
        return None;
    }
    let mut sig = [u32::MAX; PERMUTATIONS];
    let width = words.len().min(3);
    for shingle in words.windows(width) {
        let base = hash_words(shingle);
        for (i, slot) in sig.iter_mut().enumerate() {
            let v = splitmix64(base ^ SEEDS[i]) as u32;
            *slot = (*slot).min(v);
        }
    }
    Some(sig)
}

/// Estimated Jaccard similarity of the shingle sets behind two signatures.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    let equal: u32 = a.iter().zip(b).map(|(x, y)| u32::from(x == y)).sum();
    f64::from(equal) / PERMUTATIONS as f64
}

/// FNV-1a over the words, each followed by a space: the fingerprint of a normalised text, for
/// exact duplicates.
pub fn hash_words(words: &[String]) -> u64 {
    words.iter().fold(FNV_OFFSET, |h, w| fnv1a(fnv1a(h, w.as_bytes()), b" "))
}

/// Signatures indexed by band, each with a caller's key (who wrote it, say). A signature
/// already indexed under the same key is not indexed again, and each band bucket holds at most
/// [`MAX_BUCKET`] texts, so identical or near-identical texts cost bounded work each.
///
/// A lookup's cost is reading its candidates' signatures from memory, and under a template or a
/// flood many candidates are one text from several accounts. Each distinct signature is
/// therefore kept once, and a lookup compares it once however many texts carry it.
#[derive(Debug, Clone)]
pub struct LshIndex<K> {
    /// Texts by band, at most [`MAX_BUCKET`] a bucket.
    buckets: HashMap<(u8, u64), Vec<u32>>,
    /// The texts, in the order indexed.
    texts: Vec<Text<K>>,
    /// The distinct signatures; one whose [`whole_hash`] collides with another's is kept again
    /// for each text that carries it.
    signatures: Vec<Signature>,
    /// A signature's place in `signatures`, by [`whole_hash`].
    signature_ids: HashMap<u64, u32>,
    /// For each distinct signature, the last lookup that compared it and its similarity then.
    compared: Vec<(u32, f64)>,
    indexed: HashSet<(K, u64)>,
    lookups: u32,
}

/// An indexed text: what a lookup reads of each candidate before its signature.
#[derive(Debug, Clone)]
struct Text<K> {
    key: K,
    /// Its place in `signatures`.
    signature: u32,
    /// The last lookup that reported it: a text sharing several bands with a lookup is
    /// reported once, with no candidate list to sort.
    reported_in: u32,
}

impl<K> Default for LshIndex<K> {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            texts: Vec::new(),
            signatures: Vec::new(),
            signature_ids: HashMap::new(),
            compared: Vec::new(),
            indexed: HashSet::new(),
            lookups: 0,
        }
    }
}

impl<K: Copy + Eq + Hash> LshIndex<K> {
    /// Texts indexed so far.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Calls `found` with the key and similarity of each indexed text at least `min_similarity`
    /// similar to `sig`, each text once, in no particular order.
    pub fn for_each_match(&mut self, sig: &Signature, min_similarity: f64, mut found: impl FnMut(K, f64)) {
        self.lookups = self.lookups.wrapping_add(1);
        if self.lookups == 0 {
            // Wrapped around: forget every stamp so none can equal the new one by chance.
            self.texts.iter_mut().for_each(|t| t.reported_in = 0);
            self.compared.iter_mut().for_each(|c| c.0 = 0);
            self.lookups = 1;
        }
        for b in 0..BANDS {
            let Some(bucket) = self.buckets.get(&band_key(sig, b)) else { continue };
            for &i in bucket {
                let text = &mut self.texts[i as usize];
                if text.reported_in == self.lookups {
                    continue;
                }
                text.reported_in = self.lookups;
                let s = text.signature as usize;
                let compared = &mut self.compared[s];
                if compared.0 != self.lookups {
                    *compared = (self.lookups, similarity(sig, &self.signatures[s]));
                }
                if compared.1 >= min_similarity {
                    found(text.key, compared.1);
                }
            }
        }
    }

    /// Adds a signature under `key`, unless it is already there under that key.
    pub fn insert(&mut self, key: K, sig: Signature) {
        let whole = whole_hash(&sig);
        if !self.indexed.insert((key, whole)) {
            return;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
        for b in 0..BANDS {
            let bucket = self.buckets.entry(band_key(&sig, b)).or_default();
            if bucket.len() < MAX_BUCKET {
                bucket.push(id);
            }
        }
        let next = u32::try_from(self.signatures.len()).unwrap_or(u32::MAX);
        let known = *self.signature_ids.entry(whole).or_insert(next);
        let s = if known != next && self.signatures[known as usize] == sig {
            known
        } else {
            self.signatures.push(sig);
            self.compared.push((0, 0.0));
            next
        };
        self.texts.push(Text { key, signature: s, reported_in: 0 });
    }
}

/// FNV-1a over a whole signature: what tells distinct signatures apart.
fn whole_hash(sig: &Signature) -> u64 {
    sig.iter().fold(FNV_OFFSET, |h, v| fnv1a(h, &v.to_le_bytes()))
}

fn band_key(sig: &Signature, band: usize) -> (u8, u64) {
    let rows = &sig[band * ROWS..(band + 1) * ROWS];
    let h = rows.iter().fold(FNV_OFFSET, |h, v| fnv1a(h, &v.to_le_bytes()));
    (band as u8, h)
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continuing from `h` (start from [`FNV_OFFSET`]).
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser: a fast, well-mixed bijection on u64.
pub(crate) const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const SEEDS: [u64; PERMUTATIONS] = {
    let mut seeds = [0u64; PERMUTATIONS];
    let mut i = 0;
    while i < PERMUTATIONS {
        seeds[i] = splitmix64(i as u64 + 1);
        i += 1;
    }
    seeds
};

#[cfg(test)]
mod tests {
    use super::*;

    fn matches<K: Copy + Eq + Hash>(index: &mut LshIndex<K>, sig: &Signature, min: f64) -> Vec<(K, f64)> {
        let mut found = Vec::new();
        index.for_each_match(sig, min, |k, s| found.push((k, s)));
        found
    }

    const A: &str = "How do I keep my sourdough starter alive while I am away on holiday for two weeks?";

    #[test]
    fn identical_texts_match_fully_and_normalisation_ignores_case_and_punctuation() {
        let a = signature(A).unwrap();
        let b = signature(&A.to_uppercase().replace('?', " !!")).unwrap();
        assert_eq!(similarity(&a, &b), 1.0);
        assert_eq!(hash_words(&words(A)), hash_words(&words(&A.to_uppercase())));
        assert!(signature(" ?! ").is_none());
    }

    #[test]
    fn similarity_tracks_jaccard() {
        let a = signature(A).unwrap();
        let edited =
            signature("How do I keep my sourdough starter alive while I am away on vacation for two weeks?").unwrap();
        let other = signature("What is the difference between an index fund and an exchange traded fund?").unwrap();
        // 17 shingles each, 3 replaced by the one-word edit: true Jaccard 14/20 = 0.7.
        assert!((similarity(&a, &edited) - 0.7).abs() < 0.2, "{}", similarity(&a, &edited));
        assert!(similarity(&a, &other) < 0.1);
    }

    #[test]
    fn the_index_finds_near_duplicates_and_not_strangers() {
        let mut index = LshIndex::default();
        index.insert(1, signature(A).unwrap());
        index
            .insert(2, signature("What is the difference between an index fund and an exchange traded fund?").unwrap());
        let near =
            signature("how do i keep my sourdough starter alive while i am away on holiday for three weeks").unwrap();
        let found = matches(&mut index, &near, 0.5);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 1);
        assert!(found[0].1 > 0.6);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_flood_of_one_prompt_costs_bounded_work_per_copy() {
        let sig = signature(A).unwrap();
        let mut index = LshIndex::default();
        for _ in 0..10_000 {
            index.insert(7, sig);
        }
        assert_eq!(index.len(), 1, "the same text from the same account is indexed once");
        for account in 0..10_000 {
            index.insert(account, sig);
        }
        assert_eq!(index.len(), 10_000);
        let found = matches(&mut index, &sig, 0.5);
        assert!(found.len() <= BANDS * MAX_BUCKET, "{} candidates", found.len());
        assert!(found.len() >= MAX_BUCKET, "the flood is still recognised: {}", found.len());
        assert!(found.iter().all(|m| m.1 == 1.0));
        let mut keys: Vec<i32> = found.iter().map(|m| m.0).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), found.len(), "each text is reported once");
    }

    #[test]
    fn lookups_find_exactly_the_texts_of_the_shared_buckets_that_are_similar_enough() {
        // Copies of three originals with up to three words replaced, so similarities spread
        // over [0, 1] and the buckets of the originals' bands fill up.
        let vocabulary: Vec<String> = (0..60).map(|w| format!("w{w}")).collect();
        let mut state = 7u64;
        let mut next = |below: usize| {
            state = splitmix64(state);
            state as usize % below
        };
        let mut texts: Vec<Vec<String>> =
            (0..3).map(|_| (0..12).map(|_| vocabulary[next(60)].clone()).collect()).collect();
        for _ in 0..1200 {
            let mut text = texts[next(3)].clone();
            for _ in 0..next(4) {
                let at = next(text.len());
                text[at] = vocabulary[next(60)].clone();
            }
            texts.push(text);
        }
        let mut index = LshIndex::default();
        let mut found_some = [0usize; 3];
        for (i, text) in texts.iter().enumerate() {
            let sig = signature_of_words(text).unwrap();
            for (m, min) in [0.3, 0.5, 0.8].into_iter().enumerate() {
                let mut found = matches(&mut index, &sig, min);
                found.sort_by_key(|f| f.0);
                // Every text in a bucket of one of the signature's bands, compared whole.
                let mut expected: Vec<(usize, f64)> = (0..BANDS)
                    .filter_map(|b| index.buckets.get(&band_key(&sig, b)))
                    .flatten()
                    .map(|id| {
                        let text = &index.texts[*id as usize];
                        (text.key, similarity(&sig, &index.signatures[text.signature as usize]))
                    })
                    .filter(|(_, s)| *s >= min)
                    .collect();
                expected.sort_by_key(|f| f.0);
                expected.dedup_by_key(|f| f.0);
                assert_eq!(found, expected, "text {i} at {min}");
                found_some[m] += usize::from(!found.is_empty());
            }
            index.insert(i, sig);
        }
        assert!(found_some.iter().all(|n| *n > 50), "similar texts at every threshold: {found_some:?}");
        let fullest = index.buckets.values().map(Vec::len).max();
        assert_eq!(fullest, Some(MAX_BUCKET), "some bucket is full");
        assert!(index.signatures.len() + 100 < index.len(), "copies share their signature");
    }

    #[test]
    fn signatures_are_stable_across_runs_and_platforms() {
        // Pinned: a change here changes every score ever computed (bump the scorer version).
        let sig = signature("the quick brown fox").unwrap();
        assert_eq!(sig[0..4], [15_820_090, 3_749_069_892, 1_520_629_016, 1_978_964_543]);
    }
}
