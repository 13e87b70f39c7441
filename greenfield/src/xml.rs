//! The XML bodies storage providers answer with (the shapes greenfield-go-sdk decodes): errors,
//! object metadata and object listings. Checksums travel as base64.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

/// `<Error><Code>…</Code><Message>…</Message></Error>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "Error", rename_all = "PascalCase")]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: String,
    /// Why.
    pub message: String,
}

/// An object as the chain records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectInfo {
    /// The object's owner.
    pub owner: String,
    /// Who created it (the uploader, or the storage provider for a delegated upload).
    pub creator: String,
    /// The bucket.
    pub bucket_name: String,
    /// The object name.
    pub object_name: String,
    /// The object's id on chain.
    pub id: u64,
    /// Size in bytes.
    pub payload_size: u64,
    /// `VISIBILITY_TYPE_PRIVATE`, `VISIBILITY_TYPE_PUBLIC_READ` or `VISIBILITY_TYPE_INHERIT`.
    pub visibility: String,
    /// The content type given at upload.
    pub content_type: String,
    /// Creation time, Unix seconds.
    pub create_at: i64,
    /// `OBJECT_STATUS_CREATED` until the upload completes, then `OBJECT_STATUS_SEALED`.
    pub object_status: String,
    /// The 7 integrity hashes, base64.
    #[serde(default)]
    pub checksums: Vec<String>,
}

impl ObjectInfo {
    /// The integrity hashes, decoded.
    pub fn checksum_bytes(&self) -> Option<Vec<[u8; 32]>> {
        self.checksums.iter().map(|c| STANDARD.decode(c).ok()?.try_into().ok()).collect()
    }

    /// Encodes integrity hashes as this record carries them.
    pub fn encode_checksums(hashes: &[[u8; 32]]) -> Vec<String> {
        hashes.iter().map(|h| STANDARD.encode(h)).collect()
    }
}

/// `GET /{bucket}/{object}?object-meta`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "GfSpGetObjectMetaResponse", rename_all = "PascalCase")]
pub struct ObjectMetaBody {
    /// The object.
    pub object: ObjectMeta,
}

/// One object of a metadata answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectMeta {
    /// What the chain records.
    pub object_info: ObjectInfo,
    /// Whether the object was deleted.
    #[serde(default)]
    pub removed: bool,
}

/// `GET /{bucket}?prefix=…&max-keys=…&continuation-token=…`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "GfSpListObjectsByBucketNameResponse", rename_all = "PascalCase")]
pub struct ListBody {
    /// The objects of this page.
    #[serde(default)]
    pub objects: Vec<ObjectMeta>,
    /// How many objects this page holds.
    pub key_count: u64,
    /// Whether more pages follow.
    pub is_truncated: bool,
    /// The token for the next page (base64 of the last name).
    #[serde(default)]
    pub next_continuation_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_through_xml() {
        let info = ObjectInfo {
            owner: "0x1".into(),
            creator: "0x2".into(),
            bucket_name: "b".into(),
            object_name: "o/x".into(),
            id: 7,
            payload_size: 3,
            visibility: "VISIBILITY_TYPE_PRIVATE".into(),
            content_type: "application/octet-stream".into(),
            create_at: 1,
            object_status: "OBJECT_STATUS_SEALED".into(),
            checksums: ObjectInfo::encode_checksums(&[[1; 32], [2; 32]]),
        };
        let body = ListBody {
            objects: vec![ObjectMeta { object_info: info.clone(), removed: false }; 2],
            key_count: 2,
            is_truncated: true,
            next_continuation_token: "bw==".into(),
        };
        let text = quick_xml::se::to_string(&body).unwrap();
        assert!(text.starts_with("<GfSpListObjectsByBucketNameResponse>"), "{text}");
        let back: ListBody = quick_xml::de::from_str(&text).unwrap();
        assert_eq!(back.objects.len(), 2);
        assert_eq!(back.objects[1].object_info, info);
        assert_eq!(back.objects[0].object_info.checksum_bytes().unwrap(), vec![[1; 32], [2; 32]]);
        let meta: ObjectMetaBody = quick_xml::de::from_str(
            &quick_xml::se::to_string(&ObjectMetaBody { object: back.objects[0].clone() }).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.object.object_info, info);
    }
}
