//! A CLIP-style model on ONNX Runtime: the model card, the two encoder sessions, batched
//! embeddings (L2-normalised) and cosine scores.
//!
//! The contract a model directory meets (what `models/tiny-clip/` ships, and what an operator
//! provides to run a real OpenAI CLIP or DFN2B-CLIP export instead): a `model.json` card naming
//! the image encoder (`float32 [batch, 3, size, size]` in, `float32 [batch, dim]` out), the text
//! encoder (`int64` or `int32 [batch, context]` ids in, optionally an attention mask, `float32
//! [batch, dim]` out), the preprocessing constants and the BPE vocabulary file, with the SHA-256
//! of each ONNX file, checked when the model is opened.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use ort::{
    environment::Environment,
    session::{Session, builder::GraphOptimizationLevel},
    value::Tensor,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    DvaError, Result,
    preprocess::{Preprocessing, Rgb},
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
    /// Reads and checks the card (`model.json`) in `dir`.
    pub fn read(dir: &Path) -> Result<ModelCard> {
        let card_path = dir.join("model.json");
        let text = std::fs::read_to_string(&card_path)
            .map_err(|e| DvaError::Model(format!("{}: {e}", card_path.display())))?;
        let card: ModelCard =
            serde_json::from_str(&text).map_err(|e| DvaError::Model(format!("{}: {e}", card_path.display())))?;
        check_card(&card)?;
        Ok(card)
    }
}

/// Where to run the encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// CUDA when the loaded ONNX Runtime has it and a GPU answers; CPU otherwise (logged).
    Cuda,
}

static RUNTIME: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from the shared library at `lib` (once per process; later calls reuse
/// the first library).
pub fn load_runtime(lib: &Path) -> Result<&'static Environment> {
    let env = RUNTIME.get_or_init(|| {
        let builder =
            ort::init_from(lib).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
        builder.with_name("gata-dva").build().map_err(|e| format!("ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| DvaError::Runtime(e.clone()))
}

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH`, else the one the `onnxruntime` Python
/// package installs (`pip install onnxruntime`).
pub fn discover_runtime() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let probe = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"])
        .output();
    let dir = match probe {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => {
            return Err(DvaError::Runtime(
                "ONNX Runtime not found: set dva.onnxruntime (or ORT_DYLIB_PATH) to libonnxruntime.so, or `pip install onnxruntime`".into(),
            ));
        }
    };
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| DvaError::Runtime(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    libs.sort();
    libs.pop().ok_or_else(|| DvaError::Runtime(format!("no libonnxruntime.so in {}", dir.display())))
}

/// A loaded CLIP-style model.
pub struct Clip {
    card: ModelCard,
    /// SHA-256 over both encoders' hashes: what a score says it was made with.
    fingerprint: String,
    preprocessing: Preprocessing,
    tokenizer: Tokenizer,
    image: Mutex<Session>,
    text: Mutex<Session>,
    provider: &'static str,
}

impl std::fmt::Debug for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clip").field("id", &self.card.id).field("provider", &self.provider).finish()
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| DvaError::Model(format!("{}: {e}", path.display())))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl Clip {
    /// Opens the model in `dir` (its `model.json`, encoders and vocabulary) on `env`, placing
    /// the encoders on `provider`.
    pub fn open(env: &Environment, dir: &Path, provider: Provider, threads: usize) -> Result<Clip> {
        let card = ModelCard::read(dir)?;
        for (file, expected) in [(&card.image.file, &card.image.sha256), (&card.text.file, &card.text.sha256)] {
            let actual = sha256_file(&dir.join(file))?;
            if &actual != expected {
                return Err(DvaError::Model(format!("{file}: SHA-256 {actual} is not the card's {expected}")));
            }
        }
        let fingerprint = hex::encode(Sha256::digest(format!("{}{}", card.image.sha256, card.text.sha256)));
        let (image, provider_used) = session(env, &dir.join(&card.image.file), provider, threads)?;
        let (text_session, _) = session(env, &dir.join(&card.text.file), provider, threads)?;
        let tokenizer = Tokenizer::from_file(&dir.join(&card.text.vocabulary))?;
        let preprocessing = Preprocessing { size: card.image.size, mean: card.image.mean, std: card.image.std };
        Ok(Clip {
            card,
            fingerprint,
            preprocessing,
            tokenizer,
            image: Mutex::new(image),
            text: Mutex::new(text_session),
            provider: provider_used,
        })
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// SHA-256 identifying the exact encoders.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The execution provider in use (`CPUExecutionProvider`, `CUDAExecutionProvider`).
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
        let input = Tensor::from_array(([tensors.len(), 3, size, size], data.into_boxed_slice()))?;
        let mut session = self.image.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs![self.card.image.input.as_str() => input])?;
        rows(&outputs[self.card.image.output.as_str()], tensors.len(), self.card.embedding_dim)
    }

    /// L2-normalised embeddings of captions, in one batch.
    pub fn embed_texts(&self, captions: &[&str]) -> Result<Vec<Vec<f32>>> {
        if captions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = captions.iter().flat_map(|c| self.tokenizer.tokenize(c)).collect();
        let shape = [captions.len(), CONTEXT_LENGTH];
        let mask: Vec<i64> = ids.iter().map(|id| i64::from(*id != 0)).collect();
        let mut inputs = Vec::new();
        let id_value: ort::value::DynValue = if self.card.text.input_type == "int32" {
            let ids32: Vec<i32> = ids.iter().map(|v| *v as i32).collect();
            Tensor::from_array((shape, ids32.into_boxed_slice()))?.into_dyn()
        } else {
            Tensor::from_array((shape, ids.into_boxed_slice()))?.into_dyn()
        };
        inputs.push((
            std::borrow::Cow::from(self.card.text.input.clone()),
            ort::session::SessionInputValue::from(id_value),
        ));
        if let Some(name) = &self.card.text.attention_mask {
            let mask_value = Tensor::from_array((shape, mask.into_boxed_slice()))?.into_dyn();
            inputs.push((std::borrow::Cow::from(name.clone()), ort::session::SessionInputValue::from(mask_value)));
        }
        let mut session = self.text.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs)?;
        rows(&outputs[self.card.text.output.as_str()], captions.len(), self.card.embedding_dim)
    }
}

/// Cosine similarity of two L2-normalised embeddings, in [-1, 1].
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>().clamp(-1.0, 1.0)
}

fn rows(value: &ort::value::DynValue, n: usize, dim: usize) -> Result<Vec<Vec<f32>>> {
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != dim {
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

/// Creates a session on `provider`, falling back to the CPU with a log line when CUDA is
/// missing from the loaded runtime or cannot start.
fn session(env: &Environment, file: &Path, provider: Provider, threads: usize) -> Result<(Session, &'static str)> {
    let builder = || -> Result<ort::session::builder::SessionBuilder> {
        Ok(Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads.max(1))
            .map_err(ort::Error::from)?)
    };
    let load = |mut b: ort::session::builder::SessionBuilder| {
        b.commit_from_file(file).map_err(|e| DvaError::Model(format!("{}: {e}", file.display())))
    };
    if provider == Provider::Cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        match builder()?.with_execution_providers([cuda]) {
            Ok(b) => return Ok((load(b)?, "CUDAExecutionProvider")),
            Err(e) => {
                tracing::warn!(model = %file.display(), error = %e, "CUDA execution provider unavailable; falling back to CPU")
            }
        }
    }
    Ok((load(builder()?)?, "CPUExecutionProvider"))
}

/// Scores one decoded image against its caption with `clip`.
pub fn score_pair(clip: &Clip, image: &Rgb, caption: &str) -> Result<f32> {
    let tensor = clip.preprocessing().tensor(image);
    let img = clip.embed_images(&[tensor])?;
    let txt = clip.embed_texts(&[caption])?;
    Ok(cosine(&img[0], &txt[0]))
}
