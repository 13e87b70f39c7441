//! Errors of the DVA.

/// Result with [`DvaError`] as the default error.
pub type Result<T, E = DvaError> = std::result::Result<T, E>;

/// What can go wrong validating an image-text pair.
#[derive(Debug, thiserror::Error)]
pub enum DvaError {
    /// The image cannot be used: not PNG/JPEG/WebP, corrupt, empty or too large.
    #[error("image: {0}")]
    Image(String),

    /// The model directory, its card, files or vocabulary are missing or inconsistent.
    #[error("model: {0}")]
    Model(String),

    /// ONNX Runtime could not be found or loaded.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),

    /// An encoder failed to run on ONNX Runtime.
    #[error("inference: {0}")]
    Inference(#[from] ort::Error),

    /// tract could not load or run an encoder.
    #[error("tract: {context}")]
    Tract {
        /// The file or tensor, and the step that failed.
        context: String,
        /// tract's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
