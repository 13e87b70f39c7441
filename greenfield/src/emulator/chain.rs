//! The emulated chain's gateway: account numbers and sequences, object metadata (tags
//! included), and broadcasts of policy and tag transactions. A transaction is decoded, its EIP-712 signature checked against the signer's
//! account number and sequence as the chain checks it, its messages checked (the operator owns
//! the bucket or object; the principal is an account; object policies name no resources, bucket
//! policies at most 5 object patterns of their own bucket) and then applied all together.
//! Refusals answer like the chain in synchronous mode: HTTP 200 with a non-zero `code` and the
//! reason in `raw_log`; an undecodable request is a 400.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use prost::Message as _;
use serde::Deserialize;
use serde_json::json;

use super::{Chain, Emulator};
use crate::{
    Address,
    policy::{MsgDeletePolicy, MsgPutPolicy, PRINCIPAL_TYPE_GNFD_ACCOUNT, Principal},
    tags::MsgSetTag,
    tx::{self, Msg, proto::Any},
};

/// Cosmos SDK error codes the emulator answers with.
const CODE_UNAUTHORIZED: u32 = 4;
const CODE_UNKNOWN_REQUEST: u32 = 6;
const CODE_INVALID_REQUEST: u32 = 18;
const CODE_WRONG_SEQUENCE: u32 = 32;

/// Statements a bucket policy may name object patterns in, at most.
const MAX_RESOURCES: usize = 5;

pub(super) async fn account(State(emulator): State<Emulator>, Path(address): Path<String>) -> Response {
    let Ok(address) = address.parse::<Address>() else {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 3, "message": format!("invalid address {address}")})))
            .into_response();
    };
    let state = Emulator::account_state(&mut emulator.chain(), address);
    Json(json!({"account": {
        "@type": "/cosmos.auth.v1beta1.BaseAccount",
        "address": address.to_string(),
        "account_number": state.number.to_string(),
        "sequence": state.sequence.to_string(),
    }}))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct BroadcastBody {
    tx_bytes: String,
}

/// `GET /greenfield/storage/head_object/{bucket}/{object}`: the object's chain record.
pub(super) async fn head_object(
    State(emulator): State<Emulator>,
    Path((bucket, object)): Path<(String, String)>,
) -> Response {
    let chain = emulator.chain();
    let Some(stored) = chain.buckets.get(&bucket).and_then(|b| b.objects.get(&object)) else {
        let message = format!("No such object: {bucket}/{object}");
        return (StatusCode::NOT_FOUND, Json(json!({"code": 5, "message": message}))).into_response();
    };
    let tags: Vec<_> = stored.tags.iter().map(|t| json!({"key": t.key, "value": t.value})).collect();
    Json(json!({"object_info": {
        "owner": stored.info.owner,
        "bucket_name": bucket,
        "object_name": object,
        "id": stored.info.id.to_string(),
        "payload_size": stored.info.payload_size.to_string(),
        "visibility": stored.info.visibility,
        "content_type": stored.info.content_type,
        "object_status": stored.info.object_status,
        "checksums": stored.info.checksums,
        "tags": {"tags": tags},
    }}))
    .into_response()
}

/// A decoded message the emulator applies.
enum Applied {
    Put(MsgPutPolicy),
    Delete(MsgDeletePolicy),
    SetTag(MsgSetTag),
}

impl Applied {
    fn decode(any: &Any) -> Result<Applied, String> {
        match any.type_url.as_str() {
            "/greenfield.storage.MsgPutPolicy" => {
                MsgPutPolicy::decode(any.value.as_slice()).map(Applied::Put).map_err(|e| e.to_string())
            }
            "/greenfield.storage.MsgDeletePolicy" => {
                MsgDeletePolicy::decode(any.value.as_slice()).map(Applied::Delete).map_err(|e| e.to_string())
            }
            "/greenfield.storage.MsgSetTag" => {
                MsgSetTag::decode(any.value.as_slice()).map(Applied::SetTag).map_err(|e| e.to_string())
            }
            other => Err(format!("unrecognized message type {other}")),
        }
    }

    fn msg(&self) -> &dyn Msg {
        match self {
            Applied::Put(m) => m,
            Applied::Delete(m) => m,
            Applied::SetTag(m) => m,
        }
    }
}

pub(super) async fn broadcast(State(emulator): State<Emulator>, Json(body): Json<BroadcastBody>) -> Response {
    use base64::Engine as _;
    let invalid =
        |message: String| (StatusCode::BAD_REQUEST, Json(json!({"code": 3, "message": message}))).into_response();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&body.tx_bytes) else {
        return invalid("tx_bytes is not base64".into());
    };
    let received = match tx::decode(&bytes) {
        Ok(r) => r,
        Err(e) => return invalid(e.to_string()),
    };
    let txhash = tx::tx_hash(&bytes);
    let answer = |code: u32, log: String| {
        Json(json!({"tx_response": {"txhash": txhash, "code": code, "raw_log": log, "height": "0"}})).into_response()
    };
    let applied: Vec<Applied> = match received.messages.iter().map(Applied::decode).collect() {
        Ok(a) => a,
        Err(reason) => return answer(CODE_UNKNOWN_REQUEST, reason),
    };
    if applied.is_empty() {
        return answer(CODE_INVALID_REQUEST, "no messages".into());
    }
    let msgs: Vec<&dyn Msg> = applied.iter().map(Applied::msg).collect();
    let mut chain = emulator.chain();
    let Ok(key) = k256::ecdsa::VerifyingKey::from_sec1_bytes(&received.public_key) else {
        return answer(CODE_UNAUTHORIZED, "the public key is no secp256k1 point".into());
    };
    let holder = Address::of(&key);
    let state = Emulator::account_state(&mut chain, holder);
    if received.sequence != state.sequence {
        return answer(
            CODE_WRONG_SEQUENCE,
            format!("account sequence mismatch, expected {}, got {}", state.sequence, received.sequence),
        );
    }
    if let Err(e) = received.verify(&emulator.chain_id, state.number, &msgs) {
        return answer(CODE_UNAUTHORIZED, format!("signature verification failed: {e}"));
    }
    for msg in &applied {
        if let Err(reason) = check(&chain, holder, msg) {
            return answer(CODE_UNAUTHORIZED, reason);
        }
    }
    for msg in applied {
        match msg {
            Applied::Put(m) => {
                let Some(principal) = principal_account(m.principal.as_ref()) else { continue };
                chain.policies.insert((m.resource, principal), m.statements);
            }
            Applied::Delete(m) => {
                let Some(principal) = principal_account(m.principal.as_ref()) else { continue };
                chain.policies.remove(&(m.resource, principal));
            }
            Applied::SetTag(m) => {
                let Some((bucket, object)) = object_of(&m.resource) else { continue };
                if let Some(stored) = chain.buckets.get_mut(bucket).and_then(|b| b.objects.get_mut(object)) {
                    stored.tags = m.tags.map(|t| t.tags).unwrap_or_default();
                }
            }
        }
    }
    if let Some(account) = chain.accounts.get_mut(&holder) {
        account.sequence += 1;
    }
    answer(0, String::new())
}

fn principal_account(principal: Option<&Principal>) -> Option<Address> {
    principal.filter(|p| p.r#type == PRINCIPAL_TYPE_GNFD_ACCOUNT).and_then(|p| p.value.parse().ok())
}

/// The bucket and object an object GRN names.
fn object_of(resource: &str) -> Option<(&str, &str)> {
    resource.strip_prefix("grn:o::").and_then(|r| r.split_once('/'))
}

/// Tags per resource, at most.
const MAX_TAGS: usize = 4;

/// Why `msg` by `signer` does not fit the chain's state, if it does not: the signer owns the
/// resource, then what each message asks of its own fields.
fn check(chain: &Chain, signer: Address, msg: &Applied) -> Result<(), String> {
    let resource = match msg {
        Applied::Put(m) => &m.resource,
        Applied::Delete(m) => &m.resource,
        Applied::SetTag(m) => &m.resource,
    };
    let (bucket, object) = if let Some(bucket) = resource.strip_prefix("grn:b::") {
        (bucket, None)
    } else if let Some((bucket, object)) = object_of(resource) {
        (bucket, Some(object))
    } else {
        return Err(format!("{resource} is no bucket or object resource name"));
    };
    let entry = chain.buckets.get(bucket).ok_or_else(|| format!("no such bucket {bucket}"))?;
    let owner = match object {
        None => entry.owner,
        Some(object) => {
            let stored = entry.objects.get(object).ok_or_else(|| format!("no such object {bucket}/{object}"))?;
            stored.info.owner.parse().ok()
        }
    };
    if owner != Some(signer) && entry.owner != Some(signer) {
        return Err(format!("{signer} does not own {resource}"));
    }
    let account_principal = |principal: Option<&Principal>| match principal_account(principal) {
        Some(_) => Ok(()),
        None => Err("the principal must be a Greenfield account".to_string()),
    };
    match msg {
        Applied::Put(m) => {
            account_principal(m.principal.as_ref())?;
            if m.statements.is_empty() {
                return Err("a policy has at least one statement".into());
            }
            let own = format!("grn:o::{bucket}/");
            for statement in &m.statements {
                if object.is_some() && !statement.resources.is_empty() {
                    return Err("an object policy's statements name no resources".into());
                }
                if statement.resources.len() > MAX_RESOURCES {
                    return Err(format!("a statement names at most {MAX_RESOURCES} resources"));
                }
                if let Some(bad) =
                    statement.resources.iter().find(|r| !r.starts_with(&own) || regex::Regex::new(r).is_err())
                {
                    return Err(format!("{bad} is no object pattern of bucket {bucket}"));
                }
            }
        }
        Applied::Delete(m) => account_principal(m.principal.as_ref())?,
        Applied::SetTag(m) => {
            if object.is_none() {
                return Err(format!("{}: the emulator tags objects only", m.resource));
            }
            let tags = m.tags.as_ref().map_or(&[][..], |t| t.tags.as_slice());
            if tags.len() > MAX_TAGS || tags.iter().any(|t| t.key.is_empty() || t.key.len() > 32 || t.value.len() > 64)
            {
                return Err(format!("at most {MAX_TAGS} tags, keys of 1 to 32 and values of up to 64 bytes"));
            }
        }
    }
    Ok(())
}
