//! The op registry: ONNX op type -> constructor.
use millrace_ir::{Attributes, Op, OpError};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Builds an op from its attributes and the model's opset version for its domain.
pub type Builder = fn(&Attributes, i64) -> Result<Arc<dyn Op>, OpError>;

/// All ops millrace can import, keyed by ONNX op type (domain `ai.onnx`).
#[derive(Default)]
pub struct Registry {
    builders: HashMap<&'static str, Builder>,
}

impl Registry {
    /// The registry of every built-in op.
    pub fn global() -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(|| {
            let mut r = Registry::default();
            crate::elementwise::register(&mut r);
            crate::tensor::register(&mut r);
            crate::nn::register(&mut r);
            crate::reduce::register(&mut r);
            crate::loss::register(&mut r);
            crate::attention::register(&mut r);
            crate::quant::register(&mut r);
            crate::signal::register(&mut r);
            crate::rnn::register(&mut r);
            crate::control::register(&mut r);
            crate::sequence::register(&mut r);
            r
        })
    }

    pub fn add(&mut self, op_type: &'static str, b: Builder) {
        self.builders.insert(op_type, b);
    }

    pub fn get(&self, op_type: &str) -> Option<Builder> {
        self.builders.get(op_type).copied()
    }

    pub fn contains(&self, op_type: &str) -> bool {
        self.builders.contains_key(op_type)
    }

    /// Registered op types, sorted.
    pub fn op_types(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.builders.keys().copied().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::Registry;

    /// The vision and transformer set millrace promises to run.
    #[test]
    fn registers_the_promised_ops() {
        let promised = "Conv ConvTranspose BatchNormalization MaxPool AveragePool GlobalAveragePool GlobalMaxPool \
            Gemm MatMul Relu LeakyRelu PRelu Clip Sigmoid HardSigmoid HardSwish Tanh Erf Gelu Softplus Exp Log Sqrt \
            Pow Reciprocal Neg Abs Add Sub Mul Div Min Max Sum Mean Equal Less Greater Where Not And Or Reshape \
            Flatten Transpose Concat Split Slice Gather GatherElements Squeeze Unsqueeze Expand Tile Pad Shape Size \
            Constant ConstantOfShape Range Cast Identity Dropout Softmax LogSoftmax LayerNormalization ReduceMean \
            ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 ArgMax TopK Resize Upsample DepthToSpace SpaceToDepth \
            Einsum CumSum Trilu LRN LpPool LpNormalization MeanVarianceNormalization InstanceNormalization";
        let r = Registry::global();
        let missing: Vec<_> = promised
            .split_whitespace()
            .filter(|op| !r.contains(op))
            .collect();
        assert!(missing.is_empty(), "not registered: {missing:?}");
    }
}
