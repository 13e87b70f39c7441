//! Where the mirror writes: any object store delta-rs can open (`file://`, `s3://`, `memory://`,
//! … with the storage options), or a Greenfield bucket (`greenfield://bucket/prefix`) through
//! its storage provider. Both answer the one question the mirror asks before an upload: is this
//! name absent, already holding these bytes, or holding other bytes?

use bytes::Bytes;
use deltalake::{
    DeltaTableBuilder,
    logstore::{ObjectStoreRef, object_store::ObjectStoreExt as _},
};
use gata_greenfield::{IntegrityHashes, SpClient, Upload, Visibility, integrity_hashes};
use sha2::{Digest, Sha256};
use url::Url;

use crate::{MirrorError, Result};

/// What the target holds under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Nothing.
    Absent,
    /// The same bytes (same SHA-256, or for Greenfield the same integrity hashes).
    Same,
    /// Other bytes, with their SHA-256 when known.
    Different(String),
}

/// An object as uploaded: its checksums, for the progress record.
#[derive(Debug, Clone)]
pub struct Checksums {
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// Greenfield's 7 integrity hashes (Greenfield targets only).
    pub integrity: Option<IntegrityHashes>,
}

/// A mirror destination.
#[derive(Debug, Clone)]
pub enum Target {
    /// An object store, rooted at `url`.
    Store {
        /// The root, as configured.
        url: Url,
        /// The store, rooted there.
        store: ObjectStoreRef,
    },
    /// A bucket on Greenfield, objects named `prefix` + path.
    Greenfield {
        /// `greenfield://bucket/prefix`.
        url: Url,
        /// The signed storage-provider client.
        client: Box<SpClient>,
        /// The bucket.
        bucket: String,
        /// Object-name prefix (empty or ending in `/`).
        prefix: String,
        /// Visibility of created objects.
        visibility: Visibility,
    },
}

impl Target {
    /// An object-store target at `url`, reached with `options`.
    pub fn store(url: Url, options: &std::collections::BTreeMap<String, String>) -> Result<Target> {
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| MirrorError::Config(format!("{url}: not an absolute path")))?;
            std::fs::create_dir_all(&path).map_err(|e| MirrorError::Config(format!("{url}: {e}")))?;
        }
        let store = DeltaTableBuilder::from_url(url.clone())
            .and_then(|b| {
                b.with_storage_options(options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).build_storage()
            })
            .map_err(|source| MirrorError::Delta { what: format!("target {url}"), source: Box::new(source) })?
            .object_store(None);
        Ok(Target::Store { url, store })
    }

    /// A Greenfield target: `greenfield://bucket/prefix` through `client`.
    pub fn greenfield(url: Url, client: SpClient, visibility: Visibility) -> Result<Target> {
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
            MirrorError::Config(format!("{url}: a Greenfield target is greenfield://<bucket>/<prefix>"))
        })?;
        let mut prefix = url.path().trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Target::Greenfield { bucket: bucket.to_string(), prefix, client: Box::new(client), visibility, url })
    }

    /// The target's URL: the key its progress is recorded under.
    pub fn url(&self) -> &Url {
        match self {
            Target::Store { url, .. } | Target::Greenfield { url, .. } => url,
        }
    }

    /// A Greenfield target's bucket and the object name of `path` there; `None` for an object
    /// store.
    pub fn greenfield_object(&self, path: &str) -> Option<(&str, String)> {
        match self {
            Target::Store { .. } => None,
            Target::Greenfield { bucket, prefix, .. } => Some((bucket, object_name(prefix, path))),
        }
    }

    /// The checksums this target keeps for `bytes`.
    pub async fn checksums(&self, bytes: &Bytes) -> Result<Checksums> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let integrity = match self {
            Target::Store { .. } => None,
            Target::Greenfield { .. } => {
                let bytes = bytes.clone();
                let hashes = tokio::task::spawn_blocking(move || integrity_hashes(&bytes))
                    .await
                    .map_err(|e| MirrorError::Config(format!("hashing task: {e}")))??;
                Some(hashes)
            }
        };
        Ok(Checksums { sha256, integrity })
    }

    /// What the target holds at `path`, compared with `checksums`.
    pub async fn presence(&self, path: &str, checksums: &Checksums) -> Result<Presence> {
        match self {
            Target::Store { store, .. } => {
                let location = deltalake::Path::from(path);
                match store.head(&location).await {
                    Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(Presence::Absent),
                    Err(source) => Err(MirrorError::Store { operation: "head", path: path.into(), source }),
                    Ok(_) => {
                        let held = self.get(path).await?.unwrap_or_default();
                        let found: [u8; 32] = Sha256::digest(&held).into();
                        Ok(if found == checksums.sha256 {
                            Presence::Same
                        } else {
                            Presence::Different(hex::encode(found))
                        })
                    }
                }
            }
            Target::Greenfield { client, bucket, prefix, .. } => {
                match client.head_object(bucket, &object_name(prefix, path)).await? {
                    None => Ok(Presence::Absent),
                    Some(info) => {
                        let wanted = checksums.integrity.as_ref().map(|h| h.hashes.clone());
                        Ok(if info.checksum_bytes() == wanted && info.payload_size == checksums_size(checksums) {
                            Presence::Same
                        } else {
                            Presence::Different(info.checksums.first().cloned().unwrap_or_default())
                        })
                    }
                }
            }
        }
    }

    /// Writes `bytes` at `path`.
    pub async fn put(&self, path: &str, bytes: Bytes, content_type: &str) -> Result<()> {
        match self {
            Target::Store { store, .. } => {
                store.put(&deltalake::Path::from(path), bytes.into()).await.map_err(|source| MirrorError::Store {
                    operation: "put",
                    path: path.into(),
                    source,
                })?;
            }
            Target::Greenfield { client, bucket, prefix, visibility, .. } => {
                let upload = Upload::Delegated { visibility: *visibility, is_update: false };
                client.put_object(bucket, &object_name(prefix, path), bytes, content_type, &upload).await?;
            }
        }
        Ok(())
    }

    /// The bytes at `path`, `None` when absent.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        match self {
            Target::Store { store, .. } => read(store, path).await,
            Target::Greenfield { client, bucket, prefix, .. } => {
                let name = object_name(prefix, path);
                match client.get_object(bucket, &name, None).await {
                    Err(gata_greenfield::GreenfieldError::Refused { status: 404, .. }) => Ok(None),
                    other => Ok(Some(other?)),
                }
            }
        }
    }

    /// Greenfield's integrity hashes the provider recorded for `path` (Greenfield targets).
    pub async fn recorded_integrity(&self, path: &str) -> Result<Option<Vec<[u8; 32]>>> {
        match self {
            Target::Store { .. } => Ok(None),
            Target::Greenfield { client, bucket, prefix, .. } => {
                Ok(client.head_object(bucket, &object_name(prefix, path)).await?.and_then(|i| i.checksum_bytes()))
            }
        }
    }
}

/// The bytes at `path` in `store`, `None` when absent.
pub async fn read(store: &ObjectStoreRef, path: &str) -> Result<Option<Bytes>> {
    match store.get(&deltalake::Path::from(path)).await {
        Err(deltalake::ObjectStoreError::NotFound { .. }) => Ok(None),
        Err(source) => Err(MirrorError::Store { operation: "get", path: path.into(), source }),
        Ok(got) => got.bytes().await.map(Some).map_err(|source| MirrorError::Store {
            operation: "get",
            path: path.into(),
            source,
        }),
    }
}

/// The object name of lake path `path` under `prefix`.
fn object_name(prefix: &str, path: &str) -> String {
    format!("{prefix}{path}")
}

fn checksums_size(checksums: &Checksums) -> u64 {
    checksums.integrity.as_ref().map_or(0, |h| h.size)
}
