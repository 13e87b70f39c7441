//! Accounts: secp256k1 keys with Ethereum-style addresses (the last 20 bytes of the keccak-256
//! of the uncompressed public key) and the 65-byte recoverable signatures (`r ‖ s ‖ v`, `v` ∈
//! {0, 1}) that wallets, Greenfield's `eth_secp256k1` keys and go-ethereum produce.

use std::{fmt, str::FromStr};

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

use crate::{Result, WalletError};

/// keccak-256 (the pre-standard Keccak padding Ethereum uses, not SHA3-256).
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

/// A 20-byte account address, shown as `0x` + EIP-55 mixed-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address of a public key.
    pub fn of(key: &VerifyingKey) -> Address {
        let point = key.to_encoded_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Address(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        f.write_str("0x")?;
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            let c = if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = WalletError;

    /// Parses `0x` + 40 hex digits, in any case.
    fn from_str(s: &str) -> Result<Address> {
        let bad = |reason: &str| WalletError::Address { value: s.to_string(), reason: reason.to_string() };
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or_else(|| bad("must start with 0x"))?;
        let bytes = hex::decode(digits).map_err(|_| bad("not hex"))?;
        let bytes: [u8; 20] = bytes.try_into().map_err(|_| bad("must be 20 bytes"))?;
        Ok(Address(bytes))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A private key and its address: what signs requests and transactions.
#[derive(Clone)]
pub struct Account {
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Account {
    /// An account from its 32-byte private key in hex (with or without `0x`).
    pub fn from_private_key_hex(hex_key: &str) -> Result<Account> {
        let bad = |reason: &str| WalletError::PrivateKey(reason.to_string());
        let digits = hex_key.trim().trim_start_matches("0x");
        let bytes = hex::decode(digits).map_err(|_| bad("not hex"))?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| bad("not a valid secp256k1 private key of 32 bytes"))?;
        let address = Address::of(key.verifying_key());
        Ok(Account { key, address })
    }

    /// This account's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The compressed (33-byte) public key, as Greenfield's `ethsecp256k1.PubKey` carries it.
    pub fn public_key(&self) -> [u8; 33] {
        let point = self.key.verifying_key().to_encoded_point(true);
        point.as_bytes().try_into().expect("a compressed secp256k1 point is 33 bytes")
    }

    /// Signs a 32-byte digest: deterministic (RFC 6979) and low-s, as libsecp256k1 signs.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 65]> {
        let (signature, recovery) = self
            .key
            .sign_prehash_recoverable(digest)
            .map_err(|e| WalletError::PrivateKey(format!("signing failed: {e}")))?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = recovery.to_byte();
        Ok(out)
    }
}

/// The digest a wallet signs for `personal_sign` (EIP-191, version `0x45`):
/// `keccak256("\x19Ethereum Signed Message:\n" ‖ len(message) ‖ message)`.
pub fn personal_digest(message: &[u8]) -> [u8; 32] {
    let mut bytes = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    bytes.extend_from_slice(message);
    keccak256(&bytes)
}

/// A `0x`-prefixed hex signature of 65 bytes, as wallets return it.
pub fn parse_signature(text: &str) -> Result<[u8; 65]> {
    let bad = |reason: &str| WalletError::Signature(reason.to_string());
    let digits = text.strip_prefix("0x").ok_or_else(|| bad("write it as 0x and 130 hex digits"))?;
    let bytes = hex::decode(digits).map_err(|_| bad("not hex"))?;
    bytes.try_into().map_err(|_| bad("a signature is 65 bytes (r, s, v)"))
}

/// The address whose key made `signature` (65 bytes, `v` ∈ {0, 1} or Ethereum's {27, 28}) over
/// `digest`, or an error when it is no valid signature.
pub fn recover(digest: &[u8; 32], signature: &[u8]) -> Result<Address> {
    let bad = |reason: &str| WalletError::Signature(reason.to_string());
    let bytes: &[u8; 65] = signature.try_into().map_err(|_| bad("a signature is 65 bytes (r, s, v)"))?;
    let v = match bytes[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return Err(bad("recovery id must be 0, 1, 27 or 28")),
    };
    let signature = Signature::from_slice(&bytes[..64]).map_err(|_| bad("r or s out of range"))?;
    if signature.normalize_s().is_some() {
        return Err(bad("s is in the upper half of the curve order (malleable)"));
    }
    let recovery = RecoveryId::from_byte(v).ok_or_else(|| bad("bad recovery id"))?;
    let key = VerifyingKey::recover_from_prehash(digest, &signature, recovery)
        .map_err(|_| bad("does not recover to a public key"))?;
    Ok(Address::of(&key))
}

#[cfg(test)]
mod tests {
    use k256::elliptic_curve::PrimeField;

    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn keccak_matches_the_reference_vectors() {
        // Keccak team / Ethereum: keccak256("") and keccak256("abc").
        assert_eq!(hex::encode(keccak256(b"")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        assert_eq!(hex::encode(keccak256(b"abc")), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    }

    #[test]
    fn address_of_a_key_matches_go_ethereum() {
        // go-ethereum crypto/crypto_test.go: testPrivHex and testAddrHex.
        let account =
            Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap();
        assert_eq!(account.address().to_string().to_lowercase(), "0x970e8128ab834e8eac17ab8e3812f010678cf791");
    }

    #[test]
    fn recovery_matches_go_ethereum() {
        // go-ethereum crypto/signature_test.go: testmsg, testsig, testpubkey.
        let digest = unhex::<32>("ce0677bb30baa8cf067c88db9811f4333d131bf8bcf12fe7065d211dce971008");
        let sig = hex::decode("90f27b8b488db00b00606796d2987f6a5f59ae62ea05effe84fef5b8b0e549984a691139ad57a3f0b906637673aa2f63d1f55cb1a69199d4009eea23ceaddc9301").unwrap();
        let pubkey = hex::decode("04e32df42865e97135acfb65f3bae71bdc86f4d49150ad6a440b6f15878109880a0a2b2667f7e725ceea70c673093bf67663e0312623c8e091b13cf2c0f11ef652").unwrap();
        let expected = Address::of(&VerifyingKey::from_sec1_bytes(&pubkey).unwrap());
        assert_eq!(recover(&digest, &sig).unwrap(), expected);
        let mut altered = digest;
        altered[0] ^= 1;
        assert_ne!(recover(&altered, &sig).unwrap(), expected);
    }

    #[test]
    fn personal_digest_matches_ethers() {
        // ethers.js documentation: hashMessage("Hello World").
        assert_eq!(
            hex::encode(personal_digest(b"Hello World")),
            "a1de988600a42c4b4ab089b619297c17d53cffae5d5120d82d8a92d0bb3b78f2"
        );
        let account = Account::from_private_key_hex(&"11".repeat(32)).unwrap();
        let text = format!("0x{}", hex::encode(account.sign_digest(&personal_digest(b"hi")).unwrap()));
        assert_eq!(recover(&personal_digest(b"hi"), &parse_signature(&text).unwrap()).unwrap(), account.address());
        assert!(parse_signature(&text[2..]).is_err() && parse_signature("0x00").is_err());
    }

    #[test]
    fn eip55_matches_the_eip_examples() {
        for shown in ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"] {
            assert_eq!(shown.parse::<Address>().unwrap().to_string(), shown);
        }
        assert!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse::<Address>().is_err());
        assert!("0x5aAeb6".parse::<Address>().is_err());
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_recover() {
        let account =
            Account::from_private_key_hex("0x289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032")
                .unwrap();
        let digest = keccak256(b"foo");
        let a = account.sign_digest(&digest).unwrap();
        assert_eq!(a, account.sign_digest(&digest).unwrap());
        assert_eq!(recover(&digest, &a).unwrap(), account.address());
        // High-s twin of the same signature: valid ECDSA, refused as malleable.
        let s = k256::Scalar::from_repr(k256::FieldBytes::clone_from_slice(&a[32..64])).unwrap();
        let mut high = a;
        high[32..64].copy_from_slice(&(-s).to_bytes());
        high[64] ^= 1;
        assert!(recover(&digest, &high).is_err());
        assert!(Account::from_private_key_hex("00").is_err());
    }
}
