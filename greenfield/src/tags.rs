//! Object metadata on chain: `greenfield.storage.MsgSetTag` with the `ResourceTags` it carries,
//! per Greenfield's protobuf definitions; its EIP-712 shape follows Greenfield's JS SDK
//! (`getMsgSetTagSDKTypeEIP712`). Setting tags replaces the resource's previous tags.

use serde_json::{Map, Value, json};

use crate::{
    eip712::{Field, Types},
    tx::Msg,
};

/// `greenfield.storage.ResourceTags.Tag`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Tag {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `greenfield.storage.ResourceTags`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResourceTags {
    /// The tags.
    #[prost(message, repeated, tag = "1")]
    pub tags: Vec<Tag>,
}

/// `greenfield.storage.MsgSetTag`: sets the tags of a bucket, object or group.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgSetTag {
    /// The resource's owner, who signs.
    #[prost(string, tag = "1")]
    pub operator: String,
    /// The resource's GRN.
    #[prost(string, tag = "2")]
    pub resource: String,
    /// The tags.
    #[prost(message, optional, tag = "3")]
    pub tags: Option<ResourceTags>,
}

impl MsgSetTag {
    /// Tags `resource` with `pairs`, signed by `operator`.
    pub fn new(operator: String, resource: String, pairs: &[(&str, String)]) -> MsgSetTag {
        let tags = pairs.iter().map(|(k, v)| Tag { key: (*k).to_string(), value: v.clone() }).collect();
        MsgSetTag { operator, resource, tags: Some(ResourceTags { tags }) }
    }
}

impl Msg for MsgSetTag {
    fn type_url(&self) -> &'static str {
        "/greenfield.storage.MsgSetTag"
    }

    fn eip712_types(&self, name: &str) -> Types {
        let tags = format!("Type{name}Tags");
        let tag = format!("Type{name}TagsTags");
        Types::from([
            (
                name.to_string(),
                vec![
                    Field::new("operator", "string"),
                    Field::new("resource", "string"),
                    Field::new("tags", tags.clone()),
                ],
            ),
            (tags, vec![Field::new("tags", format!("{tag}[]"))]),
            (tag, vec![Field::new("key", "string"), Field::new("value", "string")]),
        ])
    }

    fn eip712_value(&self) -> Map<String, Value> {
        let tags: Vec<Value> =
            self.tags.iter().flat_map(|t| &t.tags).map(|t| json!({"key": t.key, "value": t.value})).collect();
        let mut m = Map::new();
        m.insert("operator".into(), self.operator.clone().into());
        m.insert("resource".into(), self.resource.clone().into());
        m.insert("tags".into(), json!({ "tags": tags }));
        m
    }

    fn signer(&self) -> &str {
        &self.operator
    }
}
