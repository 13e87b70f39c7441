//! Legacy (pre-EIP-2718) Ethereum transactions with EIP-155 replay protection, as BNB Smart
//! Chain and every EVM chain accept them: RLP encoding, signing, and decoding a raw
//! transaction back to its fields, its sender and its hash.
//!
//! A payment to the marketplace is a transfer whose `data` is the purchase id it pays for, so
//! one payment can fund one purchase only.

use crate::{
    Result, WalletError,
    account::{Account, Address, keccak256, recover},
};

/// A transaction's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTx {
    /// The sender's transaction count.
    pub nonce: u64,
    /// Price per gas, wei.
    pub gas_price: u128,
    /// Gas limit.
    pub gas: u64,
    /// Recipient (none: contract creation).
    pub to: Option<Address>,
    /// Value transferred, wei.
    pub value: u128,
    /// Call data.
    pub data: Vec<u8>,
    /// The chain it is signed for.
    pub chain_id: u64,
}

/// A decoded signed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// Its fields.
    pub tx: LegacyTx,
    /// Who signed it.
    pub from: Address,
    /// keccak-256 of the raw bytes: the transaction hash.
    pub hash: [u8; 32],
}

fn bad(reason: impl Into<String>) -> WalletError {
    WalletError::Transaction(reason.into())
}

/// Big-endian bytes of `n` without leading zeros (RLP's integer form).
fn trimmed(n: u128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

fn rlp_string(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.len() == 1 && bytes[0] < 0x80 {
        out.push(bytes[0]);
    } else {
        rlp_header(0x80, bytes.len(), out);
        out.extend_from_slice(bytes);
    }
}

fn rlp_header(base: u8, len: usize, out: &mut Vec<u8>) {
    if len < 56 {
        out.push(base + len as u8);
    } else {
        let len_bytes = trimmed(len as u128);
        out.push(base + 55 + len_bytes.len() as u8);
        out.extend_from_slice(&len_bytes);
    }
}

fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for item in items {
        rlp_string(item, &mut body);
    }
    let mut out = Vec::with_capacity(body.len() + 9);
    rlp_header(0xc0, body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// One RLP item at the start of `bytes`: (payload, is a list, bytes consumed).
fn rlp_item(bytes: &[u8]) -> Result<(&[u8], bool, usize)> {
    let first = *bytes.first().ok_or_else(|| bad("RLP ends early"))?;
    let (offset, len, list) = match first {
        0x00..=0x7f => return Ok((&bytes[..1], false, 1)),
        0x80..=0xb7 => (1, usize::from(first - 0x80), false),
        0xb8..=0xbf => {
            let n = usize::from(first - 0xb7);
            (1 + n, be_len(bytes.get(1..1 + n))?, false)
        }
        0xc0..=0xf7 => (1, usize::from(first - 0xc0), true),
        0xf8..=0xff => {
            let n = usize::from(first - 0xf7);
            (1 + n, be_len(bytes.get(1..1 + n))?, true)
        }
    };
    let end = offset.checked_add(len).filter(|e| *e <= bytes.len()).ok_or_else(|| bad("RLP item runs past the end"))?;
    Ok((&bytes[offset..end], list, end))
}

fn be_len(bytes: Option<&[u8]>) -> Result<usize> {
    let bytes = bytes.filter(|b| b.len() <= 8).ok_or_else(|| bad("RLP length runs past the end"))?;
    Ok(bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

fn integer(bytes: &[u8], what: &str) -> Result<u128> {
    if bytes.len() > 16 || bytes.first() == Some(&0) {
        return Err(bad(format!("{what} is not a canonical integer")));
    }
    Ok(bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)))
}

impl LegacyTx {
    /// The RLP of the fields followed by `tail` (the EIP-155 chain triple, or `v, r, s`).
    fn encode_with(&self, tail: [Vec<u8>; 3]) -> Vec<u8> {
        let [a, b, c] = tail;
        rlp_list(&[
            trimmed(u128::from(self.nonce)),
            trimmed(self.gas_price),
            trimmed(u128::from(self.gas)),
            self.to.map(|a| a.0.to_vec()).unwrap_or_default(),
            trimmed(self.value),
            self.data.clone(),
            a,
            b,
            c,
        ])
    }

    /// The digest the sender signs (EIP-155).
    pub fn signing_hash(&self) -> [u8; 32] {
        keccak256(&self.encode_with([trimmed(u128::from(self.chain_id)), Vec::new(), Vec::new()]))
    }

    /// The raw signed transaction, ready for `eth_sendRawTransaction`.
    pub fn sign(&self, account: &Account) -> Result<Vec<u8>> {
        let signature = account.sign_digest(&self.signing_hash())?;
        let v = u128::from(self.chain_id) * 2 + 35 + u128::from(signature[64]);
        Ok(self.encode_with([trimmed(v), trimmed_slice(&signature[..32]), trimmed_slice(&signature[32..64])]))
    }
}

fn trimmed_slice(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

impl SignedTx {
    /// Decodes a raw legacy EIP-155 transaction and recovers its sender.
    pub fn decode(raw: &[u8]) -> Result<SignedTx> {
        let (body, list, used) = rlp_item(raw)?;
        if !list || used != raw.len() {
            return Err(bad("a legacy transaction is one RLP list"));
        }
        let mut fields = Vec::with_capacity(9);
        let mut rest = body;
        while !rest.is_empty() {
            let (item, is_list, used) = rlp_item(rest)?;
            if is_list {
                return Err(bad("a transaction field is no list"));
            }
            fields.push(item);
            rest = &rest[used..];
        }
        let [nonce, gas_price, gas, to, value, data, v, r, s]: [&[u8]; 9] =
            fields.try_into().map_err(|_| bad("a legacy transaction has 9 fields"))?;
        let v = integer(v, "v")?;
        if v < 35 {
            return Err(bad("not an EIP-155 transaction (v is 27 or 28)"));
        }
        let chain_id = u64::try_from((v - 35) / 2).map_err(|_| bad("chain id out of range"))?;
        let to = match to.len() {
            0 => None,
            20 => Some(Address(to.try_into().map_err(|_| bad("bad recipient"))?)),
            _ => return Err(bad("a recipient is 20 bytes")),
        };
        let small = |bytes: &[u8], what: &str| -> Result<u64> {
            u64::try_from(integer(bytes, what)?).map_err(|_| bad(format!("{what} out of range")))
        };
        let tx = LegacyTx {
            nonce: small(nonce, "nonce")?,
            gas_price: integer(gas_price, "gas price")?,
            gas: small(gas, "gas")?,
            to,
            value: integer(value, "value")?,
            data: data.to_vec(),
            chain_id,
        };
        if r.len() > 32 || s.len() > 32 {
            return Err(bad("r and s are at most 32 bytes"));
        }
        let mut signature = [0u8; 65];
        signature[32 - r.len()..32].copy_from_slice(r);
        signature[64 - s.len()..64].copy_from_slice(s);
        signature[64] = ((v - 35) % 2) as u8;
        let from = recover(&tx.signing_hash(), &signature)?;
        Ok(SignedTx { tx, from, hash: keccak256(raw) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eip_155_example_signs_to_the_published_bytes() {
        // EIP-155's own example: nonce 9, 20 gwei, 21000 gas, 1 ether to 0x3535…35, chain 1,
        // private key 0x4646…46.
        let tx = LegacyTx {
            nonce: 9,
            gas_price: 20_000_000_000,
            gas: 21_000,
            to: Some(Address([0x35; 20])),
            value: 1_000_000_000_000_000_000,
            data: Vec::new(),
            chain_id: 1,
        };
        assert_eq!(hex::encode(tx.signing_hash()), "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
        let account = Account::from_private_key_hex(&"46".repeat(32)).unwrap();
        let raw = tx.sign(&account).unwrap();
        assert_eq!(
            hex::encode(&raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
        let decoded = SignedTx::decode(&raw).unwrap();
        assert_eq!((decoded.tx, decoded.from), (tx, account.address()));
    }

    #[test]
    fn data_and_long_fields_round_trip_and_garbage_is_refused() {
        let account = Account::from_private_key_hex(&"47".repeat(32)).unwrap();
        let tx = LegacyTx {
            nonce: 0,
            gas_price: 1,
            gas: 50_000,
            to: Some(Address([7; 20])),
            value: 5,
            data: vec![0xab; 100],
            chain_id: 56,
        };
        let raw = tx.sign(&account).unwrap();
        let decoded = SignedTx::decode(&raw).unwrap();
        assert_eq!((decoded.tx, decoded.from), (tx, account.address()));
        for garbage in [&b""[..], &[0xc0], &raw[..raw.len() - 1], &[0xf9, 0xff, 0xff]] {
            assert!(SignedTx::decode(garbage).is_err());
        }
    }
}
