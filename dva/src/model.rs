//! A CLIP-style model: the model card, the two encoders (on ONNX Runtime or tract), batched
//! embeddings (L2-normalised) and cosine scores.
//!
//! The contract a model directory meets (what `models/tiny-clip/` ships, and what an operator
//! provides to run a real OpenAI CLIP or DFN2B-CLIP export instead): a `model.json` card naming
//! the image encoder (`float32 [batch, 3, size, size]` in, `float32 [batch, dim]` out), the text
//! encoder (`int64` or `int32 [batch, context]` ids in, optionally an attention mask, `float32
//! [batch, dim]` out), the preprocessing constants and the BPE vocabulary file, with the SHA-256
//! of each ONNX file, checked when the model is opened.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    DvaError, Result,
    engine::{Encoder, Engine, Input, Output},
    preprocess::{Preprocessing, Rgb},
    source::ModelSource,
    tokenizer::{CONTEXT_LENGTH, Tokenizer},
};

/// The image encoder as the model card describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEncoderCard {
    /// ONNX file, relative to the model directory.
    pub file: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Input name (`pixel_values`).
    pub input: String,
    /// Output name (`image_embeds`).
    pub output: String,
    /// Side of the square input.
    pub size: u32,
    /// Resize rule; only `shortest_side_bicubic` (CLIP's) is implemented.
    pub resize: String,
    /// Crop rule; only `center`.
    pub crop: String,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel std.
    pub std: [f32; 3],
}

/// The text encoder as the model card describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextEncoderCard {
    /// ONNX file, relative to the model directory.
    pub file: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Input name of the token ids (`input_ids`).
    pub input: String,
    /// `int64` or `int32`.
    pub input_type: String,
    /// Name of an attention-mask input (1 for real tokens), when the export has one.
    #[serde(default)]
    pub attention_mask: Option<String>,
    /// Output name (`text_embeds`).
    pub output: String,
    /// Ids per caption; must be 77.
    pub context_length: usize,
    /// Gzipped BPE merges, relative to the model directory.
    pub vocabulary: String,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Model id (`gata/tiny-clip-64`).
    pub id: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Image encoder.
    pub image: ImageEncoderCard,
    /// Text encoder.
    pub text: TextEncoderCard,
    /// Embedding size of both encoders.
    pub embedding_dim: usize,
    /// Suggested accept threshold on the cosine score.
    pub threshold: f32,
}

impl ModelCard {
    /// Reads and checks the card (`model.json`) of `source`.
    pub fn read(source: &ModelSource) -> Result<ModelCard> {
        let bytes = source.read("model.json")?;
        let card: ModelCard =
            serde_json::from_slice(&bytes).map_err(|e| DvaError::Model(format!("{source}/model.json: {e}")))?;
        check_card(&card)?;
        Ok(card)
    }
}

/// A loaded CLIP-style model.
pub struct Clip {
    card: ModelCard,
    /// SHA-256 over both encoders' hashes: what a score says it was made with.
    fingerprint: String,
    preprocessing: Preprocessing,
    tokenizer: Tokenizer,
    image: Encoder,
    text: Encoder,
    engine: &'static str,
    provider: &'static str,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip")
            .field("id", &self.card.id)
            .field("engine", &self.engine)
            .field("provider", &self.provider)
            .finish()
    }
}

impl Clip {
    /// Opens the model of `source` (its `model.json`, encoders and vocabulary) on `engine`,
    /// checking each encoder against the card's SHA-256.
    pub fn open(engine: Engine, source: &ModelSource, threads: usize) -> Result<Clip> {
        let card = ModelCard::read(source)?;
        let load = |file: &str, expected: &str| -> Result<(Encoder, &'static str)> {
            Encoder::load(engine, file, &source.read_checked(file, expected)?, threads)
        };
        let (image, provider) = load(&card.image.file, &card.image.sha256)?;
        let (text, _) = load(&card.text.file, &card.text.sha256)?;
        let fingerprint = hex::encode(Sha256::digest(format!("{}{}", card.image.sha256, card.text.sha256)));
        let tokenizer = Tokenizer::from_gzip(&source.read(&card.text.vocabulary)?)
            .map_err(|e| DvaError::Model(format!("{}: {e}", card.text.vocabulary)))?;
        let preprocessing = Preprocessing { size: card.image.size, mean: card.image.mean, std: card.image.std };
        Ok(Clip { card, fingerprint, preprocessing, tokenizer, image, text, engine: engine.name(), provider })
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// SHA-256 identifying the exact encoders.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The engine that runs the encoders (`onnxruntime`, `tract`).
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The execution provider in use (`CPUExecutionProvider`, `CUDAExecutionProvider`,
    /// `tract-cpu`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The preprocessing constants.
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// L2-normalised embeddings of preprocessed images (each `3 x size x size`), in one batch.
    pub fn embed_images(&self, tensors: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if tensors.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.preprocessing.size as usize;
        let data: Vec<f32> = tensors.iter().flatten().copied().collect();
        let input = Input::F32(vec![tensors.len(), 3, size, size], data);
        let output = self.image.run(vec![(self.card.image.input.as_str(), input)], &self.card.image.output)?;
        rows(output, tensors.len(), self.card.embedding_dim)
    }

    /// L2-normalised embeddings of captions, in one batch.
    pub fn embed_texts(&self, captions: &[&str]) -> Result<Vec<Vec<f32>>> {
        if captions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = captions.iter().flat_map(|c| self.tokenizer.tokenize(c)).collect();
        let shape = vec![captions.len(), CONTEXT_LENGTH];
        let mask: Vec<i64> = ids.iter().map(|id| i64::from(*id != 0)).collect();
        let ids = if self.card.text.input_type == "int32" {
            Input::I32(shape.clone(), ids.iter().map(|v| *v as i32).collect())
        } else {
            Input::I64(shape.clone(), ids)
        };
        let mut inputs = vec![(self.card.text.input.as_str(), ids)];
        if let Some(name) = &self.card.text.attention_mask {
            inputs.push((name.as_str(), Input::I64(shape, mask)));
        }
        let output = self.text.run(inputs, &self.card.text.output)?;
        rows(output, captions.len(), self.card.embedding_dim)
    }
}

/// Cosine similarity of two L2-normalised embeddings, in [-1, 1].
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>().clamp(-1.0, 1.0)
}

fn rows((shape, data): Output, n: usize, dim: usize) -> Result<Vec<Vec<f32>>> {
    if shape != [n, dim] {
        return Err(DvaError::Model(format!("encoder answered shape {shape:?}; expected [{n}, {dim}]")));
    }
    Ok(data
        .chunks(dim)
        .map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            row.iter().map(|v| v / norm).collect()
        })
        .collect())
}

fn check_card(card: &ModelCard) -> Result<()> {
    let mut problems = Vec::new();
    if card.image.resize != "shortest_side_bicubic" {
        problems.push(format!("image.resize {:?}: only shortest_side_bicubic is implemented", card.image.resize));
    }
    if card.image.crop != "center" {
        problems.push(format!("image.crop {:?}: only center is implemented", card.image.crop));
    }
    if card.text.context_length != CONTEXT_LENGTH {
        problems
            .push(format!("text.context_length {}: CLIP's tokenizer makes {CONTEXT_LENGTH}", card.text.context_length));
    }
    if !matches!(card.text.input_type.as_str(), "int64" | "int32") {
        problems.push(format!("text.input_type {:?}: int64 or int32", card.text.input_type));
    }
    if card.embedding_dim == 0 || card.image.size == 0 || card.image.std.iter().any(|s| *s <= 0.0) {
        problems.push("embedding_dim, image.size and image.std must be positive".into());
    }
    if problems.is_empty() { Ok(()) } else { Err(DvaError::Model(format!("model.json: {}", problems.join("; ")))) }
}

/// Scores one decoded image against its caption with `clip`.
pub fn score_pair(clip: &Clip, image: &Rgb, caption: &str) -> Result<f32> {
    let tensor = clip.preprocessing().tensor(image);
    let img = clip.embed_images(&[tensor])?;
    let txt = clip.embed_texts(&[caption])?;
    Ok(cosine(&img[0], &txt[0]))
}
