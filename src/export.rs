//! A trained spectral-stream model as an ONNX graph: from the raw frame
//! features `[batch, 42, frames]` (as [`Predictor::raw_features`] computes
//! them; feature extraction stays in emofuse) to calibrated class
//! probabilities, with the standardisation and the softmax temperature inside.
//! Opset 17; batch and frames are dynamic. A batch holds clips of equal length
//! (emofuse's own batches mask padding, which the graph does not).
//!
//! The protobuf messages come from the `onnx-protobuf` crate (ONNX's own
//! `onnx.proto`, generated); this module only chooses the nodes.

use burn::module::Param;
use burn::tensor::Tensor;
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto, tensor_shape_proto,
    type_proto,
};

use crate::infer::Predictor;
use crate::model::fusion::ModelKind;

/// The ONNX operator set the graph uses (LayerNormalization needs 17).
pub const OPSET: i64 = 17;
/// ONNX IR version 8 goes with opset 17.
const IR_VERSION: i64 = 8;
/// burn's `LayerNormConfig` default, which the models are built with.
const LAYER_NORM_EPSILON: f32 = 1e-5;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("only spectral-stream models export to ONNX; this one is `{0}` (its encoder is not in the graph)")]
    NotSpectral(&'static str),
    #[error("the model has no feature statistics to standardise with")]
    NoFeatureStats,
    #[error("ONNX serialisation failed: {0}")]
    Protobuf(String),
}

/// The model's ONNX file, as bytes.
pub fn onnx(predictor: &Predictor) -> Result<Vec<u8>, ExportError> {
    let config = predictor.config();
    let model = predictor.model();
    let (Some(spectral), ModelKind::Spectral) = (&model.spectral, config.model.kind) else {
        return Err(ExportError::NotSpectral(config.model.kind.as_str()));
    };
    let stats = config.feature_stats.as_ref().ok_or(ExportError::NoFeatureStats)?;
    let n_features = stats.mean.len() as i64;
    let mut graph = Graph::default();

    // (x - mean) / std per feature row, as the model's input builder does.
    let mean = graph.constant("feature_mean", &[1, n_features, 1], stats.mean.clone());
    let std = graph.constant("feature_std", &[1, n_features, 1], stats.std.clone());
    let centred = graph.node("Sub", &["features", &mean], vec![]);
    let mut x = graph.node("Div", &[&centred, &std], vec![]);

    for (i, block) in spectral.blocks.iter().enumerate() {
        let kernel = block.conv.kernel_size as i64;
        let weight = graph.param(&format!("block{i}.conv.weight"), &block.conv.weight);
        let mut inputs = vec![x.clone(), weight];
        inputs.extend(
            block
                .conv
                .bias
                .as_ref()
                .map(|b| graph.param(&format!("block{i}.conv.bias"), b)),
        );
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let pads = vec![ints("pads", &[kernel / 2, kernel / 2]), ints("kernel_shape", &[kernel])];
        let conv = graph.node("Conv", &inputs, pads);
        // Layer norm over channels, per frame: channels last and back.
        let frames_major = graph.node("Transpose", &[&conv], vec![ints("perm", &[0, 2, 1])]);
        let gamma = graph.param(&format!("block{i}.norm.gamma"), &block.norm.gamma);
        let mut norm_inputs = vec![frames_major, gamma];
        norm_inputs.extend(
            block
                .norm
                .beta
                .as_ref()
                .map(|b| graph.param(&format!("block{i}.norm.beta"), b)),
        );
        let norm_inputs: Vec<&str> = norm_inputs.iter().map(String::as_str).collect();
        let attributes = vec![int("axis", -1), float("epsilon", LAYER_NORM_EPSILON)];
        let normed = graph.node("LayerNormalization", &norm_inputs, attributes);
        let channels_major = graph.node("Transpose", &[&normed], vec![ints("perm", &[0, 2, 1])]);
        x = graph.gelu(&channels_major);
        if block.pool.is_some() {
            let attributes = vec![ints("kernel_shape", &[2]), ints("strides", &[2]), int("ceil_mode", 1)];
            x = graph.node("MaxPool", &[&x], attributes);
        }
    }

    // Attentive pooling: α = softmax_t(vᵀ tanh(W h_t + b)), output Σ α_t h_t.
    let pooling = &spectral.pooling;
    let frames = graph.node("Transpose", &[&x], vec![ints("perm", &[0, 2, 1])]); // [b, t, c]
    let attention = graph.linear(
        "attention",
        &frames,
        &pooling.attention.weight,
        pooling.attention.bias.as_ref(),
    );
    let squashed = graph.node("Tanh", &[&attention], vec![]);
    let scores = graph.linear(
        "context",
        &squashed,
        &pooling.context.weight,
        pooling.context.bias.as_ref(),
    ); // [b, t, 1]
    let alpha = graph.node("Softmax", &[&scores], vec![int("axis", 1)]);
    let weighted = graph.node("Mul", &[&frames, &alpha], vec![]);
    let time_axis = graph.constant_i64("time_axis", &[1], vec![1]);
    let embedding = graph.node("ReduceSum", &[&weighted, &time_axis], vec![int("keepdims", 0)]); // [b, c]

    let classifier = &model.classifier;
    let mut h = embedding;
    if let Some(hidden) = &classifier.hidden {
        let projected = graph.linear("classifier.hidden", &h, &hidden.weight, hidden.bias.as_ref());
        h = graph.gelu(&projected);
    }
    let output = &classifier.output;
    let logits = graph.linear("classifier.output", &h, &output.weight, output.bias.as_ref());
    let temperature = graph.constant("temperature", &[], vec![config.temperature]);
    let scaled = graph.node("Div", &[&logits, &temperature], vec![]);
    let probabilities = graph.node("Softmax", &[&scaled], vec![int("axis", 1)]);
    graph
        .nodes
        .push(node("Identity", &[&probabilities], "probabilities", vec![]));

    let n_classes = config.labels.len() as i64;
    let labels = serde_json::to_string(&config.labels).expect("labels serialise");
    let doc = format!(
        "emofuse spectral model: input `features` [batch, {n_features}, frames] float32 = the raw frame features \
         (MFCC 1-40, ZCR, RMS) as emofuse computes them for this model (level {:?} dBFS, before standardisation; \
         feature extraction is not in this graph: use the emofuse CLI or Python package, Model.features); output \
         `probabilities` [batch, {n_classes}] in the order of the `labels` metadata, calibrated (temperature {}). \
         A batch holds clips of equal length.",
        config.features.level_dbfs, config.temperature
    );
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "emofuse".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        metadata_props: vec![StringStringEntryProto {
            key: "labels".into(),
            value: labels,
            ..Default::default()
        }],
        graph: Some(GraphProto {
            name: "emofuse".into(),
            node: graph.nodes,
            initializer: graph.initializers,
            input: vec![value_info(
                "features",
                &[dim("batch"), dim_value(n_features), dim("frames")],
            )],
            output: vec![value_info("probabilities", &[dim("batch"), dim_value(n_classes)])],
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    model
        .write_to_bytes()
        .map_err(|err| ExportError::Protobuf(err.to_string()))
}

/// Nodes and weights, each node's output named after its position.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    /// Adds an `op` node; returns the name of its output.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = format!("{}_{}", op.to_lowercase(), self.nodes.len());
        self.nodes.push(node(op, inputs, &output, attributes));
        output
    }

    fn constant(&mut self, name: &str, dims: &[i64], values: Vec<f32>) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: tensor_proto::DataType::FLOAT as i32,
            float_data: values,
            ..Default::default()
        });
        name.into()
    }

    fn constant_i64(&mut self, name: &str, dims: &[i64], values: Vec<i64>) -> String {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: tensor_proto::DataType::INT64 as i32,
            int64_data: values,
            ..Default::default()
        });
        name.into()
    }

    fn param<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) -> String {
        let tensor = param.val();
        let dims: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
        let values = tensor.into_data().convert::<f32>().try_into_vec().expect("f32 weights");
        self.constant(name, &dims, values)
    }

    /// `x · W + b` with burn's `[d_in, d_out]` weight layout (ONNX MatMul's, untransposed).
    fn linear(&mut self, name: &str, x: &str, weight: &Param<Tensor<2>>, bias: Option<&Param<Tensor<1>>>) -> String {
        let weight = self.param(&format!("{name}.weight"), weight);
        let product = self.node("MatMul", &[x, &weight], vec![]);
        match bias {
            Some(bias) => {
                let bias = self.param(&format!("{name}.bias"), bias);
                self.node("Add", &[&product, &bias], vec![])
            }
            None => product,
        }
    }

    /// Exact GELU, x·(1 + erf(x/√2))/2, as burn's `gelu` (opset 17 has no Gelu node).
    fn gelu(&mut self, x: &str) -> String {
        let inv_sqrt2 = format!("gelu_inv_sqrt2_{}", self.nodes.len());
        let inv_sqrt2 = self.constant(&inv_sqrt2, &[], vec![std::f32::consts::FRAC_1_SQRT_2]);
        let one = format!("gelu_one_{}", self.nodes.len());
        let one = self.constant(&one, &[], vec![1.0]);
        let half = format!("gelu_half_{}", self.nodes.len());
        let half = self.constant(&half, &[], vec![0.5]);
        let scaled = self.node("Mul", &[x, &inv_sqrt2], vec![]);
        let erf = self.node("Erf", &[&scaled], vec![]);
        let shifted = self.node("Add", &[&erf, &one], vec![]);
        let product = self.node("Mul", &[x, &shifted], vec![]);
        self.node("Mul", &[&product, &half], vec![])
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|&i| i.to_owned()).collect(),
        output: vec![output.to_owned()],
        attribute,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: attribute_proto::AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: attribute_proto::AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: attribute_proto::AttributeType::FLOAT.into(),
        f: value,
        ..Default::default()
    }
}

fn dim(name: &str) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimParam(name.into())),
        ..Default::default()
    }
}

fn dim_value(size: i64) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(size)),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[tensor_shape_proto::Dimension]) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: tensor_proto::DataType::FLOAT as i32,
        shape: Some(TensorShapeProto {
            dim: dims.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
