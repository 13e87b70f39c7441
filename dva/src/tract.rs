//! tract: the ONNX graph parsed, typed with its symbolic batch dimension and optimised once
//! when the model is opened, then run as one plan shared by every caller.

use std::sync::Arc;

use tract_onnx::prelude::{
    Framework as _, InferenceModelExt as _, IntoRunnable as _, IntoTValue as _, TVec, Tensor, TypedRunnableModel,
};

use crate::{
    DvaError, Result,
    engine::{Input, Output},
};

/// An optimised encoder with the names of its inputs, in the order the graph takes them.
pub(crate) struct Plan {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

fn failed(file: &str, what: &str) -> impl FnOnce(tract_onnx::prelude::TractError) -> DvaError {
    let context = format!("{file}: {what}");
    move |e| DvaError::Tract { context, source: e.into() }
}

impl Plan {
    /// Parses, types and optimises the ONNX graph `bytes`.
    pub(crate) fn load(file: &str, bytes: &[u8]) -> Result<Plan> {
        let model = tract_onnx::onnx().model_for_read(&mut &*bytes).map_err(failed(file, "cannot parse the graph"))?;
        let typed = model.into_optimized().map_err(failed(file, "cannot type and optimise the graph"))?;
        let label = |outlet: tract_onnx::prelude::OutletId| {
            typed.outlet_label(outlet).map_or_else(|| typed.node(outlet.node).name.clone(), str::to_string)
        };
        let inputs = typed.input_outlets().map_err(failed(file, "inputs"))?.iter().map(|o| label(*o)).collect();
        let outputs = typed.output_outlets().map_err(failed(file, "outputs"))?.iter().map(|o| label(*o)).collect();
        let plan = typed.into_runnable().map_err(failed(file, "cannot plan the graph"))?;
        Ok(Plan { plan, inputs, outputs })
    }

    /// Runs the plan on `inputs` (every graph input by name) and returns the output `output`.
    pub(crate) fn run(&self, mut inputs: Vec<(&str, Input)>, output: &str) -> Result<Output> {
        let mut values = TVec::new();
        for name in &self.inputs {
            let at = inputs
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| DvaError::Model(format!("the encoder's input {name:?} was not given")))?;
            let (_, input) = inputs.swap_remove(at);
            let shape = input.shape().to_vec();
            let tensor = match input {
                Input::F32(_, data) => Tensor::from_shape(&shape, &data),
                Input::I64(_, data) => Tensor::from_shape(&shape, &data),
                Input::I32(_, data) => Tensor::from_shape(&shape, &data),
            }
            .map_err(failed(name, "input tensor"))?;
            values.push(tensor.into_tvalue());
        }
        let at = match self.outputs.iter().position(|n| n == output) {
            Some(at) => at,
            None if self.outputs.len() == 1 => 0,
            None => return Err(DvaError::Model(format!("the encoder has no output named {output:?}"))),
        };
        let outputs = self.plan.run(values).map_err(failed(output, "inference"))?;
        let view = outputs[at].to_plain_array_view::<f32>().map_err(failed(output, "output tensor"))?;
        Ok((view.shape().to_vec(), view.iter().copied().collect()))
    }
}
