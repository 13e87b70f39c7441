//! ONNX Runtime: found and loaded at run time from its shared library, sessions on the CPU or
//! CUDA execution provider.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    sync::OnceLock,
};

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
