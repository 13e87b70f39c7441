//! Object integrity hashes exactly as Greenfield computes them (greenfield-common's
//! `hash.ComputeIntegrityHash`), which storage providers check on upload and the chain records
//! at object creation:
//!
//! - the object is cut into segments of [`SEGMENT_SIZE`] (16 MiB; the last one shorter);
//! - each segment's checksum is SHA-256 of its bytes;
//! - each segment is erasure coded into [`DATA_BLOCKS`] + [`PARITY_BLOCKS`] pieces (Reed-Solomon
//!   over GF(2^8), the systematic Vandermonde code of klauspost/reedsolomon: the segment split into
//!   4 equal data pieces, the last padded with zeros, plus 2 parity pieces), and each piece's
//!   checksum is SHA-256 of its bytes;
//! - the object's hashes are 7 values: SHA-256 of all segment checksums concatenated (the
//!   "primary" hash), then for each piece index i, SHA-256 of the checksums of piece i of every
//!   segment concatenated (what the storage provider holding piece i proves).
//!
//! An empty object has one empty segment: its checksums are those of empty inputs.

use reed_solomon_erasure::galois_8::ReedSolomon;
use sha2::{Digest, Sha256};

use crate::{GreenfieldError, Result};

/// Segment size of Greenfield's default storage parameters: 16 MiB.
pub const SEGMENT_SIZE: usize = 16 * 1024 * 1024;
/// Data pieces per segment.
pub const DATA_BLOCKS: usize = 4;
/// Parity pieces per segment.
pub const PARITY_BLOCKS: usize = 2;

/// An object's integrity hashes, as `MsgCreateObject.expect_checksums` carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityHashes {
    /// Hash over the segment checksums, then one per piece index (1 + 4 + 2 = 7 values).
    pub hashes: Vec<[u8; 32]>,
    /// The object's size in bytes.
    pub size: u64,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hash_of(checksums: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in checksums {
        h.update(c);
    }
    h.finalize().into()
}

/// The erasure-coded pieces of one segment: data pieces of `ceil(len / 4)` bytes (the last
/// padded with zeros), then the parity pieces.
pub fn pieces(coder: &ReedSolomon, segment: &[u8]) -> Result<Vec<Vec<u8>>> {
    if segment.is_empty() {
        return Ok(vec![Vec::new(); DATA_BLOCKS + PARITY_BLOCKS]);
    }
    let size = segment.len().div_ceil(DATA_BLOCKS);
    let mut shards: Vec<Vec<u8>> = (0..DATA_BLOCKS + PARITY_BLOCKS)
        .map(|i| {
            let from = (i * size).min(segment.len());
            let to = ((i + 1) * size).min(segment.len());
            let mut shard = if i < DATA_BLOCKS { segment[from..to].to_vec() } else { Vec::new() };
            shard.resize(size, 0);
            shard
        })
        .collect();
    coder.encode(&mut shards).map_err(|e| GreenfieldError::Erasure {
        what: format!("a {}-byte segment", segment.len()),
        reason: format!("{e:?}"),
    })?;
    Ok(shards)
}

/// The integrity hashes of `object`, segment by segment.
pub fn integrity_hashes(object: &[u8]) -> Result<IntegrityHashes> {
    let coder = ReedSolomon::new(DATA_BLOCKS, PARITY_BLOCKS)
        .map_err(|e| GreenfieldError::Erasure { what: "the 4+2 coder".into(), reason: format!("{e:?}") })?;
    let mut segments = Vec::new();
    let mut per_piece: Vec<Vec<[u8; 32]>> = vec![Vec::new(); DATA_BLOCKS + PARITY_BLOCKS];
    let chunks: Vec<&[u8]> = if object.is_empty() { vec![object] } else { object.chunks(SEGMENT_SIZE).collect() };
    for segment in chunks {
        segments.push(sha256(segment));
        for (i, piece) in pieces(&coder, segment)?.iter().enumerate() {
            per_piece[i].push(sha256(piece));
        }
    }
    let mut hashes = vec![hash_of(&segments)];
    hashes.extend(per_piece.iter().map(|p| hash_of(p)));
    Ok(IntegrityHashes { hashes, size: object.len() as u64 })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    /// greenfield-common's known answer (go/hash/hash_test.go, TestHashResultSerial: "this is
    /// generated from sp side"): 1,048,576 numbered lines of digits, about 105 MB, 7 segments.
    #[test]
    fn hashes_match_greenfield_commons_vector() {
        let line = "1234567890,1234567890,1234567890,1234567890,1234567890,1234567890,1234567890,1234567890,1234567890";
        let mut object = Vec::with_capacity(110 * 1024 * 1024);
        for i in 0..1024 * 1024 {
            object.extend_from_slice(format!("[{i:05}] {line}\n").as_bytes());
        }
        let expected = [
            "6YA/kt2H0pS6+/tyR20LCqqeWmNCelS4wQcEUIhnAko=",
            "C00Wks+pfo6NBQkG8iRGN5M0EtTvUAwMyaQ8+RsG4rA=",
            "Z5AW9CvNIsDo9jtxeQysSpn2ayNml3Kr4ksm/2WUu8s=",
            "dMlsKDw2dGRUygEgkyHJvOHYn9jVtycpUb7zvIGvEEk=",
            "v7vNLlbIg+27zFAOYfT2UDkoAId53Z1gDkcTA7VWT5A=",
            "1b7QsyQ8QT+7UoMU7K1SRhKOfIylogIfrSFsKJUfi4U=",
            "/7A2gwAnaJ5jFuK6sbov6iFAkhfOga4wdAK/NlCuJBo=",
        ];
        let got = integrity_hashes(&object).expect("hashes");
        let got: Vec<String> = got.hashes.iter().map(|h| base64::engine::general_purpose::STANDARD.encode(h)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn data_pieces_are_the_segment_and_parity_recovers_it() {
        let coder = ReedSolomon::new(DATA_BLOCKS, PARITY_BLOCKS).expect("coder");
        let segment: Vec<u8> = (0..1001u32).map(|i| (i * 7 % 251) as u8).collect();
        let shards = pieces(&coder, &segment).expect("pieces");
        assert_eq!(shards.len(), 6);
        assert!(shards.iter().all(|s| s.len() == 251));
        let joined: Vec<u8> = shards[..4].concat();
        assert_eq!(&joined[..1001], &segment[..]);
        assert!(joined[1001..].iter().all(|b| *b == 0), "the last data piece is zero-padded");
        // Two lost pieces are recovered from the other four.
        let mut lossy: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        lossy[0] = None;
        lossy[5] = None;
        coder.reconstruct(&mut lossy).expect("reconstruct");
        assert_eq!(lossy.into_iter().map(|s| s.expect("shard")).collect::<Vec<_>>(), shards);
    }
}
