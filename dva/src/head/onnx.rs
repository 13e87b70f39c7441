//! The trained head as an ONNX graph, written with the few messages of `onnx.proto` it needs
//! (field numbers as in ONNX's schema; a `oneof` member is encoded as the optional field it is
//! on the wire).
//!
//! The graph takes the two L2-normalised embeddings and computes the features and the logistic
//! regression itself, so any ONNX runtime can score with it:
//!
//! ```text
//! image_embeds [N, D], text_embeds [N, D]
//!   product = image_embeds * text_embeds           (Mul)
//!   cosine  = ReduceSum(product, axis 1)             [N, 1]
//!   x       = Concat(image, text, product, cosine)   [N, 3D + 1]
//!   accept_probability = Sigmoid(x · W + b)          [N, 1]
//! ```

use prost::Message;

/// Name of the image-embedding input.
pub const IMAGE_INPUT: &str = "image_embeds";
/// Name of the text-embedding input.
pub const TEXT_INPUT: &str = "text_embeds";
/// Name of the output.
pub const OUTPUT: &str = "accept_probability";
/// The opset the graph is written for.
const OPSET: i64 = 13;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetId>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetId {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfo>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfo>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<Attribute>,
}

#[derive(Clone, PartialEq, Message)]
struct Attribute {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
    /// `AttributeType.INT` = 2.
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    /// `FLOAT` = 1, `INT64` = 7.
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfo {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<Shape>,
}

#[derive(Clone, PartialEq, Message)]
struct Shape {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;

fn float_value(name: &str, dim: i64) -> ValueInfo {
    let dims = vec![
        Dimension { dim_value: None, dim_param: Some("N".into()) },
        Dimension { dim_value: Some(dim), dim_param: None },
    ];
    ValueInfo {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType { elem_type: FLOAT, shape: Some(Shape { dim: dims }) }),
        }),
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<Attribute>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        attribute,
    }
}

fn int_attribute(name: &str, i: i64) -> Attribute {
    Attribute { name: name.into(), i, r#type: 2 }
}

/// The serialised ONNX model of a head over `dim`-sized embeddings with `weights` (one per
/// feature: the image embedding, the text embedding, their product, the cosine) and `bias`.
pub fn head_graph(dim: usize, weights: &[f32], bias: f32) -> Vec<u8> {
    assert_eq!(weights.len(), 3 * dim + 1, "one weight per feature");
    let features = weights.len() as i64;
    let tensor = |name: &str, dims: Vec<i64>, data: Vec<f32>| TensorProto {
        dims,
        data_type: FLOAT,
        float_data: data,
        int64_data: Vec::new(),
        name: name.into(),
    };
    let graph = GraphProto {
        name: "gata_dva_head".into(),
        node: vec![
            node("Mul", &[IMAGE_INPUT, TEXT_INPUT], "product", Vec::new()),
            node("ReduceSum", &["product", "axes"], "cosine", vec![int_attribute("keepdims", 1)]),
            node("Concat", &[IMAGE_INPUT, TEXT_INPUT, "product", "cosine"], "features", vec![int_attribute("axis", 1)]),
            node("MatMul", &["features", "weights"], "weighted", Vec::new()),
            node("Add", &["weighted", "bias"], "logit", Vec::new()),
            node("Sigmoid", &["logit"], OUTPUT, Vec::new()),
        ],
        initializer: vec![
            TensorProto {
                dims: vec![1],
                data_type: INT64,
                float_data: Vec::new(),
                int64_data: vec![1],
                name: "axes".into(),
            },
            tensor("weights", vec![features, 1], weights.to_vec()),
            tensor("bias", vec![1], vec![bias]),
        ],
        input: vec![float_value(IMAGE_INPUT, dim as i64), float_value(TEXT_INPUT, dim as i64)],
        output: vec![float_value(OUTPUT, 1)],
    };
    ModelProto {
        ir_version: 7,
        producer_name: "gata dva train".into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetId { domain: String::new(), version: OPSET }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Engine,
        engine::{Encoder, Input},
        head::fit::{Logistic, features},
    };

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    #[test]
    fn the_graph_computes_the_regression_it_was_given() {
        let dim = 4;
        let weights: Vec<f32> = (0..3 * dim + 1).map(|i| (i as f32 - 6.0) / 5.0).collect();
        let bias = 0.25;
        let graph = head_graph(dim, &weights, bias);
        let (encoder, provider) = Encoder::load(Engine::Tract, "head.onnx", &graph, 1).expect("tract loads the head");
        assert_eq!(provider, "tract-cpu");
        let images = [unit(vec![1.0, 2.0, 0.5, -1.0]), unit(vec![-0.3, 0.2, 0.9, 0.1])];
        let texts = [unit(vec![0.7, -1.0, 0.4, 0.2]), unit(vec![-0.2, 0.3, 1.0, 0.0])];
        let rows = |r: &[Vec<f32>]| Input::F32(vec![2, dim], r.iter().flatten().copied().collect());
        let (shape, got) =
            encoder.run(vec![(IMAGE_INPUT, rows(&images)), (TEXT_INPUT, rows(&texts))], OUTPUT).expect("runs");
        assert_eq!(shape, [2, 1]);
        let model = Logistic { weights: weights.iter().map(|w| f64::from(*w)).collect(), bias: f64::from(bias) };
        for (i, p) in got.iter().enumerate() {
            let want = model.probability(&features(&images[i], &texts[i]));
            assert!((f64::from(*p) - want).abs() < 1e-5, "pair {i}: graph {p}, regression {want}");
        }
    }
}
