//! Where a model's files come from: a directory an operator provides, or the shipped
//! `models/tiny-clip`, compiled into the binary so that the DVA runs from any working directory
//! with nothing beside the executable.

use std::{borrow::Cow, path::PathBuf};

use sha2::{Digest, Sha256};

use crate::{DvaError, Result};

/// The shipped model's files, by the names its card uses.
const SHIPPED: [(&str, &[u8]); 4] = [
    ("model.json", include_bytes!("../../models/tiny-clip/model.json")),
    ("image.onnx", include_bytes!("../../models/tiny-clip/image.onnx")),
    ("text.onnx", include_bytes!("../../models/tiny-clip/text.onnx")),
    ("bpe_simple_vocab_16e6.txt.gz", include_bytes!("../../models/tiny-clip/bpe_simple_vocab_16e6.txt.gz")),
];

/// A model directory's contents: its `model.json` card, encoders and vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// Files under a directory (a real CLIP or DFN export, or a retrained tiny-clip).
    Dir(PathBuf),
    /// `models/tiny-clip` as it was when this binary was built.
    Shipped,
}

impl ModelSource {
    /// The configured directory, or the shipped model when none is configured.
    pub fn from_config(dir: Option<PathBuf>) -> ModelSource {
        dir.map_or(ModelSource::Shipped, ModelSource::Dir)
    }

    /// The bytes of `file` (a name relative to the model directory).
    pub fn read(&self, file: &str) -> Result<Cow<'static, [u8]>> {
        match self {
            ModelSource::Dir(dir) => {
                let path = dir.join(file);
                std::fs::read(&path).map(Cow::Owned).map_err(|e| DvaError::Model(format!("{}: {e}", path.display())))
            }
            ModelSource::Shipped => SHIPPED
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, bytes)| Cow::Borrowed(*bytes))
                .ok_or_else(|| DvaError::Model(format!("the shipped model has no file {file:?}"))),
        }
    }
}

impl ModelSource {
    /// The bytes of `file`, checked against the SHA-256 (hex) a card gives for it.
    pub fn read_checked(&self, file: &str, sha256: &str) -> Result<Cow<'static, [u8]>> {
        let bytes = self.read(file)?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(DvaError::Model(format!("{file}: SHA-256 {actual} is not the card's {sha256}")));
        }
        Ok(bytes)
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
            ModelSource::Shipped => f.write_str("the shipped models/tiny-clip (built into this binary)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_is_the_repository_copy() {
        let dir = ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-clip"));
        for (name, _) in SHIPPED {
            assert_eq!(ModelSource::Shipped.read(name).expect("shipped"), dir.read(name).expect("on disk"), "{name}");
        }
        assert!(ModelSource::Shipped.read("../Cargo.toml").is_err());
    }
}
