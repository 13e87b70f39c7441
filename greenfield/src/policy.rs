//! Permission messages: `greenfield.storage.MsgPutPolicy` and `MsgDeletePolicy` with the
//! `greenfield.permission` types they carry (`Principal`, `Statement`), encoded per Greenfield's
//! protobuf definitions, and Greenfield resource names (GRN).
//!
//! Their EIP-712 shape follows Greenfield's JS SDK (`MsgPutPolicySDKTypeEIP712`): enums as their
//! names, timestamps as text (empty when unset), field lists in name order.

use serde_json::{Map, Value, json};

use crate::{
    eip712::{Field, Types},
    tx::Msg,
};

/// `greenfield.permission.ActionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Action {
    /// `ACTION_UPDATE_BUCKET_INFO`.
    UpdateBucketInfo = 1,
    /// `ACTION_DELETE_BUCKET`.
    DeleteBucket = 2,
    /// `ACTION_CREATE_OBJECT`.
    CreateObject = 3,
    /// `ACTION_DELETE_OBJECT`.
    DeleteObject = 4,
    /// `ACTION_COPY_OBJECT`.
    CopyObject = 5,
    /// `ACTION_GET_OBJECT`.
    GetObject = 6,
    /// `ACTION_EXECUTE_OBJECT`.
    ExecuteObject = 7,
    /// `ACTION_LIST_OBJECT`.
    ListObject = 8,
    /// `ACTION_TYPE_ALL`.
    All = 99,
}

impl Action {
    const ALL: [Action; 9] = [
        Action::UpdateBucketInfo,
        Action::DeleteBucket,
        Action::CreateObject,
        Action::DeleteObject,
        Action::CopyObject,
        Action::GetObject,
        Action::ExecuteObject,
        Action::ListObject,
        Action::All,
    ];

    /// The enum value's name.
    pub fn name(self) -> &'static str {
        match self {
            Action::UpdateBucketInfo => "ACTION_UPDATE_BUCKET_INFO",
            Action::DeleteBucket => "ACTION_DELETE_BUCKET",
            Action::CreateObject => "ACTION_CREATE_OBJECT",
            Action::DeleteObject => "ACTION_DELETE_OBJECT",
            Action::CopyObject => "ACTION_COPY_OBJECT",
            Action::GetObject => "ACTION_GET_OBJECT",
            Action::ExecuteObject => "ACTION_EXECUTE_OBJECT",
            Action::ListObject => "ACTION_LIST_OBJECT",
            Action::All => "ACTION_TYPE_ALL",
        }
    }

    /// The action of an encoded value.
    pub fn from_i32(v: i32) -> Option<Action> {
        Action::ALL.into_iter().find(|a| *a as i32 == v)
    }
}

/// `greenfield.permission.Effect`: allow (1) or deny (2).
pub const EFFECT_ALLOW: i32 = 1;
/// `EFFECT_DENY`.
pub const EFFECT_DENY: i32 = 2;
/// `greenfield.permission.PrincipalType`: an account (1).
pub const PRINCIPAL_TYPE_GNFD_ACCOUNT: i32 = 1;
/// `PRINCIPAL_TYPE_GNFD_GROUP`.
pub const PRINCIPAL_TYPE_GNFD_GROUP: i32 = 2;

fn effect_name(v: i32) -> &'static str {
    match v {
        EFFECT_ALLOW => "EFFECT_ALLOW",
        EFFECT_DENY => "EFFECT_DENY",
        _ => "EFFECT_UNSPECIFIED",
    }
}

fn principal_type_name(v: i32) -> &'static str {
    match v {
        PRINCIPAL_TYPE_GNFD_ACCOUNT => "PRINCIPAL_TYPE_GNFD_ACCOUNT",
        PRINCIPAL_TYPE_GNFD_GROUP => "PRINCIPAL_TYPE_GNFD_GROUP",
        _ => "PRINCIPAL_TYPE_UNSPECIFIED",
    }
}

/// The Greenfield resource name of a bucket: `grn:b::bucket`.
pub fn bucket_grn(bucket: &str) -> String {
    format!("grn:b::{bucket}")
}

/// The Greenfield resource name of an object: `grn:o::bucket/object`.
pub fn object_grn(bucket: &str, object: &str) -> String {
    format!("grn:o::{bucket}/{object}")
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `greenfield.common.UInt64Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    /// The value.
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `greenfield.permission.Principal`: who a policy is for.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Principal {
    /// `PRINCIPAL_TYPE_GNFD_ACCOUNT` or `PRINCIPAL_TYPE_GNFD_GROUP`.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The account's address (`0x…`) or the group's id.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Principal {
    /// An account principal.
    pub fn account(address: crate::Address) -> Principal {
        Principal { r#type: PRINCIPAL_TYPE_GNFD_ACCOUNT, value: address.to_string() }
    }

    fn eip712(&self) -> Value {
        json!({"type": principal_type_name(self.r#type), "value": self.value})
    }
}

/// `greenfield.permission.Statement`: what a principal may or may not do.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Statement {
    /// [`EFFECT_ALLOW`] or [`EFFECT_DENY`].
    #[prost(int32, tag = "1")]
    pub effect: i32,
    /// [`Action`] values.
    #[prost(int32, repeated, packed = "true", tag = "2")]
    pub actions: Vec<i32>,
    /// Object-name patterns, for bucket policies (`grn:o::bucket/prefix*`).
    #[prost(string, repeated, tag = "3")]
    pub resources: Vec<String>,
    /// When it lapses (never when unset).
    #[prost(message, optional, tag = "4")]
    pub expiration_time: Option<Timestamp>,
    /// Bytes it covers at most (no limit when unset).
    #[prost(message, optional, tag = "5")]
    pub limit_size: Option<UInt64Value>,
}

impl Statement {
    /// Allows `actions` (on `resources`, for bucket policies).
    pub fn allow(actions: &[Action], resources: Vec<String>) -> Statement {
        Statement {
            effect: EFFECT_ALLOW,
            actions: actions.iter().map(|a| *a as i32).collect(),
            resources,
            expiration_time: None,
            limit_size: None,
        }
    }

    /// Whether it names `action` (or all actions).
    pub fn covers(&self, action: Action) -> bool {
        self.actions.iter().any(|a| *a == action as i32 || *a == Action::All as i32)
    }

    fn eip712(&self) -> Value {
        let actions: Vec<&str> =
            self.actions.iter().map(|a| Action::from_i32(*a).map_or("ACTION_UNSPECIFIED", Action::name)).collect();
        json!({
            "actions": actions,
            "effect": effect_name(self.effect),
            "expiration_time": timestamp_text(self.expiration_time.as_ref()),
            "resources": self.resources,
        })
    }
}

/// A timestamp as RFC 3339 text, or "" when unset.
fn timestamp_text(t: Option<&Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn principal_type(name: &str) -> (String, Vec<Field>) {
    (format!("Type{name}Principal"), vec![Field::new("type", "string"), Field::new("value", "string")])
}

/// `greenfield.storage.MsgPutPolicy`: puts `statements` for `principal` on `resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgPutPolicy {
    /// The resource's owner, who signs.
    #[prost(string, tag = "1")]
    pub operator: String,
    /// Who the policy is for.
    #[prost(message, optional, tag = "2")]
    pub principal: Option<Principal>,
    /// The bucket's or object's GRN.
    #[prost(string, tag = "3")]
    pub resource: String,
    /// What it allows or denies.
    #[prost(message, repeated, tag = "4")]
    pub statements: Vec<Statement>,
    /// When the whole policy lapses (never when unset).
    #[prost(message, optional, tag = "5")]
    pub expiration_time: Option<Timestamp>,
}

impl Msg for MsgPutPolicy {
    fn type_url(&self) -> &'static str {
        "/greenfield.storage.MsgPutPolicy"
    }

    fn eip712_types(&self, name: &str) -> Types {
        let (principal, principal_fields) = principal_type(name);
        let statements = format!("Type{name}Statements");
        Types::from([
            (
                name.to_string(),
                vec![
                    Field::new("expiration_time", "string"),
                    Field::new("operator", "string"),
                    Field::new("principal", principal.clone()),
                    Field::new("resource", "string"),
                    Field::new("statements", format!("{statements}[]")),
                ],
            ),
            (principal, principal_fields),
            (
                statements,
                vec![
                    Field::new("actions", "string[]"),
                    Field::new("effect", "string"),
                    Field::new("expiration_time", "string"),
                    Field::new("resources", "string[]"),
                ],
            ),
        ])
    }

    fn eip712_value(&self) -> Map<String, Value> {
        let statements: Vec<Value> = self.statements.iter().map(Statement::eip712).collect();
        let mut m = Map::new();
        m.insert("expiration_time".into(), timestamp_text(self.expiration_time.as_ref()).into());
        m.insert("operator".into(), self.operator.clone().into());
        m.insert("principal".into(), self.principal.clone().unwrap_or_default().eip712());
        m.insert("resource".into(), self.resource.clone().into());
        m.insert("statements".into(), Value::Array(statements));
        m
    }

    fn signer(&self) -> &str {
        &self.operator
    }
}

/// `greenfield.storage.MsgDeletePolicy`: removes `principal`'s policy on `resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgDeletePolicy {
    /// The resource's owner, who signs.
    #[prost(string, tag = "1")]
    pub operator: String,
    /// Whose policy.
    #[prost(message, optional, tag = "2")]
    pub principal: Option<Principal>,
    /// The bucket's or object's GRN.
    #[prost(string, tag = "3")]
    pub resource: String,
}

impl Msg for MsgDeletePolicy {
    fn type_url(&self) -> &'static str {
        "/greenfield.storage.MsgDeletePolicy"
    }

    fn eip712_types(&self, name: &str) -> Types {
        let (principal, principal_fields) = principal_type(name);
        Types::from([
            (
                name.to_string(),
                vec![
                    Field::new("operator", "string"),
                    Field::new("principal", principal.clone()),
                    Field::new("resource", "string"),
                ],
            ),
            (principal, principal_fields),
        ])
    }

    fn eip712_value(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("operator".into(), self.operator.clone().into());
        m.insert("principal".into(), self.principal.clone().unwrap_or_default().eip712());
        m.insert("resource".into(), self.resource.clone().into());
        m
    }

    fn signer(&self) -> &str {
        &self.operator
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::Address;

    #[test]
    fn put_policy_encodes_per_the_protobuf_definition() {
        let owner: Address = "0x9d1d97aDFcd324Bbd603D3872BD78e04098510b1".parse().unwrap();
        let buyer: Address = "0x280b27f3676db1C4475EE10F75D510Eb527fd155".parse().unwrap();
        let msg = MsgPutPolicy {
            operator: owner.to_string(),
            principal: Some(Principal::account(buyer)),
            resource: object_grn("gata", "lake/a.parquet"),
            statements: vec![Statement::allow(&[Action::GetObject], vec![])],
            expiration_time: None,
        };
        let bytes = msg.encode_to_vec();
        // operator (1), principal (2: type 1, value), resource (3), statement (4: effect 1,
        // packed actions [6]).
        let mut expected = vec![0x0a, 42];
        expected.extend_from_slice(owner.to_string().as_bytes());
        expected.extend_from_slice(&[0x12, 46, 0x08, 0x01, 0x12, 42]);
        expected.extend_from_slice(buyer.to_string().as_bytes());
        expected.extend_from_slice(&[0x1a, 26]);
        expected.extend_from_slice(b"grn:o::gata/lake/a.parquet");
        expected.extend_from_slice(&[0x22, 5, 0x08, 0x01, 0x12, 0x01, 0x06]);
        assert_eq!(bytes, expected);
        assert_eq!(MsgPutPolicy::decode(bytes.as_slice()).unwrap(), msg);

        let value = msg.eip712_value();
        assert_eq!(value["principal"], json!({"type": "PRINCIPAL_TYPE_GNFD_ACCOUNT", "value": buyer.to_string()}));
        assert_eq!(value["statements"][0]["actions"], json!(["ACTION_GET_OBJECT"]));
        assert_eq!(value["expiration_time"], json!(""));
        assert_eq!(bucket_grn("gata"), "grn:b::gata");
    }
}
