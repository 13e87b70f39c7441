//! EIP-712 typed-data hashing: the digest wallets sign structured messages over (Greenfield
//! transactions, signed submissions).
//!
//! [`Types`] names each struct type's fields in order; [`hash_struct`] encodes a JSON value of
//! one of them as the EIP specifies (`keccak256(typeHash ‖ encodeData)`, nested structs by their
//! own hash, arrays by the hash of their items' encodings, strings and bytes by their hash,
//! integers, booleans and addresses as 32-byte words) and [`digest`] joins the domain and the
//! message: `keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct(message))`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{Result, WalletError, account::keccak256};

/// One field of a struct type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type: `string`, `bytes`, `bool`, `address`, `uintN`/`intN`, `bytesN`, a struct
    /// type's name, or any of these followed by `[]`.
    pub ty: String,
}

impl Field {
    /// A field `name` of type `ty`.
    pub fn new(name: impl Into<String>, ty: impl Into<String>) -> Field {
        Field { name: name.into(), ty: ty.into() }
    }
}

/// Struct types by name.
pub type Types = BTreeMap<String, Vec<Field>>;

fn bad(reason: impl Into<String>) -> WalletError {
    WalletError::TypedData(reason.into())
}

/// `keccak256(0x19 0x01 ‖ hashStruct("EIP712Domain", domain) ‖ hashStruct(primary, message))`.
pub fn digest(types: &Types, domain: &Value, primary: &str, message: &Value) -> Result<[u8; 32]> {
    let mut bytes = Vec::with_capacity(66);
    bytes.extend_from_slice(b"\x19\x01");
    bytes.extend_from_slice(&hash_struct(types, "EIP712Domain", domain)?);
    bytes.extend_from_slice(&hash_struct(types, primary, message)?);
    Ok(keccak256(&bytes))
}

/// `keccak256(typeHash(name) ‖ encodeData(value))`.
pub fn hash_struct(types: &Types, name: &str, value: &Value) -> Result<[u8; 32]> {
    let fields = types.get(name).ok_or_else(|| bad(format!("no type {name}")))?;
    let object = value.as_object().ok_or_else(|| bad(format!("a {name} is an object")))?;
    let mut encoded = Vec::with_capacity(32 * (fields.len() + 1));
    encoded.extend_from_slice(&keccak256(encode_type(types, name)?.as_bytes()));
    for field in fields {
        let value = object.get(&field.name).ok_or_else(|| bad(format!("{name} has no {}", field.name)))?;
        encoded.extend_from_slice(&encode_value(types, &field.ty, value).map_err(|e| match e {
            WalletError::TypedData(reason) => bad(format!("{name}.{}: {reason}", field.name)),
            other => other,
        })?);
    }
    Ok(keccak256(&encoded))
}

/// `Name(type1 name1,…)` followed by the struct types it refers to, in name order.
pub fn encode_type(types: &Types, name: &str) -> Result<String> {
    let mut referenced = BTreeSet::new();
    collect_references(types, name, &mut referenced)?;
    referenced.remove(name);
    let mut out = String::new();
    for ty in std::iter::once(name).chain(referenced.iter().map(String::as_str)) {
        let fields: Vec<String> = types[ty].iter().map(|f| format!("{} {}", f.ty, f.name)).collect();
        out.push_str(&format!("{ty}({})", fields.join(",")));
    }
    Ok(out)
}

fn collect_references(types: &Types, name: &str, seen: &mut BTreeSet<String>) -> Result<()> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let fields = types.get(name).ok_or_else(|| bad(format!("no type {name}")))?;
    for field in fields {
        let base = field.ty.trim_end_matches("[]");
        if types.contains_key(base) {
            collect_references(types, base, seen)?;
        }
    }
    Ok(())
}

fn encode_value(types: &Types, ty: &str, value: &Value) -> Result<[u8; 32]> {
    if let Some(item) = ty.strip_suffix("[]") {
        let items = value.as_array().ok_or_else(|| bad(format!("a {ty} is an array")))?;
        let mut encoded = Vec::with_capacity(32 * items.len());
        for v in items {
            encoded.extend_from_slice(&encode_value(types, item, v)?);
        }
        return Ok(keccak256(&encoded));
    }
    if types.contains_key(ty) {
        return hash_struct(types, ty, value);
    }
    let text = || value.as_str().ok_or_else(|| bad(format!("a {ty} is given as a string")));
    match ty {
        "string" => Ok(keccak256(text()?.as_bytes())),
        "bytes" => Ok(keccak256(&hex_bytes(text()?)?)),
        "bool" => {
            let b = value.as_bool().ok_or_else(|| bad("a bool is true or false"))?;
            Ok(word(&[u8::from(b)]))
        }
        "address" => {
            let bytes = hex_bytes(text()?)?;
            if bytes.len() != 20 {
                return Err(bad("an address is 20 bytes"));
            }
            Ok(word(&bytes))
        }
        _ if ty.starts_with("uint") || ty.starts_with("int") => integer(ty, value),
        _ if ty.starts_with("bytes") => {
            let bytes = hex_bytes(text()?)?;
            let width: usize = ty["bytes".len()..].parse().map_err(|_| bad(format!("unknown type {ty}")))?;
            if bytes.len() != width || width > 32 {
                return Err(bad(format!("a {ty} is {width} bytes")));
            }
            let mut out = [0u8; 32];
            out[..width].copy_from_slice(&bytes);
            Ok(out)
        }
        _ => Err(bad(format!("unknown type {ty}"))),
    }
}

/// A big-endian value right-aligned in a 32-byte word.
fn word(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    out
}

/// An integer given as a JSON number or a decimal string (Cosmos writes 64-bit numbers as
/// strings); negative values of `intN` as two's complement.
fn integer(ty: &str, value: &Value) -> Result<[u8; 32]> {
    let parsed: Option<i128> = match value {
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let n = parsed.ok_or_else(|| bad(format!("{value} is no {ty}")))?;
    if n < 0 && ty.starts_with('u') {
        return Err(bad(format!("{n} is negative")));
    }
    let fill = if n < 0 { 0xff } else { 0 };
    let mut out = [fill; 32];
    out[16..].copy_from_slice(&n.to_be_bytes());
    Ok(out)
}

fn hex_bytes(text: &str) -> Result<Vec<u8>> {
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).map_err(|e| bad(format!("{text:?} is no hex: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The example of the EIP itself (eips.ethereum.org/EIPS/eip-712, `Example.js`).
    #[test]
    fn the_eip_example_hashes_as_published() {
        let fields = |f: &[(&str, &str)]| f.iter().map(|(n, t)| Field::new(*n, *t)).collect::<Vec<_>>();
        let types = Types::from([
            (
                "EIP712Domain".to_string(),
                fields(&[
                    ("name", "string"),
                    ("version", "string"),
                    ("chainId", "uint256"),
                    ("verifyingContract", "address"),
                ]),
            ),
            ("Person".to_string(), fields(&[("name", "string"), ("wallet", "address")])),
            ("Mail".to_string(), fields(&[("from", "Person"), ("to", "Person"), ("contents", "string")])),
        ]);
        let domain = json!({"name": "Ether Mail", "version": "1", "chainId": 1,
            "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"});
        let message = json!({
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"
        });
        assert_eq!(
            encode_type(&types, "Mail").unwrap(),
            "Mail(Person from,Person to,string contents)Person(string name,address wallet)"
        );
        assert_eq!(
            hex::encode(hash_struct(&types, "EIP712Domain", &domain).unwrap()),
            "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
        assert_eq!(
            hex::encode(hash_struct(&types, "Mail", &message).unwrap()),
            "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
        );
        assert_eq!(
            hex::encode(digest(&types, &domain, "Mail", &message).unwrap()),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
        let mut missing = message.clone();
        missing["to"].as_object_mut().unwrap().remove("wallet");
        assert!(
            matches!(hash_struct(&types, "Mail", &missing), Err(WalletError::TypedData(r)) if r.contains("wallet"))
        );
    }
}
