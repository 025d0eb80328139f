//! Helpers shared by the nn family: a float element trait (f32/f64 compute types, with
//! f16/bf16 computing through f32), window geometry (kernel, strides, dilations, pads,
//! auto_pad, ceil_mode) and small attribute readers.
use crate::util::{output, Num};
use millrace_core::{bf16, f16, DType, Dim, Tensor, TensorData};
use millrace_ir::{Attributes, OpError};
use std::borrow::Cow;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

/// A compute type for float ops: f32 (also used for f16/bf16) or f64.
pub trait Float:
    Num
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn is_nan(self) -> bool;
    fn lit(v: f64) -> Self {
        Self::from_f64(v)
    }
    /// The tensor's elements in this compute type: borrowed when the dtype matches,
    /// converted for f16/bf16 into f32; any other dtype is an error.
    fn cow<'a>(op: &str, t: &'a Tensor) -> Result<Cow<'a, [Self]>, OpError>;
    /// `C = alpha * A * B + beta * C` (strided, see `millrace_kernels::gemm::sgemm`).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

fn dtype_err(op: &str, want: &str, got: DType) -> OpError {
    OpError::invalid(op, format!("expected a {want} input, got {got}"))
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f32::NEG_INFINITY;
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
    fn powf(self, p: Self) -> Self {
        f32::powf(self, p)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn cow<'a>(op: &str, t: &'a Tensor) -> Result<Cow<'a, [Self]>, OpError> {
        match t.data() {
            TensorData::F32(v) => Ok(Cow::Borrowed(v)),
            TensorData::F16(v) => Ok(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            TensorData::BF16(v) => Ok(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            d => Err(dtype_err(op, "f32/f16/bf16", d.dtype())),
        }
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    ) {
        if k == 0 && beta == 0.0 {
            // The kernel scales C by beta; make 0 * NaN = 0 for uninitialized C.
            for i in 0..m {
                for j in 0..n {
                    c[(i as isize * rsc + j as isize * csc) as usize] = 0.0;
                }
            }
            return;
        }
        millrace_kernels::gemm::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f64::NEG_INFINITY;
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
    fn powf(self, p: Self) -> Self {
        f64::powf(self, p)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn cow<'a>(op: &str, t: &'a Tensor) -> Result<Cow<'a, [Self]>, OpError> {
        match t.data() {
            TensorData::F64(v) => Ok(Cow::Borrowed(v)),
            d => Err(dtype_err(op, "f64", d.dtype())),
        }
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    ) {
        millrace_kernels::dgemm::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// Builds an output of float `dtype` from compute-type values (f16/bf16 convert back).
pub fn float_out<F: Float>(
    op: &str,
    dtype: DType,
    shape: Vec<usize>,
    v: Vec<F>,
) -> Result<Tensor, OpError> {
    match dtype {
        DType::F16 => output(
            op,
            shape,
            v.iter().map(|x| f16::from_f32(x.to_f32())).collect(),
        ),
        DType::BF16 => output(
            op,
            shape,
            v.iter().map(|x| bf16::from_f32(x.to_f32())).collect(),
        ),
        _ if dtype == F::DTYPE => output(op, shape, v),
        _ => Err(OpError::invalid(
            op,
            format!("cannot produce {dtype} from {}", F::DTYPE),
        )),
    }
}

/// Runs `$self.$method::<F>($args)` with F = f32 for f32/f16/bf16 and f64 for f64;
/// any other dtype is unsupported.
#[macro_export]
macro_rules! float_run {
    ($op:expr, $dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            millrace_core::DType::F32 | millrace_core::DType::F16 | millrace_core::DType::BF16 => {
                $f::<f32>($($arg),*)
            }
            millrace_core::DType::F64 => $f::<f64>($($arg),*),
            d => Err(millrace_ir::OpError::unsupported($op, format!("dtype {d}"))),
        }
    };
}

/// Checks that every input has the dtype of the first.
pub fn same_dtype(op: &str, ts: &[&Tensor]) -> Result<(), OpError> {
    if let Some(first) = ts.first() {
        for t in ts {
            if t.dtype() != first.dtype() {
                return Err(OpError::invalid(
                    op,
                    format!("inputs mix dtypes {} and {}", first.dtype(), t.dtype()),
                ));
            }
        }
    }
    Ok(())
}

/// Non-negative ints attribute as usizes.
pub fn usizes(op: &str, attr: &str, v: &[i64]) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .map_err(|_| OpError::attribute(op, attr, format!("negative value {x}")))
        })
        .collect()
}

/// Reads an optional ints attribute as usizes.
pub fn opt_usizes(op: &str, attrs: &Attributes, attr: &str) -> Result<Option<Vec<usize>>, OpError> {
    match attrs.ints(attr)? {
        Some(v) => Ok(Some(usizes(op, attr, &v)?)),
        None => Ok(None),
    }
}

/// ONNX `auto_pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(op: &str, attrs: &Attributes) -> Result<AutoPad, OpError> {
        match attrs.string_or("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => Ok(AutoPad::NotSet),
            "SAME_UPPER" => Ok(AutoPad::SameUpper),
            "SAME_LOWER" => Ok(AutoPad::SameLower),
            "VALID" => Ok(AutoPad::Valid),
            other => Err(OpError::attribute(
                op,
                "auto_pad",
                format!("unknown value {other:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AutoPad::NotSet => "NOTSET",
            AutoPad::SameUpper => "SAME_UPPER",
            AutoPad::SameLower => "SAME_LOWER",
            AutoPad::Valid => "VALID",
        }
    }
}

/// Window attributes of Conv and the pooling ops, as given.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub kernel: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

/// Window geometry resolved against a concrete input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
    pub output: Vec<usize>,
}

impl Window {
    /// Reads kernel_shape, strides, dilations, pads, auto_pad and ceil_mode.
    pub fn from_attrs(op: &str, attrs: &Attributes) -> Result<Window, OpError> {
        let w = Window {
            kernel: opt_usizes(op, attrs, "kernel_shape")?,
            strides: opt_usizes(op, attrs, "strides")?,
            dilations: opt_usizes(op, attrs, "dilations")?,
            pads: opt_usizes(op, attrs, "pads")?,
            auto_pad: AutoPad::parse(op, attrs)?,
            ceil_mode: attrs.int_or("ceil_mode", 0)? != 0,
        };
        if w.strides.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(op, "strides", "must be positive"));
        }
        if w.dilations.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err(OpError::attribute(op, "dilations", "must be positive"));
        }
        Ok(w)
    }

    /// Short attribute summary.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        let fmt = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        if let Some(k) = &self.kernel {
            parts.push(format!("kernel=[{}]", fmt(k)));
        }
        if let Some(s) = &self.strides {
            parts.push(format!("strides=[{}]", fmt(s)));
        }
        if let Some(d) = &self.dilations {
            parts.push(format!("dilations=[{}]", fmt(d)));
        }
        if let Some(p) = &self.pads {
            parts.push(format!("pads=[{}]", fmt(p)));
        }
        if self.auto_pad != AutoPad::NotSet {
            parts.push(format!("auto_pad={}", self.auto_pad.as_str()));
        }
        if self.ceil_mode {
            parts.push("ceil_mode=1".to_string());
        }
        parts.join(" ")
    }

    /// Resolves against the spatial input shape; `w_kernel` is the kernel from a weight
    /// tensor, when there is one.
    pub fn resolve(
        &self,
        op: &str,
        input: &[usize],
        w_kernel: Option<&[usize]>,
    ) -> Result<Resolved, OpError> {
        let n = input.len();
        let kernel = match (&self.kernel, w_kernel) {
            (Some(k), Some(wk)) if k.as_slice() != wk => {
                return Err(OpError::invalid(
                    op,
                    format!("kernel_shape {k:?} does not match the weights' {wk:?}"),
                ))
            }
            (Some(k), _) => k.clone(),
            (None, Some(wk)) => wk.to_vec(),
            (None, None) => {
                return Err(OpError::attribute(
                    op,
                    "kernel_shape",
                    "required but absent",
                ))
            }
        };
        let check = |name: &str, v: &[usize], want: usize| {
            if v.len() != want {
                Err(OpError::attribute(
                    op,
                    name,
                    format!("has {} values, expected {want} for the input", v.len()),
                ))
            } else {
                Ok(())
            }
        };
        check("kernel_shape", &kernel, n)?;
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; n]);
        check("strides", &strides, n)?;
        let dilations = self.dilations.clone().unwrap_or_else(|| vec![1; n]);
        check("dilations", &dilations, n)?;
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * n]);
        if self.auto_pad == AutoPad::NotSet {
            check("pads", &pads, 2 * n)?;
        }
        let mut r = Resolved {
            kernel,
            strides,
            dilations,
            pads_begin: vec![0; n],
            pads_end: vec![0; n],
            output: vec![0; n],
        };
        for i in 0..n {
            let (pb, pe) = if self.auto_pad == AutoPad::NotSet {
                (pads[i], pads[i + n])
            } else {
                (0, 0)
            };
            let (o, b, e) = out_dim(
                op,
                input[i],
                r.kernel[i],
                r.strides[i],
                r.dilations[i],
                pb,
                pe,
                self.auto_pad,
                self.ceil_mode,
            )?;
            r.output[i] = o;
            r.pads_begin[i] = b;
            r.pads_end[i] = e;
        }
        Ok(r)
    }

    /// Output spatial dims for shape inference (a fresh symbol where unknown).
    pub fn infer(&self, op: &str, input: &[Dim], w_kernel: Option<Vec<usize>>) -> Vec<Dim> {
        let concrete: Option<Vec<usize>> = input.iter().map(Dim::known).collect();
        if let Some(c) = concrete {
            if let Ok(r) = self.resolve(op, &c, w_kernel.as_deref()) {
                return r.output.iter().map(|&d| Dim::Known(d)).collect();
            }
        }
        let unit_stride = !self
            .strides
            .as_ref()
            .is_some_and(|s| s.iter().any(|&x| x != 1));
        input
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Sym(s)
                    if unit_stride
                        && matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower) =>
                {
                    Dim::Sym(s.clone())
                }
                _ => Dim::Sym(format!("{}_{op}_{i}", d)),
            })
            .collect()
    }
}

/// One spatial dimension: output size and the begin/end pads actually used.
#[allow(clippy::too_many_arguments)]
pub fn out_dim(
    op: &str,
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pb: usize,
    pe: usize,
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<(usize, usize, usize), OpError> {
    if k == 0 {
        return Err(OpError::attribute(op, "kernel_shape", "must be positive"));
    }
    if s == 0 || d == 0 {
        return Err(OpError::invalid(
            op,
            "strides and dilations must be positive",
        ));
    }
    // Checked: window, dilation and pads come from the model file.
    let overflow = || OpError::invalid(op, "window, dilation and padding overflow");
    let dk = (k - 1)
        .checked_mul(d)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    match auto_pad {
        AutoPad::NotSet => {
            let padded = input
                .checked_add(pb)
                .and_then(|v| v.checked_add(pe))
                .ok_or_else(overflow)?;
            if padded < dk {
                return Err(OpError::invalid(
                    op,
                    format!("window {dk} is larger than the padded input {padded}"),
                ));
            }
            let mut out = if ceil_mode {
                (padded - dk).div_ceil(s) + 1
            } else {
                (padded - dk) / s + 1
            };
            // The last window must start inside the input or its left padding.
            if ceil_mode && out > 1 && (out - 1) * s >= input + pb {
                out -= 1;
            }
            Ok((out, pb, pe))
        }
        AutoPad::Valid => {
            if input < dk {
                return Err(OpError::invalid(
                    op,
                    format!("window {dk} is larger than the input {input}"),
                ));
            }
            Ok(((input - dk) / s + 1, 0, 0))
        }
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(s);
            let total = out
                .saturating_sub(1)
                .checked_mul(s)
                .and_then(|v| v.checked_add(dk))
                .ok_or_else(overflow)?
                .saturating_sub(input);
            let small = total / 2;
            let big = total - small;
            if auto_pad == AutoPad::SameUpper {
                Ok((out, small, big))
            } else {
                Ok((out, big, small))
            }
        }
    }
}

/// Product of dims.
pub fn prod(v: &[usize]) -> usize {
    v.iter().product()
}

/// Builds an integer output of `dtype` from i64 values computed with wrapping arithmetic
/// (narrowing wraps like a two's-complement cast).
pub fn int_out(op: &str, dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Result<Tensor, OpError> {
    match dtype {
        DType::I8 => output(op, shape, v.into_iter().map(|x| x as i8).collect()),
        DType::I16 => output(op, shape, v.into_iter().map(|x| x as i16).collect()),
        DType::I32 => output(op, shape, v.into_iter().map(|x| x as i32).collect()),
        DType::I64 => output(op, shape, v),
        DType::U8 => output(op, shape, v.into_iter().map(|x| x as u8).collect()),
        DType::U16 => output(op, shape, v.into_iter().map(|x| x as u16).collect()),
        DType::U32 => output(op, shape, v.into_iter().map(|x| x as u32).collect()),
        DType::U64 => output(op, shape, v.into_iter().map(|x| x as u64).collect()),
        d => Err(OpError::unsupported(op, format!("dtype {d}"))),
    }
}

/// Integer elements as i64 (u64 wraps, which wrapping arithmetic undoes on output).
pub fn ints_wrapping(op: &str, t: &Tensor) -> Result<Vec<i64>, OpError> {
    if !t.dtype().is_int() {
        return Err(OpError::invalid(
            op,
            format!("expected integers, got {}", t.dtype()),
        ));
    }
    t.to_i64_vec().map_err(|e| OpError::tensor(op, e))
}

/// Naive integer matrix multiply with wrapping arithmetic, strided like [`Float::gemm`]
/// with alpha 1: `C += A * B`.
#[allow(clippy::too_many_arguments)]
pub fn int_gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[i64],
    rsa: usize,
    csa: usize,
    b: &[i64],
    rsb: usize,
    csb: usize,
    c: &mut [i64],
) {
    for i in 0..m {
        for p in 0..k {
            let av = a[i * rsa + p * csa];
            for j in 0..n {
                let cv = &mut c[i * n + j];
                *cv = cv.wrapping_add(av.wrapping_mul(b[p * rsb + j * csb]));
            }
        }
    }
}

/// Mean and (biased) variance of a slice, two-pass.
pub fn mean_var<F: Float>(v: &[F]) -> (F, F) {
    if v.is_empty() {
        return (F::ZERO, F::ZERO);
    }
    let n = F::from_f64(v.len() as f64);
    let mut s = F::ZERO;
    for &x in v {
        s += x;
    }
    let mean = s / n;
    let mut q = F::ZERO;
    for &x in v {
        let d = x - mean;
        q += d * d;
    }
    (mean, q / n)
}

/// A float parameter tensor converted to the compute type (any float dtype accepted).
pub fn param<F: Float>(op: &str, t: &Tensor, what: &str) -> Result<Vec<F>, OpError> {
    if !t.dtype().is_float() {
        return Err(OpError::invalid(op, format!("{what} must be float")));
    }
    Ok(t.to_f64_vec()
        .map_err(|e| OpError::tensor(op, e))?
        .into_iter()
        .map(F::from_f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_splits_odd_totals() {
        // in 5, k 4, s 1: total 3
        assert_eq!(
            out_dim("T", 5, 4, 1, 1, 0, 0, AutoPad::SameUpper, false).unwrap(),
            (5, 1, 2)
        );
        assert_eq!(
            out_dim("T", 5, 4, 1, 1, 0, 0, AutoPad::SameLower, false).unwrap(),
            (5, 2, 1)
        );
        assert_eq!(
            out_dim("T", 5, 3, 2, 1, 0, 0, AutoPad::Valid, false).unwrap(),
            (2, 0, 0)
        );
        // ceil_mode: (5 + 0 - 2) / 2 -> ceil 2 + 1 = 3
        assert_eq!(
            out_dim("T", 5, 2, 2, 1, 0, 0, AutoPad::NotSet, true).unwrap(),
            (3, 0, 0)
        );
        assert!(out_dim("T", 2, 5, 1, 1, 0, 0, AutoPad::NotSet, false).is_err());
        // Sizes from a hostile model file that overflow: errors, not wrapped sizes.
        let big = usize::MAX / 2 + 1;
        assert!(out_dim("T", 5, 3, 1, 1, big, big, AutoPad::NotSet, false).is_err());
        assert!(out_dim("T", 5, big, 1, 3, 0, 0, AutoPad::NotSet, false).is_err());
        assert!(out_dim("T", 5, 3, 1, big, 0, 0, AutoPad::SameUpper, false).is_err());
    }
}
