//! millrace-zoo: the built-in models, built in-process as ONNX `ModelProto`s with seeded
//! random weights, so they can be benchmarked or written out with nothing downloaded.
//!
//! The architectures follow torchvision / HuggingFace transformers as PyTorch's ONNX
//! exporter writes them at opset 17 in eval mode (BatchNormalization kept as its own node),
//! with the same layers, shapes and parameter counts; names follow the exporter
//! (`layer1.0.conv1.weight`, `/layer1/layer1.0/conv1/Conv`).
//!
//! Weights: Kaiming-normal (fan_out, ReLU gain) convolutions with zero bias, N(0, 0.01²)
//! linear layers with zero bias, BatchNorm gamma 1 / beta 0 with running mean N(0, 0.1²)
//! and running variance U[0.5, 1.5] (ResNet-50's `bn3` gamma is 0.2 to bound residual
//! growth), BERT N(0, 0.02²) with LayerNorm gamma 1 / beta 0. Each model has a fixed seed.

pub mod bert;
pub mod builder;
pub mod googlenet;
pub mod mobilenet_v2;
pub mod resnet50;
pub mod vgg16;

use millrace_onnx::proto::ModelProto;

/// Errors of the zoo.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// No built-in model has this name.
    #[error("unknown model {name:?}; known models: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The built-in names.
        known: Vec<String>,
    },
}

const NAMES: &[&str] = &["resnet50", "mobilenet_v2", "googlenet", "vgg16", "bert"];

/// The built-in model names.
pub fn names() -> &'static [&'static str] {
    NAMES
}

fn unknown(name: &str) -> ZooError {
    ZooError::Unknown {
        name: name.to_string(),
        known: NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

/// Builds a model by name.
pub fn build(name: &str) -> Result<ModelProto, ZooError> {
    Ok(match name {
        "resnet50" => resnet50::build(),
        "mobilenet_v2" => mobilenet_v2::build(),
        "googlenet" => googlenet::build(),
        "vgg16" => vgg16::build(),
        "bert" => bert::build(),
        _ => return Err(unknown(name)),
    })
}

/// Builds a model by name and encodes it as ONNX protobuf bytes.
pub fn build_bytes(name: &str) -> Result<Vec<u8>, ZooError> {
    use prost::Message;
    Ok(build(name)?.encode_to_vec())
}

/// One line describing a model.
pub fn describe(name: &str) -> Option<&'static str> {
    Some(match name {
        "resnet50" => "ResNet-50 v1.5 (torchvision), ImageNet classifier, 25.6M params, input 1x3x224x224",
        "mobilenet_v2" => "MobileNetV2 (torchvision), ImageNet classifier, 3.5M params, input 1x3x224x224",
        "googlenet" => "GoogLeNet / Inception v1 (torchvision), ImageNet classifier, 6.6M params, input 1x3x224x224",
        "vgg16" => "VGG-16 (torchvision, no BN), ImageNet classifier, 138.4M params, input 1x3x224x224",
        "bert" => "BERT-base encoder (HuggingFace BertModel), 108.9M params, inputs input_ids/attention_mask 1x128",
        _ => return None,
    })
}

/// Default shapes of a model's inputs (batch 1; BERT sequence 128).
pub fn default_input_shapes(name: &str) -> Option<Vec<(&'static str, Vec<usize>)>> {
    match name {
        "resnet50" | "mobilenet_v2" | "googlenet" | "vgg16" => {
            Some(vec![("input", vec![1, 3, 224, 224])])
        }
        "bert" => Some(vec![
            ("input_ids", vec![1, 128]),
            ("attention_mask", vec![1, 128]),
        ]),
        _ => None,
    }
}

/// Number of trainable parameters of a model as PyTorch counts them: the elements of the
/// initializers named `*.weight` / `*.bias` (BatchNorm running statistics, buffers and
/// exporter constants are not parameters).
pub fn parameter_count(model: &ModelProto) -> usize {
    model
        .graph
        .iter()
        .flat_map(|g| g.initializer.iter())
        .filter(|t| t.name.ends_with(".weight") || t.name.ends_with(".bias"))
        .map(|t| t.dims.iter().product::<i64>() as usize)
        .sum()
}
