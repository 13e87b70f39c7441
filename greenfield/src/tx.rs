//! Greenfield transactions: Cosmos `TxRaw` envelopes (protobuf, as `cosmos.tx.v1beta1` defines
//! them) carrying Greenfield messages, signed in Greenfield's EIP-712 sign mode.
//!
//! The signed digest is the EIP-712 hash of a `Tx` struct: account number, the EVM chain id
//! (`5600` of `greenfield_5600-1`), the fee (`amount`, `gas_limit`, `granter`, `payer`), memo,
//! sequence, timeout height, and one field `msgN` per message, each typed `MsgN` with the
//! message's own fields and its type URL. Field lists are in name order, as the chain builds
//! them. The signer's public key travels as a compressed `ethsecp256k1` key; the signature is
//! `r ‖ s ‖ v` with `v` = 27 or 28.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    Account, Address, GreenfieldError, Result,
    account::recover,
    eip712::{self, Field, Types},
};

/// Protobuf messages of the Cosmos transaction envelope.
pub mod proto {
    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// The message's type URL (`/greenfield.storage.MsgPutPolicy`).
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The message, protobuf-encoded.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `cosmos.tx.v1beta1.TxRaw`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxRaw {
        /// The encoded [`TxBody`].
        #[prost(bytes = "vec", tag = "1")]
        pub body_bytes: Vec<u8>,
        /// The encoded [`AuthInfo`].
        #[prost(bytes = "vec", tag = "2")]
        pub auth_info_bytes: Vec<u8>,
        /// One signature per signer.
        #[prost(bytes = "vec", repeated, tag = "3")]
        pub signatures: Vec<Vec<u8>>,
    }

    /// `cosmos.tx.v1beta1.TxBody`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TxBody {
        /// The messages.
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Any>,
        /// Free text.
        #[prost(string, tag = "2")]
        pub memo: String,
        /// Block height after which the transaction is void (0: never).
        #[prost(uint64, tag = "3")]
        pub timeout_height: u64,
    }

    /// `cosmos.tx.v1beta1.AuthInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthInfo {
        /// The signers.
        #[prost(message, repeated, tag = "1")]
        pub signer_infos: Vec<SignerInfo>,
        /// The fee.
        #[prost(message, optional, tag = "2")]
        pub fee: Option<Fee>,
    }

    /// `cosmos.tx.v1beta1.SignerInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SignerInfo {
        /// The signer's public key, an `ethsecp256k1.PubKey` in an [`Any`].
        #[prost(message, optional, tag = "1")]
        pub public_key: Option<Any>,
        /// How it signed.
        #[prost(message, optional, tag = "2")]
        pub mode_info: Option<ModeInfo>,
        /// The signer's account sequence.
        #[prost(uint64, tag = "3")]
        pub sequence: u64,
    }

    /// `cosmos.tx.v1beta1.ModeInfo` (the `single` case).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModeInfo {
        /// A single signer's mode.
        #[prost(message, optional, tag = "1")]
        pub single: Option<Single>,
    }

    /// `cosmos.tx.v1beta1.ModeInfo.Single`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Single {
        /// `cosmos.tx.signing.v1beta1.SignMode`.
        #[prost(int32, tag = "1")]
        pub mode: i32,
    }

    /// `cosmos.tx.v1beta1.Fee`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Fee {
        /// What is paid.
        #[prost(message, repeated, tag = "1")]
        pub amount: Vec<Coin>,
        /// Gas allowed.
        #[prost(uint64, tag = "2")]
        pub gas_limit: u64,
        /// Who pays (empty: the first signer).
        #[prost(string, tag = "3")]
        pub payer: String,
        /// Who grants the fee (empty: none).
        #[prost(string, tag = "4")]
        pub granter: String,
    }

    /// `cosmos.base.v1beta1.Coin`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Coin {
        /// Denomination (`BNB`).
        #[prost(string, tag = "1")]
        pub denom: String,
        /// Amount in base units, decimal.
        #[prost(string, tag = "2")]
        pub amount: String,
    }

    /// `cosmos.crypto.eth.ethsecp256k1.PubKey`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PubKey {
        /// The compressed key (33 bytes).
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
    }
}

/// `SIGN_MODE_EIP_712` of Greenfield's `cosmos.tx.signing.v1beta1.SignMode`.
pub const SIGN_MODE_EIP_712: i32 = 712;
/// The type URL of an `ethsecp256k1` public key.
pub const PUBKEY_TYPE_URL: &str = "/cosmos.crypto.eth.ethsecp256k1.PubKey";

/// Protobuf encoding, for every prost message (so that a `dyn Msg` can be encoded).
pub trait ToProto {
    /// The protobuf encoding.
    fn to_proto(&self) -> Vec<u8>;
}

impl<T: prost::Message> ToProto for T {
    fn to_proto(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// A message a transaction carries.
pub trait Msg: ToProto + Send + Sync {
    /// Its type URL.
    fn type_url(&self) -> &'static str;
    /// Its EIP-712 struct type as `name` (`Msg1`), with the nested types it uses (named
    /// `Type{name}{Field}`, as the chain names them).
    fn eip712_types(&self, name: &str) -> Types;
    /// Its EIP-712 value, without the `type` field.
    fn eip712_value(&self) -> Map<String, Value>;
    /// The account that must sign it.
    fn signer(&self) -> &str;
}

/// What a transaction states besides its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct TxParams {
    /// The Cosmos chain id (`greenfield_1017-1`, `greenfield_5600-1`).
    pub chain_id: String,
    /// The signer's account number.
    pub account_number: u64,
    /// The signer's sequence (transactions it has sent).
    pub sequence: u64,
    /// The fee paid.
    pub fee: Vec<proto::Coin>,
    /// Gas allowed.
    pub gas_limit: u64,
    /// Free text.
    pub memo: String,
    /// Height after which the transaction is void (0: never).
    pub timeout_height: u64,
}

/// The EVM chain id inside a Cosmos chain id: `5600` of `greenfield_5600-1`.
pub fn eth_chain_id(chain_id: &str) -> Result<u64> {
    chain_id
        .rsplit_once('_')
        .and_then(|(_, rest)| rest.split_once('-'))
        .and_then(|(id, _)| id.parse().ok())
        .ok_or_else(|| GreenfieldError::Config(format!("chain id {chain_id:?} is not <name>_<number>-<epoch>")))
}

fn fields(list: &[(&str, &str)]) -> Vec<Field> {
    list.iter().map(|(name, ty)| Field::new(*name, *ty)).collect()
}

/// The typed data of a transaction: its types, domain and message.
pub fn typed_data(params: &TxParams, payer: Address, msgs: &[&dyn Msg]) -> Result<(Types, Value, Value)> {
    let chain = eth_chain_id(&params.chain_id)?;
    let mut types = Types::from([
        (
            "EIP712Domain".to_string(),
            fields(&[
                ("chainId", "uint256"),
                ("name", "string"),
                ("salt", "string"),
                ("verifyingContract", "string"),
                ("version", "string"),
            ]),
        ),
        ("Coin".to_string(), fields(&[("amount", "uint256"), ("denom", "string")])),
        (
            "Fee".to_string(),
            fields(&[("amount", "Coin[]"), ("gas_limit", "uint256"), ("granter", "string"), ("payer", "string")]),
        ),
    ]);
    let mut tx_fields = fields(&[
        ("account_number", "uint256"),
        ("chain_id", "uint256"),
        ("fee", "Fee"),
        ("memo", "string"),
        ("sequence", "uint256"),
        ("timeout_height", "uint256"),
    ]);
    let coins: Vec<Value> = params.fee.iter().map(|c| json!({"amount": c.amount, "denom": c.denom})).collect();
    let mut message = json!({
        "account_number": params.account_number.to_string(),
        "chain_id": chain.to_string(),
        "fee": {"amount": coins, "gas_limit": params.gas_limit.to_string(), "granter": "", "payer": payer.to_string()},
        "memo": params.memo,
        "sequence": params.sequence.to_string(),
        "timeout_height": params.timeout_height.to_string(),
    });
    for (i, msg) in msgs.iter().enumerate() {
        let name = format!("Msg{}", i + 1);
        let mut msg_types = msg.eip712_types(&name);
        let own =
            msg_types.get_mut(&name).ok_or_else(|| gata_wallet::WalletError::TypedData(format!("no type {name}")))?;
        own.push(Field::new("type", "string"));
        for list in msg_types.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        types.extend(msg_types);
        let mut value = msg.eip712_value();
        value.insert("type".into(), Value::String(msg.type_url().into()));
        message[format!("msg{}", i + 1)] = Value::Object(value);
        tx_fields.push(Field::new(format!("msg{}", i + 1), name));
    }
    tx_fields.sort_by(|a, b| a.name.cmp(&b.name));
    types.insert("Tx".into(), tx_fields);
    let domain = json!({"chainId": chain.to_string(), "name": "Greenfield Tx", "salt": "0",
        "verifyingContract": "greenfield", "version": "1.0.0"});
    Ok((types, domain, message))
}

/// The digest `payer` signs for a transaction of `msgs`.
pub fn sign_digest(params: &TxParams, payer: Address, msgs: &[&dyn Msg]) -> Result<[u8; 32]> {
    let (types, domain, message) = typed_data(params, payer, msgs)?;
    Ok(eip712::digest(&types, &domain, "Tx", &message)?)
}

/// A signed transaction, ready to broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The encoded `TxRaw`.
    pub bytes: Vec<u8>,
    /// Its hash as the chain reports it: SHA-256 of the bytes, upper-case hex.
    pub hash: String,
}

/// The hash the chain gives transaction `bytes`.
pub fn tx_hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(bytes))
}

/// Encodes a transaction of `msgs` by the holder of `public_key` with `signature` (65 bytes).
pub fn assemble(params: &TxParams, public_key: &[u8; 33], msgs: &[&dyn Msg], signature: &[u8]) -> SignedTx {
    use prost::Message as _;
    let body = proto::TxBody {
        messages: msgs.iter().map(|m| proto::Any { type_url: m.type_url().into(), value: m.to_proto() }).collect(),
        memo: params.memo.clone(),
        timeout_height: params.timeout_height,
    };
    let auth_info = proto::AuthInfo {
        signer_infos: vec![proto::SignerInfo {
            public_key: Some(proto::Any {
                type_url: PUBKEY_TYPE_URL.into(),
                value: proto::PubKey { key: public_key.to_vec() }.encode_to_vec(),
            }),
            mode_info: Some(proto::ModeInfo { single: Some(proto::Single { mode: SIGN_MODE_EIP_712 }) }),
            sequence: params.sequence,
        }],
        fee: Some(proto::Fee {
            amount: params.fee.clone(),
            gas_limit: params.gas_limit,
            payer: String::new(),
            granter: String::new(),
        }),
    };
    let raw = proto::TxRaw {
        body_bytes: body.encode_to_vec(),
        auth_info_bytes: auth_info.encode_to_vec(),
        signatures: vec![signature.to_vec()],
    };
    let bytes = raw.encode_to_vec();
    SignedTx { hash: tx_hash(&bytes), bytes }
}

/// The first of `msgs` whose signer is not `signer`.
fn signed_by_another<'a>(msgs: &[&'a dyn Msg], signer: Address) -> Option<&'a dyn Msg> {
    msgs.iter().find(|m| m.signer().parse::<Address>().ok() != Some(signer)).copied()
}

/// Signs a transaction of `msgs` with `account`; every message must name it as its signer.
pub fn sign(params: &TxParams, account: &Account, msgs: &[&dyn Msg]) -> Result<SignedTx> {
    if msgs.is_empty() {
        return Err(GreenfieldError::Transaction("a transaction carries at least one message".into()));
    }
    let me = account.address();
    if let Some(other) = msgs.iter().find(|m| m.signer().parse::<Address>().ok() != Some(me)) {
        return Err(GreenfieldError::Transaction(format!(
            "{} is signed by {}, not {me}",
            other.type_url(),
            other.signer()
        )));
    }
    let digest = sign_digest(params, me, msgs)?;
    let mut signature = account.sign_digest(&digest)?;
    signature[64] += 27;
    Ok(assemble(params, &account.public_key(), msgs, &signature))
}

/// A received transaction, decoded but not yet checked.
#[derive(Debug, Clone)]
pub struct Received {
    /// The messages.
    pub messages: Vec<proto::Any>,
    /// Memo.
    pub memo: String,
    /// Timeout height.
    pub timeout_height: u64,
    /// The signer's public key.
    pub public_key: [u8; 33],
    /// The sequence it claims.
    pub sequence: u64,
    /// The fee.
    pub fee: proto::Fee,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Decodes `bytes` as a single-signer EIP-712 transaction.
pub fn decode(bytes: &[u8]) -> Result<Received> {
    use prost::Message as _;
    let bad = |what: &str| GreenfieldError::Transaction(what.to_string());
    let raw = proto::TxRaw::decode(bytes).map_err(|e| bad(&format!("TxRaw: {e}")))?;
    let body = proto::TxBody::decode(raw.body_bytes.as_slice()).map_err(|e| bad(&format!("TxBody: {e}")))?;
    let auth = proto::AuthInfo::decode(raw.auth_info_bytes.as_slice()).map_err(|e| bad(&format!("AuthInfo: {e}")))?;
    let [signer] = auth.signer_infos.as_slice() else { return Err(bad("one signer expected")) };
    let [signature] = raw.signatures.as_slice() else { return Err(bad("one signature expected")) };
    let mode = signer.mode_info.as_ref().and_then(|m| m.single.as_ref()).map(|s| s.mode);
    if mode != Some(SIGN_MODE_EIP_712) {
        return Err(bad("the sign mode must be EIP-712"));
    }
    let key = signer
        .public_key
        .as_ref()
        .filter(|k| k.type_url == PUBKEY_TYPE_URL)
        .ok_or_else(|| bad("no ethsecp256k1 key"))?;
    let key = proto::PubKey::decode(key.value.as_slice()).map_err(|e| bad(&format!("PubKey: {e}")))?;
    Ok(Received {
        messages: body.messages,
        memo: body.memo,
        timeout_height: body.timeout_height,
        public_key: key.key.as_slice().try_into().map_err(|_| bad("a public key is 33 bytes"))?,
        sequence: signer.sequence,
        fee: auth.fee.unwrap_or_default(),
        signature: signature.clone(),
    })
}

impl Received {
    /// Checks the signature over `msgs` (this transaction's messages, decoded) for the signer's
    /// `account_number` on `chain_id`; returns the signer.
    pub fn verify(&self, chain_id: &str, account_number: u64, msgs: &[&dyn Msg]) -> Result<Address> {
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&self.public_key)
            .map_err(|_| GreenfieldError::Signature("the public key is no secp256k1 point".into()))?;
        let holder = Address::of(&key);
        let params = TxParams {
            chain_id: chain_id.to_string(),
            account_number,
            sequence: self.sequence,
            fee: self.fee.amount.clone(),
            gas_limit: self.fee.gas_limit,
            memo: self.memo.clone(),
            timeout_height: self.timeout_height,
        };
        let digest = sign_digest(&params, holder, msgs)?;
        if recover(&digest, &self.signature)? != holder {
            return Err(GreenfieldError::Signature(
                "the signature is not the key holder's over this transaction".into(),
            ));
        }
        if let Some(other) = signed_by_another(msgs, holder) {
            return Err(GreenfieldError::Signature(format!(
                "{} must be signed by {}",
                other.type_url(),
                other.signer()
            )));
        }
        Ok(holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cosmos.bank.v1beta1.MsgSend`: only to check the envelope against a published transaction.
    #[derive(Clone, PartialEq, prost::Message)]
    struct MsgSend {
        #[prost(string, tag = "1")]
        from_address: String,
        #[prost(string, tag = "2")]
        to_address: String,
        #[prost(message, repeated, tag = "3")]
        amount: Vec<proto::Coin>,
    }

    impl Msg for MsgSend {
        fn type_url(&self) -> &'static str {
            "/cosmos.bank.v1beta1.MsgSend"
        }
        fn eip712_types(&self, name: &str) -> Types {
            let amount = format!("Type{name}Amount");
            Types::from([
                (
                    name.to_string(),
                    fields(&[("amount", &format!("{amount}[]")), ("from_address", "string"), ("to_address", "string")]),
                ),
                (amount, fields(&[("amount", "string"), ("denom", "string")])),
            ])
        }
        fn eip712_value(&self) -> Map<String, Value> {
            let amount: Vec<Value> =
                self.amount.iter().map(|c| json!({"amount": c.amount, "denom": c.denom})).collect();
            let value = json!({"amount": amount, "from_address": self.from_address, "to_address": self.to_address});
            value.as_object().cloned().unwrap_or_default()
        }
        fn signer(&self) -> &str {
            &self.from_address
        }
    }

    fn bnb(amount: &str) -> proto::Coin {
        proto::Coin { denom: "BNB".into(), amount: amount.into() }
    }

    /// Greenfield testnet transaction 0x9f895cf2…55ab, as Trust Wallet's wallet-core tests it
    /// (`tw_greenfield` `eip712_signer.rs` and `greenfield_compile.rs`): the EIP-712 digest,
    /// the signature recovering to the sender, and the broadcast bytes.
    #[test]
    fn a_published_testnet_transfer_encodes_and_hashes_alike() {
        use base64::Engine as _;
        let send = MsgSend {
            from_address: "0x9d1d97aDFcd324Bbd603D3872BD78e04098510b1".into(),
            to_address: "0x280b27f3676db1C4475EE10F75D510Eb527fd155".into(),
            amount: vec![bnb("1000000000000000")],
        };
        let params = TxParams {
            chain_id: "greenfield_5600-1".into(),
            account_number: 15560,
            sequence: 2,
            fee: vec![bnb("2000000000000000")],
            gas_limit: 200_000,
            memo: String::new(),
            timeout_height: 0,
        };
        let from: Address = send.from_address.parse().unwrap();
        let digest = sign_digest(&params, from, &[&send]).unwrap();
        assert_eq!(hex::encode(digest), "b8c62654582ca96b37ca94966199682bf70ed934e740d2f874ff54675a0ac344");

        let signature = hex::decode("cb3a4684a991014a387a04a85b59227ebb79567c2025addcb296b4ca856e9f810d3b526f2a0d0fad6ad1b126b3b9516f8b3be020a7cca9c03ce3cf47f4199b6d1b").unwrap();
        assert_eq!(recover(&digest, &signature).unwrap(), from);
        let public_key: [u8; 33] = hex::decode("0279ef34064da10db0463c70480616ba020703ec3a45026def7bebd2082f5d6fc8")
            .unwrap()
            .try_into()
            .unwrap();
        let tx = assemble(&params, &public_key, &[&send], &signature);
        let expected = "CpQBCpEBChwvY29zbW9zLmJhbmsudjFiZXRhMS5Nc2dTZW5kEnEKKjB4OWQxZDk3YURGY2QzMjRCYmQ2MDNEMzg3MkJENzhlMDQwOTg1MTBiMRIqMHgyODBiMjdmMzY3NmRiMUM0NDc1RUUxMEY3NUQ1MTBFYjUyN2ZkMTU1GhcKA0JOQhIQMTAwMDAwMDAwMDAwMDAwMBJ5ClgKTQomL2Nvc21vcy5jcnlwdG8uZXRoLmV0aHNlY3AyNTZrMS5QdWJLZXkSIwohAnnvNAZNoQ2wRjxwSAYWugIHA+w6RQJt73vr0ggvXW/IEgUKAwjIBRgCEh0KFwoDQk5CEhAyMDAwMDAwMDAwMDAwMDAwEMCaDBpByzpGhKmRAUo4egSoW1kifrt5VnwgJa3cspa0yoVun4ENO1JvKg0PrWrRsSazuVFvizvgIKfMqcA8489H9BmbbRs=";
        assert_eq!(base64::engine::general_purpose::STANDARD.encode(&tx.bytes), expected);

        // The chain's side: the decoded transaction verifies for the sender, and not for
        // another account number.
        let received = decode(&tx.bytes).unwrap();
        assert_eq!(received.verify("greenfield_5600-1", 15560, &[&send]).unwrap(), from);
        assert!(received.verify("greenfield_5600-1", 15561, &[&send]).is_err());
        assert!(received.verify("greenfield_1017-1", 15560, &[&send]).is_err());
    }

    #[test]
    fn signing_checks_the_messages_signer() {
        let account =
            Account::from_private_key_hex("289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032").unwrap();
        let params = TxParams {
            chain_id: "greenfield_9000-121".into(),
            account_number: 3,
            sequence: 0,
            fee: vec![bnb("6000000000000")],
            gas_limit: 1200,
            memo: String::new(),
            timeout_height: 0,
        };
        let mine = MsgSend {
            from_address: account.address().to_string(),
            to_address: "0x280b27f3676db1C4475EE10F75D510Eb527fd155".into(),
            amount: vec![bnb("1")],
        };
        let tx = sign(&params, &account, &[&mine]).unwrap();
        assert_eq!(decode(&tx.bytes).unwrap().verify(&params.chain_id, 3, &[&mine]).unwrap(), account.address());
        let theirs = MsgSend { from_address: mine.to_address.clone(), ..mine };
        assert!(matches!(sign(&params, &account, &[&theirs]), Err(GreenfieldError::Transaction(_))));
        assert_eq!(eth_chain_id("greenfield_1017-1").unwrap(), 1017);
        assert!(eth_chain_id("greenfield").is_err());
    }
}
