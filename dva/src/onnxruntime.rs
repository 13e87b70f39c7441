//! ONNX Runtime: loaded at run time from the shared library the caller names, sessions on the
//! CPU or CUDA execution provider.

use std::{borrow::Cow, path::Path, sync::OnceLock};

use ort::{
    environment::Environment,
    session::{Session, SessionInputValue, builder::GraphOptimizationLevel},
    value::{DynValue, Tensor},
};

use crate::{
    DvaError, Result,
    engine::{Input, Output, Provider},
};

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

/// Creates a session for the graph `bytes` on `provider`, falling back to the CPU with a log
/// line when CUDA is missing from the loaded runtime or cannot start.
pub(crate) fn session(
    env: &Environment,
    file: &str,
    bytes: &[u8],
    provider: Provider,
    threads: usize,
) -> Result<(Session, &'static str)> {
    let builder = || -> Result<ort::session::builder::SessionBuilder> {
        Ok(Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads.max(1))
            .map_err(ort::Error::from)?
            // A pool that spins after its run takes the cores the other encoder and the next
            // batch's decoding need (1.5x the pairs per second without it, batch 32, 2 cores).
            .with_intra_op_spinning(false)
            .map_err(ort::Error::from)?)
    };
    let load = |mut b: ort::session::builder::SessionBuilder| {
        b.commit_from_memory(bytes).map_err(|e| DvaError::Model(format!("{file}: {e}")))
    };
    if provider == Provider::Cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        match builder()?.with_execution_providers([cuda]) {
            Ok(b) => return Ok((load(b)?, "CUDAExecutionProvider")),
            Err(e) => {
                tracing::warn!(model = file, error = %e, "CUDA execution provider unavailable; falling back to CPU")
            }
        }
    }
    Ok((load(builder()?)?, "CPUExecutionProvider"))
}

/// Runs `session` on `inputs` and returns its `output`.
pub(crate) fn run(session: &mut Session, inputs: Vec<(&str, Input)>, output: &str) -> Result<Output> {
    let mut values = Vec::with_capacity(inputs.len());
    for (name, input) in inputs {
        let value: DynValue = match input {
            Input::F32(shape, data) => Tensor::from_array((shape, data.into_boxed_slice()))?.into_dyn(),
            Input::I64(shape, data) => Tensor::from_array((shape, data.into_boxed_slice()))?.into_dyn(),
            Input::I32(shape, data) => Tensor::from_array((shape, data.into_boxed_slice()))?.into_dyn(),
        };
        values.push((Cow::from(name.to_string()), SessionInputValue::from(value)));
    }
    let outputs = session.run(values)?;
    let value =
        outputs.get(output).ok_or_else(|| DvaError::Model(format!("the encoder has no output named {output:?}")))?;
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    Ok((shape.iter().map(|d| *d as usize).collect(), data.to_vec()))
}
