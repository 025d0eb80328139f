//! The operator trait and what it needs: inference context, evaluation inputs, cost, errors.
use crate::types::ValueType;
use millrace_core::{Tensor, TensorError};
use std::any::Any;
use std::fmt;

/// Why an operator could not be built, typed, or evaluated. The runtime and importer add
/// the node's name; the op's own name is always in the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// A required input is absent (empty name in ONNX, or too few inputs).
    #[error("{op}: missing required input #{index}")]
    MissingInput { op: String, index: usize },
    /// An attribute is missing, of the wrong kind, or has an invalid value.
    #[error("{op}: attribute `{attr}`: {msg}")]
    Attribute {
        op: String,
        attr: String,
        msg: String,
    },
    /// The op is valid ONNX but millrace does not implement this case.
    #[error("{op}: unsupported: {what}")]
    Unsupported { op: String, what: String },
    /// Inputs that violate the op's contract (shapes, dtypes, values).
    #[error("{op}: {msg}")]
    Invalid { op: String, msg: String },
    #[error("{op}: {source}")]
    Tensor { op: String, source: TensorError },
}

impl OpError {
    pub fn invalid(op: &str, msg: impl Into<String>) -> OpError {
        OpError::Invalid {
            op: op.to_string(),
            msg: msg.into(),
        }
    }
    pub fn unsupported(op: &str, what: impl Into<String>) -> OpError {
        OpError::Unsupported {
            op: op.to_string(),
            what: what.into(),
        }
    }
    pub fn attribute(op: &str, attr: &str, msg: impl Into<String>) -> OpError {
        OpError::Attribute {
            op: op.to_string(),
            attr: attr.to_string(),
            msg: msg.into(),
        }
    }
    pub fn tensor(op: &str, source: TensorError) -> OpError {
        OpError::Tensor {
            op: op.to_string(),
            source,
        }
    }
    /// True for errors that mean "millrace cannot do this" rather than "this is wrong".
    pub fn is_unsupported(&self) -> bool {
        matches!(self, OpError::Unsupported { .. })
    }
}

/// Work and traffic of one node, from its concrete input and output types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point (or integer) operations; a multiply-add counts as 2.
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Cost {
    /// `flops_per_elem` operations per output element, every input read once, every output
    /// written once. Unknown shapes count as zero.
    pub fn elementwise(inputs: &[ValueType], outputs: &[ValueType], flops_per_elem: u64) -> Cost {
        let bytes =
            |ts: &[ValueType]| ts.iter().filter_map(|t| t.size_bytes()).sum::<usize>() as u64;
        let out_elems = outputs.iter().filter_map(|t| t.numel()).sum::<usize>() as u64;
        Cost {
            flops: out_elems * flops_per_elem,
            bytes_read: bytes(inputs),
            bytes_written: bytes(outputs),
        }
    }

    /// Pure data movement: no arithmetic.
    pub fn movement(inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 0)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_read + self.bytes_written
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            flops: self.flops + o.flops,
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
        }
    }
}

/// What shape inference sees of a node's inputs: their types, and their values when constant.
pub struct InferCtx<'a> {
    op: &'a str,
    types: &'a [Option<ValueType>],
    consts: &'a [Option<&'a Tensor>],
}

impl<'a> InferCtx<'a> {
    /// `types[i]` is `None` for an absent optional input; `consts[i]` is the value if known.
    pub fn new(
        op: &'a str,
        types: &'a [Option<ValueType>],
        consts: &'a [Option<&'a Tensor>],
    ) -> Self {
        InferCtx { op, types, consts }
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// A required input's type.
    pub fn input(&self, i: usize) -> Result<&ValueType, OpError> {
        self.types
            .get(i)
            .and_then(|t| t.as_ref())
            .ok_or_else(|| OpError::MissingInput {
                op: self.op.to_string(),
                index: i,
            })
    }

    /// An optional input's type, `None` when absent.
    pub fn opt_input(&self, i: usize) -> Option<&ValueType> {
        self.types.get(i).and_then(|t| t.as_ref())
    }

    /// The input's value when it is a known constant.
    pub fn constant(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten()
    }
}

/// A node's input tensors during evaluation; absent optional inputs are `None`.
pub struct Inputs<'a> {
    op: &'a str,
    items: &'a [Option<&'a Tensor>],
}

impl<'a> Inputs<'a> {
    pub fn new(op: &'a str, items: &'a [Option<&'a Tensor>]) -> Self {
        Inputs { op, items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A required input.
    pub fn req(&self, i: usize) -> Result<&'a Tensor, OpError> {
        self.opt(i).ok_or_else(|| OpError::MissingInput {
            op: self.op.to_string(),
            index: i,
        })
    }

    /// An optional input.
    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.items.get(i).copied().flatten()
    }

    /// All present inputs in order (for variadic ops such as Concat and Sum).
    pub fn present(&self) -> impl Iterator<Item = &'a Tensor> + '_ {
        self.items.iter().filter_map(|t| *t)
    }
}

/// A read-only f32 tensor: its shape and its row-major data.
#[derive(Clone, Copy, Debug)]
pub struct F32View<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl<'a> F32View<'a> {
    /// Views an f32 tensor; `None` for any other dtype.
    pub fn of(t: &'a Tensor) -> Option<F32View<'a>> {
        Some(F32View {
            shape: t.shape(),
            data: t.as_slice::<f32>().ok()?,
        })
    }

    /// The input at `i`, or a missing-input error naming the op.
    pub fn req<'b>(
        inputs: &'b [Option<F32View<'a>>],
        op: &str,
        i: usize,
    ) -> Result<F32View<'a>, OpError> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| OpError::MissingInput {
                op: op.to_string(),
                index: i,
            })
    }
}

/// An operator: one struct per ONNX op, holding its parsed attributes.
///
/// Implementations live one per file in `millrace-ops`. Nothing here may panic on bad
/// input: every problem is an [`OpError`].
pub trait Op: fmt::Debug + Send + Sync + Any {
    /// The ONNX op type (`Conv`, `Softmax`) or millrace's name for a fused op.
    fn name(&self) -> &'static str;

    /// Output types from input types (and constant input values where they matter).
    /// Unknown dimensions stay unknown; an output may be wholly unknown when it depends
    /// on data that is not constant.
    fn infer(&self, ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, OpError>;

    /// Work and traffic given concrete input and output types.
    fn cost(&self, inputs: &[ValueType], outputs: &[ValueType]) -> Cost {
        Cost::elementwise(inputs, outputs, 1)
    }

    /// Computes the outputs. Must be correct per the ONNX spec for every case it accepts,
    /// and return an error (never panic, never approximate) for anything else.
    fn eval(&self, inputs: &Inputs<'_>) -> Result<Vec<Tensor>, OpError>;

    /// Whether the op takes or produces sequences or optionals; such ops implement
    /// [`Op::eval_values`] and are called through it.
    fn takes_values(&self) -> bool {
        false
    }

    /// Evaluation over [`crate::Value`]s, for ops whose [`Op::takes_values`] is true.
    fn eval_values(&self, _inputs: &[Option<&crate::Value>]) -> Result<Vec<crate::Value>, OpError> {
        Err(OpError::unsupported(
            self.name(),
            "sequence or optional values",
        ))
    }

    /// Outputs computable from input *types* alone, without input data (Shape, Size):
    /// lets constant folding resolve shape subgraphs whose inputs are not constant.
    fn fold_from_types(&self, _inputs: &[ValueType]) -> Option<Vec<Tensor>> {
        None
    }

    /// Whether [`Op::eval_into`] can compute this node: a single output, every present
    /// input and the output f32, at these (concrete) types. The memory planner places only
    /// such outputs in the run's arena.
    fn writes_into(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> bool {
        false
    }

    /// The planned-buffer path: computes output 0 into `out` (exactly `out_shape`'s element
    /// count, every element overwritten; its previous contents are garbage), reading inputs
    /// as f32 views. Called only where [`Op::writes_into`] said yes. Must give the same
    /// values as [`Op::eval`] and must not allocate outputs.
    fn eval_into(
        &self,
        _inputs: &[Option<F32View<'_>>],
        _out: &mut [f32],
        _out_shape: &[usize],
    ) -> Result<(), OpError> {
        Err(OpError::unsupported(self.name(), "eval_into"))
    }

    /// An input whose buffer output 0 may overwrite (elementwise ops whose output has that
    /// input's shape): `Some(i)` lets the planner run the node in place when input `i` dies
    /// here, through [`Op::eval_inplace`]. Only asked where [`Op::writes_into`] said yes.
    fn inplace_input(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Option<usize> {
        None
    }

    /// Computes output 0 into `io`, which holds input `index` (given as `None` in `inputs`)
    /// on entry. Called only where [`Op::inplace_input`] returned `Some(index)`.
    fn eval_inplace(
        &self,
        _index: usize,
        _inputs: &[Option<F32View<'_>>],
        _io: &mut [f32],
        _out_shape: &[usize],
    ) -> Result<(), OpError> {
        Err(OpError::unsupported(self.name(), "eval_inplace"))
    }

    /// Whether output 0 is input 0's data unchanged under a new shape (Reshape, Flatten,
    /// Squeeze, Unsqueeze, Identity), so the executor may alias the buffer instead of
    /// calling the op.
    fn is_alias(&self) -> bool {
        false
    }

    /// Whether every output `k` is a contiguous piece of input 0: its elements
    /// `[offsets[k], offsets[k] + len_k)` in row-major order under the output's own shape
    /// (Split along an axis with only unit dimensions before it). The executor then hands
    /// out views of input 0's buffer instead of calling the op.
    fn output_pieces(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Option<Vec<usize>> {
        None
    }

    /// Whether output 0 is inputs 0, 1, ... laid end to end: input `k` is its elements
    /// `[offsets[k], offsets[k] + len_k)` (Concat along an axis with only unit dimensions
    /// before it). The memory plan can then have each input's producer write straight into
    /// its piece of the output, and the op itself does nothing.
    fn input_pieces(&self, _inputs: &[ValueType], _outputs: &[ValueType]) -> Option<Vec<usize>> {
        None
    }

    /// Bytes of weights the op holds itself (prepacked inside fused ops), not counted among
    /// the graph's constants. For the memory and residency plans.
    fn own_weight_bytes(&self) -> u64 {
        0
    }

    /// Attribute summary for dumps, e.g. `strides=[2,2] pads=[3,3,3,3]`.
    fn describe(&self) -> String {
        String::new()
    }

    /// For passes that pattern-match on concrete op types.
    fn as_any(&self) -> &dyn Any;
}
