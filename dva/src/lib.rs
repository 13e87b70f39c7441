//! The Data Validation Agent's model side: CLIP's exact preprocessing and tokenizer in Rust,
//! and a CLIP-style dual encoder on ONNX Runtime that scores how well a caption describes an
//! image (cosine similarity of L2-normalised embeddings, in [-1, 1]).

pub mod error;
pub mod model;
pub mod preprocess;
pub mod tokenizer;

pub use error::{DvaError, Result};
pub use model::{Clip, ModelCard, Provider, cosine, discover_runtime, load_runtime};
pub use preprocess::{Preprocessing, Rgb, decode};
pub use tokenizer::Tokenizer;
