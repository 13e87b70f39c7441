//! What the host provides, found at start-up on the operator's behalf: the ONNX Runtime shared
//! library. Libraries get the path; only this configuration layer looks at the environment.

use std::path::PathBuf;

use crate::{InfraError, Result};

/// The ONNX Runtime library: `configured` (`dva.onnxruntime`), else `ORT_DYLIB_PATH`, else the
/// newest `libonnxruntime.so*` the `onnxruntime` Python package installed
/// (`pip install onnxruntime`).
pub fn onnxruntime_library(configured: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(path) = configured {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let not_found = |reason: String| InfraError::OnnxRuntimeNotFound { reason };
    let probe = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"])
        .output();
    let dir = match probe {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Ok(_) => return Err(not_found("python3 has no onnxruntime package".into())),
        Err(e) => return Err(not_found(format!("python3 cannot run: {e}"))),
    };
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| not_found(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    libs.sort();
    libs.pop().ok_or_else(|| not_found(format!("no libonnxruntime.so in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_library_is_taken_as_given() {
        let path = PathBuf::from("/opt/ort/libonnxruntime.so.1.22");
        assert_eq!(onnxruntime_library(Some(&path)).expect("configured"), path);
    }
}
