//! The inference engines an encoder runs on, behind one narrow interface (named inputs in, one
//! named `float32` output out):
//!
//! - ONNX Runtime: the fast path and the GPU path (CPU or CUDA execution provider), loaded from
//!   its shared library at run time ([`crate::onnxruntime`]);
//! - tract: a pure-Rust ONNX engine compiled into the binary, CPU only, so the DVA runs where
//!   ONNX Runtime is not installed ([`crate::tract`]).
//!
//! Both run the same graph on the same tensors: the preprocessing, tokenizer and cosine are
//! gata's own and shared, so scores agree to float rounding (the held-out test pins 1e-4).

use std::sync::Mutex;

use ort::environment::Environment;
use serde::{Deserialize, Serialize};

use crate::{Result, onnxruntime, tract};

/// Where ONNX Runtime places the encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// CUDA when the loaded ONNX Runtime has it and a GPU answers; CPU otherwise (logged).
    Cuda,
}

/// The engine a model is opened on.
#[derive(Debug, Clone, Copy)]
pub enum Engine {
    /// ONNX Runtime, loaded once per process, with the execution provider to ask for.
    OnnxRuntime {
        /// The loaded runtime ([`crate::load_runtime`]).
        env: &'static Environment,
        /// CPU or CUDA.
        provider: Provider,
    },
    /// tract, in this binary.
    Tract,
}

impl Engine {
    /// `onnxruntime` or `tract`: what the log and `/metrics` call it.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::OnnxRuntime { .. } => "onnxruntime",
            Engine::Tract => "tract",
        }
    }
}

/// One input tensor of an encoder: its shape and row-major data.
#[derive(Debug, Clone)]
pub enum Input {
    /// `float32` (pixel values).
    F32(Vec<usize>, Vec<f32>),
    /// `int64` (token ids, attention masks).
    I64(Vec<usize>, Vec<i64>),
    /// `int32` (token ids of exports that take them).
    I32(Vec<usize>, Vec<i32>),
}

impl Input {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Input::F32(s, _) | Input::I64(s, _) | Input::I32(s, _) => s,
        }
    }
}

/// A `float32` output: its shape and row-major data.
pub type Output = (Vec<usize>, Vec<f32>);

/// One encoder graph, loaded on an engine.
pub(crate) enum Encoder {
    /// An ONNX Runtime session (runs take `&mut`).
    Ort(Mutex<ort::session::Session>),
    /// A tract plan (runs share it).
    Tract(tract::Plan),
}

impl Encoder {
    /// Loads the ONNX graph `bytes` (named `file` in errors) on `engine`; returns the encoder
    /// and the execution provider it got (`CPUExecutionProvider`, `CUDAExecutionProvider`,
    /// `tract-cpu`).
    pub(crate) fn load(engine: Engine, file: &str, bytes: &[u8], threads: usize) -> Result<(Encoder, &'static str)> {
        match engine {
            Engine::OnnxRuntime { env, provider } => {
                let (session, used) = onnxruntime::session(env, file, bytes, provider, threads)?;
                Ok((Encoder::Ort(Mutex::new(session)), used))
            }
            Engine::Tract => Ok((Encoder::Tract(tract::Plan::load(file, bytes)?), "tract-cpu")),
        }
    }

    /// Runs the graph on `inputs` (by name) and returns the output named `output`.
    pub(crate) fn run(&self, inputs: Vec<(&str, Input)>, output: &str) -> Result<Output> {
        match self {
            Encoder::Ort(session) => {
                let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
                onnxruntime::run(&mut session, inputs, output)
            }
            Encoder::Tract(plan) => plan.run(inputs, output),
        }
    }
}
