//! The Data Validation Agent's model side: CLIP's exact preprocessing and tokenizer in Rust,
//! and a CLIP-style dual encoder, on ONNX Runtime or tract, that scores how well a caption
//! describes an image (cosine similarity of L2-normalised embeddings, in [-1, 1]).

pub mod engine;
pub mod error;
pub mod head;
pub mod model;
pub mod onnxruntime;
pub mod preprocess;
pub mod source;
pub mod tokenizer;
mod tract;

pub use engine::{Engine, Provider};
pub use error::{DvaError, Result};
pub use head::{Head, HeadCard};
pub use model::{Clip, ModelCard, cosine};
pub use onnxruntime::load_runtime;
pub use preprocess::{Preprocessing, Rgb, decode};
pub use source::ModelSource;
pub use tokenizer::Tokenizer;
