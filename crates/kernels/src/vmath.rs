//! Vectorized f32 math over slices: `exp`, `tanh`, `sigmoid`, `erf`, `gelu` (erf form),
//! `gelu_tanh`, `silu`, the piecewise-linear activations, and the reductions Softmax and
//! LayerNormalization need.
//!
//! Every function is written once, generically over a small [`Simd`] trait, and compiled
//! three times: AVX-512F (16 lanes), AVX2+FMA (8 lanes) and portable scalar code (1 lane,
//! any CPU). The instruction set is detected once at run time ([`Isa::detect`]); the
//! `*_with` entry points take an explicit [`Isa`] so tests can check every variant.
//!
//! Algorithms (max relative error against f64 about 1e-7..5e-7, see the tests):
//! - `exp`: `x = n ln2 + r` (Cody-Waite, `|r| <= ln2/2`), `e^r` by the Cephes degree-7
//!   polynomial, `2^n` applied as two exponent-field scalings `2^(n/2) 2^(n - n/2)` so that
//!   results in the subnormal range and overflow to `inf` come out right.
//! - `tanh`: odd Cephes polynomial for `|x| < 0.625`, `1 - 2 / (e^(2|x|) + 1)` above.
//! - `sigmoid`: from `e = exp(-|x|)`: `1 / (1 + e)` for `x >= 0`, `e / (1 + e)` below, which
//!   keeps the relative accuracy for very negative `x`.
//! - `erf`: `x P(x^2)` (degree 6, fitted) for `|x| < 1`; above, `1 - erfc(|x|)` with
//!   `erfc(a) = exp(-a^2) t S(t)`, `t = 1/a`, `S` a degree-10 fit on `a` in `[1, 9.3]`.
//! - `gelu`: the same pieces; for `x / sqrt 2 <= -1` it uses `0.5 x erfc(|x| / sqrt 2)`
//!   directly (no cancellation in `1 + erf`), with `x^2 / 2` split exactly (FMA) so the
//!   tail keeps its relative accuracy.
//! - `gelu_tanh`: `0.5 (1 + tanh y) = sigmoid(2 y)`, so `x sigmoid(2 y)`.
//!
//! NaN propagates everywhere; special values follow the scalar formulas of
//! [`crate::activation::Activation::apply`].

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best instruction set of this CPU (detected once).
    #[inline]
    pub fn detect() -> Isa {
        static CACHE: AtomicU8 = AtomicU8::new(0);
        match CACHE.load(Ordering::Relaxed) {
            0 => {
                let best = Isa::available()[0];
                let code = match best {
                    Isa::Portable => 1,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => 2,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => 3,
                };
                CACHE.store(code, Ordering::Relaxed);
                best
            }
            #[cfg(target_arch = "x86_64")]
            3 => Isa::Avx512,
            #[cfg(target_arch = "x86_64")]
            2 => Isa::Avx2,
            _ => Isa::Portable,
        }
    }

    /// Every instruction set this CPU runs, best first (portable always last).
    // Off x86-64 only the portable entry is pushed.
    #[cfg_attr(not(target_arch = "x86_64"), allow(clippy::vec_init_then_push))]
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if fma && is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
            if fma {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }
}

/// An elementwise function of one f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Func {
    Exp,
    Tanh,
    Sigmoid,
    Erf,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `x sigmoid(x)`.
    Silu,
    /// `x * clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `clamp(alpha x + beta, 0, 1)`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x < 0 ? 0 : x` (NaN and -0 pass through).
    Relu,
    /// `x > 0 ? x : 0` (NaN and -0 become +0): the ONNX `Relu` op's reference semantics.
    ReluZeroNan,
    /// `x < 0 ? alpha x : x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `min(max(x, lo), hi)`, NaN passes through.
    Clip {
        lo: f32,
        hi: f32,
    },
    Sqrt,
    Neg,
    Abs,
    /// `a x + b`.
    Affine {
        a: f32,
        b: f32,
    },
}

/// Applies `f` to `src`, writing `dst` (same length; extra elements of the longer are left).
#[inline]
pub fn map(f: Func, src: &[f32], dst: &mut [f32]) {
    map_with(Isa::detect(), f, src, dst)
}

/// Applies `f` to every element in place.
#[inline]
pub fn map_inplace(f: Func, xs: &mut [f32]) {
    map_inplace_with(Isa::detect(), f, xs)
}

/// [`map`] on a chosen instruction set (which this CPU must run: see [`Isa::available`]).
pub fn map_with(isa: Isa, f: Func, src: &[f32], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    // SAFETY: both pointers are valid for `n` elements; `isa` is checked below.
    unsafe { run(isa, f, src.as_ptr(), dst.as_mut_ptr(), n) }
}

/// [`map_inplace`] on a chosen instruction set.
pub fn map_inplace_with(isa: Isa, f: Func, xs: &mut [f32]) {
    let p = xs.as_mut_ptr();
    // SAFETY: the kernels read each vector before writing it back to the same place.
    unsafe { run(isa, f, p, p, xs.len()) }
}

/// `exp` of every element in place.
pub fn exp(xs: &mut [f32]) {
    map_inplace(Func::Exp, xs)
}

/// `tanh` of every element in place.
pub fn tanh(xs: &mut [f32]) {
    map_inplace(Func::Tanh, xs)
}

/// `sigmoid` of every element in place.
pub fn sigmoid(xs: &mut [f32]) {
    map_inplace(Func::Sigmoid, xs)
}

/// `erf` of every element in place.
pub fn erf(xs: &mut [f32]) {
    map_inplace(Func::Erf, xs)
}

/// GELU (erf form) of every element in place.
pub fn gelu(xs: &mut [f32]) {
    map_inplace(Func::Gelu, xs)
}

/// GELU (tanh approximation) of every element in place.
pub fn gelu_tanh(xs: &mut [f32]) {
    map_inplace(Func::GeluTanh, xs)
}

/// Checks `isa` is runnable (a wrong `Isa` would be undefined behaviour). The list is
/// built once: this runs on every call, per row of a layer norm or softmax, and must not
/// allocate.
fn checked(isa: Isa) -> Isa {
    static AVAILABLE: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
    if isa == Isa::Portable || AVAILABLE.get_or_init(Isa::available).contains(&isa) {
        isa
    } else {
        Isa::Portable
    }
}

/// # Safety
/// `src` must be readable and `dst` writable for `n` elements; they may be equal.
unsafe fn run(isa: Isa, f: Func, src: *const f32, dst: *mut f32, n: usize) {
    if n == 0 {
        return;
    }
    let isa = if isa == Isa::detect() {
        isa
    } else {
        checked(isa)
    };
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX-512F, AVX2 and FMA (checked above).
        Isa::Avx512 => unsafe { x86::map_avx512(f, src, dst, n) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU runs AVX2 and FMA.
        Isa::Avx2 => unsafe { x86::map_avx2(f, src, dst, n) },
        // SAFETY: forwarded from the caller.
        Isa::Portable => unsafe { map_generic::<Scalar>(f, src, dst, n) },
    }
}

/// Maximum of the elements (`-inf` for an empty slice; NaN handling unspecified).
pub fn max(xs: &[f32]) -> f32 {
    reduce_with(Isa::detect(), Reduce::Max, xs, 0.0)
}

/// Sum of the elements.
pub fn sum(xs: &[f32]) -> f32 {
    reduce_with(Isa::detect(), Reduce::Sum, xs, 0.0)
}

/// `sum((x - c)^2)`.
pub fn sum_sq_dev(xs: &[f32], c: f32) -> f32 {
    reduce_with(Isa::detect(), Reduce::SumSqDev, xs, c)
}

/// A reduction of one slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Max,
    Sum,
    /// `sum((x - c)^2)`.
    SumSqDev,
}

/// A reduction on a chosen instruction set; `c` is the constant of [`Reduce::SumSqDev`].
pub fn reduce_with(isa: Isa, r: Reduce, xs: &[f32], c: f32) -> f32 {
    let isa = checked(isa);
    let (p, n) = (xs.as_ptr(), xs.len());
    // SAFETY: `p` is valid for `n` reads; the ISA is runnable.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::reduce_avx512(r, p, n, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::reduce_avx2(r, p, n, c),
            Isa::Portable => reduce_generic::<Scalar>(r, p, n, c),
        }
    }
}

/// `dst = exp(src - m)`, returning the sum of `dst` (the middle of a softmax).
pub fn exp_shift_sum(src: &[f32], dst: &mut [f32], m: f32) -> f32 {
    exp_shift_sum_with(Isa::detect(), src, dst, m)
}

/// [`exp_shift_sum`] on a chosen instruction set.
pub fn exp_shift_sum_with(isa: Isa, src: &[f32], dst: &mut [f32], m: f32) -> f32 {
    let isa = checked(isa);
    let n = src.len().min(dst.len());
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    // SAFETY: valid for `n` elements; the ISA is runnable.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::exp_shift_sum_avx512(s, d, n, m),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::exp_shift_sum_avx2(s, d, n, m),
            Isa::Portable => exp_shift_sum_generic::<Scalar>(s, d, n, m),
        }
    }
}

/// `dst[i] = (src[i] - mean) * inv * scale[i] + bias[i]` (LayerNormalization's output);
/// `bias` may be empty. All slices have the row's length (shorter ones bound the work).
pub fn normalize_row(
    src: &[f32],
    dst: &mut [f32],
    mean: f32,
    inv: f32,
    scale: &[f32],
    bias: &[f32],
) {
    normalize_row_with(Isa::detect(), src, dst, mean, inv, scale, bias)
}

/// [`normalize_row`] on a chosen instruction set.
pub fn normalize_row_with(
    isa: Isa,
    src: &[f32],
    dst: &mut [f32],
    mean: f32,
    inv: f32,
    scale: &[f32],
    bias: &[f32],
) {
    let isa = checked(isa);
    let mut n = src.len().min(dst.len()).min(scale.len());
    let b = if bias.is_empty() {
        None
    } else {
        n = n.min(bias.len());
        Some(bias.as_ptr())
    };
    let (s, d, sc) = (src.as_ptr(), dst.as_mut_ptr(), scale.as_ptr());
    // SAFETY: all valid for `n` elements; the ISA is runnable.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::normalize_avx512(s, d, n, mean, inv, sc, b),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::normalize_avx2(s, d, n, mean, inv, sc, b),
            Isa::Portable => normalize_generic::<Scalar>(s, d, n, mean, inv, sc, b),
        }
    }
}

/// A binary arithmetic operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN-propagating maximum.
    Max,
    /// NaN-propagating minimum.
    Min,
}

impl Bin {
    #[inline]
    pub fn scalar(self, a: f32, b: f32) -> f32 {
        match self {
            Bin::Add => a + b,
            Bin::Sub => a - b,
            Bin::Mul => a * b,
            Bin::Div => a / b,
            Bin::Max => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else if b > a {
                    b
                } else {
                    a
                }
            }
            Bin::Min => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else if b < a {
                    b
                } else {
                    a
                }
            }
        }
    }
}

/// How the two operands of [`binary`] are laid out.
#[derive(Clone, Copy, Debug)]
pub enum Operands<'a> {
    /// Both of the output's length.
    Both(&'a [f32], &'a [f32]),
    /// `a` of the output's length, one `b` for all.
    ScalarB(&'a [f32], f32),
    /// One `a` for all, `b` of the output's length.
    ScalarA(f32, &'a [f32]),
}

/// `dst = a op b` elementwise.
pub fn binary(op: Bin, x: Operands<'_>, dst: &mut [f32]) {
    binary_with(Isa::detect(), op, x, dst)
}

/// [`binary`] on a chosen instruction set.
pub fn binary_with(isa: Isa, op: Bin, x: Operands<'_>, dst: &mut [f32]) {
    let isa = checked(isa);
    let d = dst.as_mut_ptr();
    // (a pointer, a stride 0/1, b pointer, b stride 0/1, n)
    let (pa, sa, pb, sb, n) = match x {
        Operands::Both(a, b) => (
            a.as_ptr(),
            1,
            b.as_ptr(),
            1,
            dst.len().min(a.len()).min(b.len()),
        ),
        Operands::ScalarB(a, ref b) => (a.as_ptr(), 1, b as *const f32, 0, dst.len().min(a.len())),
        Operands::ScalarA(ref a, b) => (a as *const f32, 0, b.as_ptr(), 1, dst.len().min(b.len())),
    };
    if n == 0 {
        return;
    }
    // SAFETY: each pointer is valid for `n` elements at stride 1, or for one at stride 0;
    // the ISA is runnable.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::binary_avx512(op, pa, sa, pb, sb, d, n),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::binary_avx2(op, pa, sa, pb, sb, d, n),
            Isa::Portable => binary_generic::<Scalar>(op, pa, sa, pb, sb, d, n),
        }
    }
}

/// The operand of [`binary_inplace`] that is not the buffer.
#[derive(Clone, Copy, Debug)]
pub enum Other<'a> {
    /// One value per element of the buffer.
    Slice(&'a [f32]),
    /// One value for all.
    Scalar(f32),
}

/// `io = io op other` (`io_is_a`) or `io = other op io`, elementwise, in place.
pub fn binary_inplace(op: Bin, io: &mut [f32], other: Other<'_>, io_is_a: bool) {
    let isa = checked(Isa::detect());
    let d = io.as_mut_ptr();
    let (po, so, n) = match other {
        Other::Slice(v) => (v.as_ptr(), 1, io.len().min(v.len())),
        Other::Scalar(ref v) => (v as *const f32, 0, io.len()),
    };
    if n == 0 {
        return;
    }
    let (pa, sa, pb, sb) = if io_is_a {
        (d as *const f32, 1, po, so)
    } else {
        (po, so, d as *const f32, 1)
    };
    // SAFETY: as in `binary_with`; the buffer is both an operand and the destination,
    // which the loops allow: each vector is loaded before the same place is stored.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::binary_avx512(op, pa, sa, pb, sb, d, n),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::binary_avx2(op, pa, sa, pb, sb, d, n),
            Isa::Portable => binary_generic::<Scalar>(op, pa, sa, pb, sb, d, n),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The vector abstraction.

/// One SIMD register type and the operations the kernels use. Every method is a thin
/// `#[inline(always)]` wrapper, so a generic kernel inlined into a `#[target_feature]`
/// function compiles to that instruction set's code.
///
/// # Safety
/// Implementations may only be used where the CPU supports their instructions.
unsafe trait Simd {
    type V: Copy;
    type M: Copy;
    type I: Copy;
    const LANES: usize;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// x86 `max`: `a > b ? a : b` (so the second operand where either is NaN).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// x86 `min`: `a < b ? a : b`.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sqrt(a: Self::V) -> Self::V;
    unsafe fn abs(a: Self::V) -> Self::V;
    unsafe fn neg(a: Self::V) -> Self::V;
    /// `|mag|` with the sign of `sign`.
    unsafe fn copysign(mag: Self::V, sign: Self::V) -> Self::V;
    unsafe fn lt(a: Self::V, b: Self::V) -> Self::M;
    unsafe fn isnan(a: Self::V) -> Self::M;
    /// `m ? a : b` per lane.
    unsafe fn select(m: Self::M, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn bits(a: Self::V) -> Self::I;
    unsafe fn from_bits(a: Self::I) -> Self::V;
    unsafe fn iadd(a: Self::I, b: i32) -> Self::I;
    unsafe fn isub(a: Self::I, b: Self::I) -> Self::I;
    /// Arithmetic shift right by one.
    unsafe fn sra1(a: Self::I) -> Self::I;
    /// Shift left by 23 (into the exponent field).
    unsafe fn sll23(a: Self::I) -> Self::I;
    unsafe fn hsum(a: Self::V) -> f32;
    unsafe fn hmax(a: Self::V) -> f32;
}

/// Portable one-lane "vector".
struct Scalar;

// SAFETY: plain scalar code runs on any CPU.
unsafe impl Simd for Scalar {
    type V = f32;
    type M = bool;
    type I = i32;
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        // SAFETY: forwarded.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        // SAFETY: forwarded.
        unsafe { *p = v }
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        // The product is exact in f64; `mul_add` would be a slow library call on x86
        // without FMA, the CPUs that take this path.
        ((a as f64) * (b as f64) + c as f64) as f32
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn sqrt(a: f32) -> f32 {
        a.sqrt()
    }
    #[inline(always)]
    unsafe fn abs(a: f32) -> f32 {
        a.abs()
    }
    #[inline(always)]
    unsafe fn neg(a: f32) -> f32 {
        -a
    }
    #[inline(always)]
    unsafe fn copysign(mag: f32, sign: f32) -> f32 {
        mag.copysign(sign)
    }
    #[inline(always)]
    unsafe fn lt(a: f32, b: f32) -> bool {
        a < b
    }
    #[inline(always)]
    unsafe fn isnan(a: f32) -> bool {
        a.is_nan()
    }
    #[inline(always)]
    unsafe fn select(m: bool, a: f32, b: f32) -> f32 {
        if m {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn bits(a: f32) -> i32 {
        a.to_bits() as i32
    }
    #[inline(always)]
    unsafe fn from_bits(a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    #[inline(always)]
    unsafe fn iadd(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    unsafe fn isub(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    unsafe fn sra1(a: i32) -> i32 {
        a >> 1
    }
    #[inline(always)]
    unsafe fn sll23(a: i32) -> i32 {
        a.wrapping_shl(23)
    }
    #[inline(always)]
    unsafe fn hsum(a: f32) -> f32 {
        a
    }
    #[inline(always)]
    unsafe fn hmax(a: f32) -> f32 {
        a
    }
}

// ---------------------------------------------------------------------------------------
// The math, generic over the vector type.

const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
const MAGIC_BITS: i32 = 0x4B40_0000;

/// `e^x` per lane.
#[inline(always)]
#[allow(clippy::excessive_precision)]
unsafe fn exp_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let xc = S::min(S::max(x, S::splat(-104.0)), S::splat(89.0));
        let t = S::fma(xc, S::splat(std::f32::consts::LOG2_E), S::splat(MAGIC));
        let n = S::sub(t, S::splat(MAGIC));
        let r = S::fma(n, S::splat(-0.693_359_4), xc);
        let r = S::fma(n, S::splat(2.121_944_4e-4), r);
        let mut p = S::splat(1.987_569_1e-4);
        p = S::fma(p, r, S::splat(1.398_2e-3));
        p = S::fma(p, r, S::splat(8.333_452e-3));
        p = S::fma(p, r, S::splat(4.166_579_6e-2));
        p = S::fma(p, r, S::splat(1.666_666_5e-1));
        p = S::fma(p, r, S::splat(5.000_000_1e-1));
        let y = S::fma(p, S::mul(r, r), r);
        let y = S::add(y, S::splat(1.0));
        // n in [-150, 128]: scale by 2^(n/2) and 2^(n - n/2), each a normal number.
        let ni = S::isub(S::bits(t), S::bits(S::splat(MAGIC)));
        let n1 = S::sra1(ni);
        let n2 = S::isub(ni, n1);
        let s1 = S::from_bits(S::sll23(S::iadd(n1, 127)));
        let s2 = S::from_bits(S::sll23(S::iadd(n2, 127)));
        let y = S::mul(S::mul(y, s1), s2);
        S::select(S::isnan(x), x, y)
    }
}

const _: () = assert!(MAGIC.to_bits() as i32 == MAGIC_BITS);

#[inline(always)]
#[allow(clippy::excessive_precision)]
unsafe fn tanh_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let ax = S::abs(x);
        let z = S::mul(x, x);
        let mut p = S::splat(-5.704_988_7e-3);
        p = S::fma(p, z, S::splat(2.063_908_9e-2));
        p = S::fma(p, z, S::splat(-5.373_971_6e-2));
        p = S::fma(p, z, S::splat(1.333_144_2e-1));
        p = S::fma(p, z, S::splat(-3.333_328_2e-1));
        let small = S::fma(S::mul(x, z), p, x);
        let e = exp_v::<S>(S::add(ax, ax));
        let big = S::sub(
            S::splat(1.0),
            S::div(S::splat(2.0), S::add(e, S::splat(1.0))),
        );
        let big = S::copysign(big, x);
        S::select(S::lt(ax, S::splat(0.625)), small, big)
    }
}

#[inline(always)]
unsafe fn sigmoid_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let e = exp_v::<S>(S::neg(S::abs(x)));
        let r = S::div(S::splat(1.0), S::add(S::splat(1.0), e));
        S::select(S::lt(x, S::splat(0.0)), S::mul(e, r), r)
    }
}

/// `erf(u) / u` for `u^2 = z < 1` (fitted; the constant term is 2 / sqrt(pi)).
#[inline(always)]
#[allow(clippy::approx_constant)]
unsafe fn erf_small<S: Simd>(z: S::V) -> S::V {
    const C: [f32; 7] = [
        1.128_379_2,
        -0.376_126_25,
        0.112_835_82,
        -0.026_853_691,
        0.005_188_099,
        -0.000_800_818_9,
        7.847_259e-5,
    ];
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let mut p = S::splat(C[6]);
        for &c in C[..6].iter().rev() {
            p = S::fma(p, z, S::splat(c));
        }
        p
    }
}

/// `a erfc(a) exp(a^2)` as a function of `t = 1/a`, for `a` in `[1, 9.3]`.
#[inline(always)]
#[allow(clippy::excessive_precision)]
unsafe fn erfc_s<S: Simd>(t: S::V) -> S::V {
    const C: [f32; 11] = [
        0.564_212_856_155_160_6,
        -0.000_793_897_463_185_949_7,
        -0.270_675_161_732_746_75,
        -0.090_799_867_933_188_71,
        0.858_994_015_019_754_3,
        -1.263_346_254_013_568_7,
        0.846_181_742_165_287_6,
        -0.089_669_933_845_422_38,
        -0.268_776_308_755_301_84,
        0.180_829_291_055_077_3,
        -0.038_572_914_117_117_836,
    ];
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let mut p = S::splat(C[10]);
        for &c in C[..10].iter().rev() {
            p = S::fma(p, t, S::splat(c));
        }
        p
    }
}

#[inline(always)]
unsafe fn erf_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let ax = S::abs(x);
        let z = S::mul(x, x);
        let small = S::mul(x, erf_small::<S>(z));
        // Clamp so that inf gives t = 0 (exp(-z) = 0 then) rather than NaN.
        let a = S::min(ax, S::splat(10.0));
        let t = S::div(S::splat(1.0), a);
        let ec = S::mul(S::mul(exp_v::<S>(S::neg(S::mul(a, a))), t), erfc_s::<S>(t));
        let big = S::copysign(S::sub(S::splat(1.0), ec), x);
        let big = S::select(S::isnan(x), x, big);
        S::select(S::lt(ax, S::splat(1.0)), small, big)
    }
}

#[inline(always)]
unsafe fn gelu_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        let half = S::splat(0.5);
        let u = S::mul(x, S::splat(std::f32::consts::FRAC_1_SQRT_2));
        let au = S::abs(u);
        let hx = S::mul(half, x);
        let small = S::fma(hx, S::mul(u, erf_small::<S>(S::mul(u, u))), hx);
        // erfc(|u|) with |u|^2 = x^2 / 2 = (zh + zl) / 2 split exactly.
        let xc = S::min(S::max(x, S::splat(-20.0)), S::splat(20.0));
        let zh = S::mul(xc, xc);
        let zl = S::fma(xc, xc, S::neg(zh));
        let a = S::min(au, S::splat(10.0));
        let t = S::div(S::splat(1.0), a);
        let e = exp_v::<S>(S::mul(zh, S::splat(-0.5)));
        let e = S::fma(e, S::mul(zl, S::splat(-0.5)), e);
        let ec = S::mul(S::mul(e, t), erfc_s::<S>(t));
        // u >= 1: x (1 - ec / 2); u <= -1: x ec / 2.
        let pos = S::mul(x, S::fma(ec, S::splat(-0.5), S::splat(1.0)));
        let neg = S::mul(hx, ec);
        let big = S::select(S::lt(x, S::splat(0.0)), neg, pos);
        let big = S::select(S::isnan(x), x, big);
        S::select(S::lt(au, S::splat(1.0)), small, big)
    }
}

#[inline(always)]
unsafe fn gelu_tanh_v<S: Simd>(x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        const K2: f32 = 2.0 * 0.797_884_6; // 2 sqrt(2 / pi)
        let z = S::mul(x, x);
        let y2 = S::mul(x, S::fma(z, S::splat(K2 * 0.044715), S::splat(K2)));
        S::mul(x, sigmoid_v::<S>(y2))
    }
}

#[inline(always)]
unsafe fn apply_v<S: Simd>(f: Func, x: S::V) -> S::V {
    // SAFETY: only vector arithmetic on values.
    unsafe {
        match f {
            Func::Exp => exp_v::<S>(x),
            Func::Tanh => tanh_v::<S>(x),
            Func::Sigmoid => sigmoid_v::<S>(x),
            Func::Erf => erf_v::<S>(x),
            Func::Gelu => gelu_v::<S>(x),
            Func::GeluTanh => gelu_tanh_v::<S>(x),
            Func::Silu => S::mul(x, sigmoid_v::<S>(x)),
            Func::HardSwish => {
                // x / 6 + 1/2 exactly as the scalar formula rounds it (near x = -3 an FMA
                // with 1/6 would differ in the last bits of a small result).
                let h = S::add(S::div(x, S::splat(6.0)), S::splat(0.5));
                // max(0, h) drops NaN, but then x is NaN and so is the product.
                let h = S::min(S::max(h, S::splat(0.0)), S::splat(1.0));
                S::mul(x, h)
            }
            Func::HardSigmoid { alpha, beta } => {
                let h = S::fma(x, S::splat(alpha), S::splat(beta));
                // NaN: max(NaN, 0) = 0 would lose it; keep it as clamp does.
                let c = S::min(S::max(h, S::splat(0.0)), S::splat(1.0));
                S::select(S::isnan(h), h, c)
            }
            // 0 > x ? 0 : x
            Func::Relu => S::max(S::splat(0.0), x),
            // x > 0 ? x : 0
            Func::ReluZeroNan => S::max(x, S::splat(0.0)),
            Func::LeakyRelu { alpha } => {
                S::select(S::lt(x, S::splat(0.0)), S::mul(x, S::splat(alpha)), x)
            }
            Func::Clip { lo, hi } => {
                // lo > x ? lo : x, then hi < y ? hi : y; NaN x passes through both.
                S::min(S::splat(hi), S::max(S::splat(lo), x))
            }
            Func::Sqrt => S::sqrt(x),
            Func::Neg => S::neg(x),
            Func::Abs => S::abs(x),
            Func::Affine { a, b } => S::fma(x, S::splat(a), S::splat(b)),
        }
    }
}

/// Loops over full vectors, then the tail through a stack buffer.
///
/// # Safety
/// `src` readable, `dst` writable for `n`; they may be equal but must not otherwise overlap.
#[inline(always)]
unsafe fn map_generic<S: Simd>(f: Func, src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: in bounds by the loop conditions.
    unsafe {
        // One monomorphic loop per function so the match is outside the loop.
        macro_rules! lp {
            ($g:expr) => {{
                let mut i = 0;
                while i + 2 * S::LANES <= n {
                    let a = S::load(src.add(i));
                    let b = S::load(src.add(i + S::LANES));
                    S::store(dst.add(i), $g(a));
                    S::store(dst.add(i + S::LANES), $g(b));
                    i += 2 * S::LANES;
                }
                while i + S::LANES <= n {
                    S::store(dst.add(i), $g(S::load(src.add(i))));
                    i += S::LANES;
                }
                if i < n {
                    let mut buf = [0f32; 16];
                    std::ptr::copy_nonoverlapping(src.add(i), buf.as_mut_ptr(), n - i);
                    let v = $g(S::load(buf.as_ptr()));
                    S::store(buf.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), n - i);
                }
            }};
        }
        match f {
            Func::Exp => lp!(|x| exp_v::<S>(x)),
            Func::Tanh => lp!(|x| tanh_v::<S>(x)),
            Func::Sigmoid => lp!(|x| sigmoid_v::<S>(x)),
            Func::Erf => lp!(|x| erf_v::<S>(x)),
            Func::Gelu => lp!(|x| gelu_v::<S>(x)),
            Func::GeluTanh => lp!(|x| gelu_tanh_v::<S>(x)),
            Func::Relu => lp!(|x| apply_v::<S>(Func::Relu, x)),
            Func::ReluZeroNan => lp!(|x| apply_v::<S>(Func::ReluZeroNan, x)),
            f => lp!(|x| apply_v::<S>(f, x)),
        }
    }
}

/// Loads `n < 2 LANES` elements with `fill` in the missing lanes, as up to two vectors.
#[inline(always)]
unsafe fn load_tail<S: Simd>(p: *const f32, n: usize, fill: f32) -> [f32; 32] {
    let mut buf = [fill; 32];
    // SAFETY: `p` is valid for `n` reads.
    unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n) };
    buf
}

#[inline(always)]
unsafe fn reduce_generic<S: Simd>(r: Reduce, p: *const f32, n: usize, c: f32) -> f32 {
    // SAFETY: in bounds by the loop conditions.
    unsafe {
        match r {
            Reduce::Max => reduce_loop::<S>(p, n, true, f32::NEG_INFINITY, |a, x| S::max(a, x)),
            Reduce::Sum => reduce_loop::<S>(p, n, false, 0.0, |a, x| S::add(a, x)),
            Reduce::SumSqDev => {
                let cv = S::splat(c);
                reduce_loop::<S>(p, n, false, c, |a, x| {
                    let d = S::sub(x, cv);
                    S::fma(d, d, a)
                })
            }
        }
    }
}

/// Four accumulators over full vectors, the tail padded with `fill` (neutral for `step`);
/// a max (accumulators start at -inf, lanes combine with `step`) or a sum (start at 0).
#[inline(always)]
unsafe fn reduce_loop<S: Simd>(
    p: *const f32,
    n: usize,
    is_max: bool,
    fill: f32,
    step: impl Fn(S::V, S::V) -> S::V,
) -> f32 {
    // SAFETY: in bounds by the loop conditions.
    unsafe {
        let init = if is_max { f32::NEG_INFINITY } else { 0.0 };
        let mut acc = [S::splat(init); 4];
        let mut i = 0;
        while i + 4 * S::LANES <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = step(*a, S::load(p.add(i + k * S::LANES)));
            }
            i += 4 * S::LANES;
        }
        while i + S::LANES <= n {
            acc[0] = step(acc[0], S::load(p.add(i)));
            i += S::LANES;
        }
        if i < n {
            let buf = load_tail::<S>(p.add(i), n - i, fill);
            acc[1] = step(acc[1], S::load(buf.as_ptr()));
        }
        if is_max {
            let m01 = step(acc[0], acc[1]);
            let m23 = step(acc[2], acc[3]);
            S::hmax(step(m01, m23))
        } else {
            S::hsum(S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3])))
        }
    }
}

#[inline(always)]
unsafe fn exp_shift_sum_generic<S: Simd>(src: *const f32, dst: *mut f32, n: usize, m: f32) -> f32 {
    // SAFETY: in bounds by the loop conditions.
    unsafe {
        let mv = S::splat(m);
        let mut acc0 = S::splat(0.0);
        let mut acc1 = S::splat(0.0);
        let mut i = 0;
        while i + 2 * S::LANES <= n {
            let a = exp_v::<S>(S::sub(S::load(src.add(i)), mv));
            let b = exp_v::<S>(S::sub(S::load(src.add(i + S::LANES)), mv));
            S::store(dst.add(i), a);
            S::store(dst.add(i + S::LANES), b);
            acc0 = S::add(acc0, a);
            acc1 = S::add(acc1, b);
            i += 2 * S::LANES;
        }
        while i + S::LANES <= n {
            let a = exp_v::<S>(S::sub(S::load(src.add(i)), mv));
            S::store(dst.add(i), a);
            acc0 = S::add(acc0, a);
            i += S::LANES;
        }
        if i < n {
            // Padding of -inf gives exp 0 (a NaN only where the whole row is NaN anyway).
            let mut buf = load_tail::<S>(src.add(i), n - i, f32::NEG_INFINITY);
            let e = exp_v::<S>(S::sub(S::load(buf.as_ptr()), mv));
            acc1 = S::add(acc1, e);
            S::store(buf.as_mut_ptr(), e);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), n - i);
        }
        S::hsum(S::add(acc0, acc1))
    }
}

#[inline(always)]
unsafe fn normalize_generic<S: Simd>(
    src: *const f32,
    dst: *mut f32,
    n: usize,
    mean: f32,
    inv: f32,
    scale: *const f32,
    bias: Option<*const f32>,
) {
    // SAFETY: in bounds by the loop conditions.
    unsafe {
        let (mv, iv) = (S::splat(mean), S::splat(inv));
        let one = |i: usize, x: S::V, s: S::V, b: Option<S::V>| {
            let y = S::mul(S::mul(S::sub(x, mv), iv), s);
            S::store(dst.add(i), b.map_or(y, |b| S::add(y, b)))
        };
        let mut i = 0;
        while i + S::LANES <= n {
            let b = bias.map(|b| S::load(b.add(i)));
            one(i, S::load(src.add(i)), S::load(scale.add(i)), b);
            i += S::LANES;
        }
        while i < n {
            let mut y = (*src.add(i) - mean) * inv * *scale.add(i);
            if let Some(b) = bias {
                y += *b.add(i);
            }
            *dst.add(i) = y;
            i += 1;
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn binary_generic<S: Simd>(
    op: Bin,
    pa: *const f32,
    sa: usize,
    pb: *const f32,
    sb: usize,
    dst: *mut f32,
    n: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match op {
            Bin::Add => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| S::add(a, b)),
            Bin::Sub => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| S::sub(a, b)),
            Bin::Mul => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| S::mul(a, b)),
            Bin::Div => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| S::div(a, b)),
            Bin::Max => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| {
                let m = S::max(a, b);
                S::select(S::isnan(a), a, m)
            }),
            Bin::Min => bin_loop::<S>(pa, sa, pb, sb, dst, n, |a, b| {
                let m = S::min(a, b);
                S::select(S::isnan(a), a, m)
            }),
        }
    }
}

/// The loop of [`binary_generic`] for one operation. (x86 `max(a, b)` already returns
/// `b` where either is NaN, so only a NaN `a` needs a fix-up in Max and Min.)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bin_loop<S: Simd>(
    pa: *const f32,
    sa: usize,
    pb: *const f32,
    sb: usize,
    dst: *mut f32,
    n: usize,
    g: impl Fn(S::V, S::V) -> S::V,
) {
    // SAFETY: in bounds by the loop conditions; stride-0 operands are read at index 0.
    unsafe {
        let mut i = 0;
        match (sa, sb) {
            (1, 1) => {
                while i + S::LANES <= n {
                    S::store(dst.add(i), g(S::load(pa.add(i)), S::load(pb.add(i))));
                    i += S::LANES;
                }
            }
            (1, _) => {
                let bv = S::splat(*pb);
                while i + S::LANES <= n {
                    S::store(dst.add(i), g(S::load(pa.add(i)), bv));
                    i += S::LANES;
                }
            }
            _ => {
                let av = S::splat(*pa);
                while i + S::LANES <= n {
                    S::store(dst.add(i), g(av, S::load(pb.add(i))));
                    i += S::LANES;
                }
            }
        }
        if i < n {
            let (mut ba, mut bb) = ([0f32; 16], [0f32; 16]);
            for j in 0..n - i {
                ba[j] = *pa.add((i + j) * sa);
                bb[j] = *pb.add((i + j) * sb);
            }
            let v = g(S::load(ba.as_ptr()), S::load(bb.as_ptr()));
            S::store(ba.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(ba.as_ptr(), dst.add(i), n - i);
        }
    }
}

// ---------------------------------------------------------------------------------------
// x86 instantiations.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    pub struct Avx2;
    pub struct Avx512;

    // SAFETY: only used from `#[target_feature(enable = "avx2,fma")]` functions.
    unsafe impl Simd for Avx2 {
        type V = __m256;
        type M = __m256;
        type I = __m256i;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sqrt(a: __m256) -> __m256 {
            unsafe { _mm256_sqrt_ps(a) }
        }
        #[inline(always)]
        unsafe fn abs(a: __m256) -> __m256 {
            unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        unsafe fn neg(a: __m256) -> __m256 {
            unsafe { _mm256_xor_ps(_mm256_set1_ps(-0.0), a) }
        }
        #[inline(always)]
        unsafe fn copysign(mag: __m256, sign: __m256) -> __m256 {
            unsafe {
                let s = _mm256_set1_ps(-0.0);
                _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign))
            }
        }
        #[inline(always)]
        unsafe fn lt(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        unsafe fn isnan(a: __m256) -> __m256 {
            unsafe { _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a) }
        }
        #[inline(always)]
        unsafe fn select(m: __m256, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_blendv_ps(b, a, m) }
        }
        #[inline(always)]
        unsafe fn bits(a: __m256) -> __m256i {
            unsafe { _mm256_castps_si256(a) }
        }
        #[inline(always)]
        unsafe fn from_bits(a: __m256i) -> __m256 {
            unsafe { _mm256_castsi256_ps(a) }
        }
        #[inline(always)]
        unsafe fn iadd(a: __m256i, b: i32) -> __m256i {
            unsafe { _mm256_add_epi32(a, _mm256_set1_epi32(b)) }
        }
        #[inline(always)]
        unsafe fn isub(a: __m256i, b: __m256i) -> __m256i {
            unsafe { _mm256_sub_epi32(a, b) }
        }
        #[inline(always)]
        unsafe fn sra1(a: __m256i) -> __m256i {
            unsafe { _mm256_srai_epi32::<1>(a) }
        }
        #[inline(always)]
        unsafe fn sll23(a: __m256i) -> __m256i {
            unsafe { _mm256_slli_epi32::<23>(a) }
        }
        #[inline(always)]
        unsafe fn hsum(a: __m256) -> f32 {
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
                _mm_cvtss_f32(s)
            }
        }
        #[inline(always)]
        unsafe fn hmax(a: __m256) -> f32 {
            unsafe {
                let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_max_ss(s, _mm_shuffle_ps::<1>(s, s));
                _mm_cvtss_f32(s)
            }
        }
    }

    // SAFETY: only used from `#[target_feature(enable = "avx512f,avx2,fma")]` functions.
    unsafe impl Simd for Avx512 {
        type V = __m512;
        type M = __mmask16;
        type I = __m512i;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sqrt(a: __m512) -> __m512 {
            unsafe { _mm512_sqrt_ps(a) }
        }
        #[inline(always)]
        unsafe fn abs(a: __m512) -> __m512 {
            unsafe { _mm512_abs_ps(a) }
        }
        #[inline(always)]
        unsafe fn neg(a: __m512) -> __m512 {
            unsafe {
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(a),
                    _mm512_set1_epi32(i32::MIN),
                ))
            }
        }
        #[inline(always)]
        unsafe fn copysign(mag: __m512, sign: __m512) -> __m512 {
            unsafe {
                let m = _mm512_set1_epi32(i32::MIN);
                _mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_andnot_si512(m, _mm512_castps_si512(mag)),
                    _mm512_and_si512(m, _mm512_castps_si512(sign)),
                ))
            }
        }
        #[inline(always)]
        unsafe fn lt(a: __m512, b: __m512) -> __mmask16 {
            unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
        }
        #[inline(always)]
        unsafe fn isnan(a: __m512) -> __mmask16 {
            unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) }
        }
        #[inline(always)]
        unsafe fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mask_blend_ps(m, b, a) }
        }
        #[inline(always)]
        unsafe fn bits(a: __m512) -> __m512i {
            unsafe { _mm512_castps_si512(a) }
        }
        #[inline(always)]
        unsafe fn from_bits(a: __m512i) -> __m512 {
            unsafe { _mm512_castsi512_ps(a) }
        }
        #[inline(always)]
        unsafe fn iadd(a: __m512i, b: i32) -> __m512i {
            unsafe { _mm512_add_epi32(a, _mm512_set1_epi32(b)) }
        }
        #[inline(always)]
        unsafe fn isub(a: __m512i, b: __m512i) -> __m512i {
            unsafe { _mm512_sub_epi32(a, b) }
        }
        #[inline(always)]
        unsafe fn sra1(a: __m512i) -> __m512i {
            unsafe { _mm512_srai_epi32::<1>(a) }
        }
        #[inline(always)]
        unsafe fn sll23(a: __m512i) -> __m512i {
            unsafe { _mm512_slli_epi32::<23>(a) }
        }
        #[inline(always)]
        unsafe fn hsum(a: __m512) -> f32 {
            unsafe { _mm512_reduce_add_ps(a) }
        }
        #[inline(always)]
        unsafe fn hmax(a: __m512) -> f32 {
            unsafe { _mm512_reduce_max_ps(a) }
        }
    }

    macro_rules! instantiate {
        ($feat:literal, $S:ty, $map:ident, $red:ident, $ess:ident, $norm:ident, $bin:ident) => {
            #[target_feature(enable = $feat)]
            pub unsafe fn $map(f: Func, src: *const f32, dst: *mut f32, n: usize) {
                // SAFETY: forwarded from the caller.
                unsafe { map_generic::<$S>(f, src, dst, n) }
            }

            #[target_feature(enable = $feat)]
            pub unsafe fn $red(r: Reduce, p: *const f32, n: usize, c: f32) -> f32 {
                // SAFETY: forwarded from the caller.
                unsafe { reduce_generic::<$S>(r, p, n, c) }
            }

            #[target_feature(enable = $feat)]
            pub unsafe fn $ess(src: *const f32, dst: *mut f32, n: usize, m: f32) -> f32 {
                // SAFETY: forwarded from the caller.
                unsafe { exp_shift_sum_generic::<$S>(src, dst, n, m) }
            }

            #[target_feature(enable = $feat)]
            pub unsafe fn $norm(
                src: *const f32,
                dst: *mut f32,
                n: usize,
                mean: f32,
                inv: f32,
                scale: *const f32,
                bias: Option<*const f32>,
            ) {
                // SAFETY: forwarded from the caller.
                unsafe { normalize_generic::<$S>(src, dst, n, mean, inv, scale, bias) }
            }

            #[target_feature(enable = $feat)]
            pub unsafe fn $bin(
                op: Bin,
                pa: *const f32,
                sa: usize,
                pb: *const f32,
                sb: usize,
                dst: *mut f32,
                n: usize,
            ) {
                // SAFETY: forwarded from the caller.
                unsafe { binary_generic::<$S>(op, pa, sa, pb, sb, dst, n) }
            }
        };
    }

    instantiate!(
        "avx2,fma",
        Avx2,
        map_avx2,
        reduce_avx2,
        exp_shift_sum_avx2,
        normalize_avx2,
        binary_avx2
    );
    instantiate!(
        "avx512f,avx2,fma",
        Avx512,
        map_avx512,
        reduce_avx512,
        exp_shift_sum_avx512,
        normalize_avx512,
        binary_avx512
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::erf64;

    /// erfc in f64 with full relative accuracy in the tail: `1 - erf` below 2, the
    /// continued fraction `e^-a^2 / sqrt(pi) / (a + 1/2 / (a + 1 / (a + 3/2 / ...)))` above.
    fn erfc64(a: f64) -> f64 {
        if a < 2.0 {
            return 1.0 - erf64(a);
        }
        let mut t = a;
        for k in (1..=400).rev() {
            t = a + (k as f64 / 2.0) / t;
        }
        (-a * a).exp() / std::f64::consts::PI.sqrt() / t
    }

    fn sigmoid64(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    fn reference(f: Func, x: f32) -> f64 {
        let x = x as f64;
        match f {
            Func::Exp => x.exp(),
            Func::Tanh => x.tanh(),
            Func::Sigmoid => sigmoid64(x),
            Func::Erf => erf64(x),
            Func::Gelu => {
                let u = x / std::f64::consts::SQRT_2;
                if x.is_infinite() && x < 0.0 {
                    f64::NAN // 0.5 x (1 + erf(u)) = -inf * 0
                } else if u < 0.0 {
                    0.5 * x * erfc64(-u)
                } else {
                    0.5 * x * (1.0 + erf64(u))
                }
            }
            Func::GeluTanh => {
                let y = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                x * sigmoid64(2.0 * y)
            }
            Func::Silu => x * sigmoid64(x),
            _ => unreachable!(),
        }
    }

    /// Relative error of `got` against `want`, 0 where both are the same special value;
    /// results in the subnormal range are judged on an absolute scale of 2^-149 (times
    /// `|x|` for the products `x f(x)`, whose factor may be subnormal).
    fn rel_err_x(got: f32, want: f64, x: f32) -> f64 {
        let w32 = want as f32;
        if want.is_nan() || w32.is_infinite() {
            return if got.to_bits() == w32.to_bits() || (got.is_nan() && want.is_nan()) {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let d = (got as f64 - want).abs();
        if d <= 1.5 * f32::from_bits(1) as f64 * (x.abs() as f64).max(1.0) {
            return 0.0;
        }
        d / want.abs().max(f32::MIN_POSITIVE as f64)
    }

    fn sweep() -> Vec<f32> {
        let step: u32 = if cfg!(debug_assertions) {
            40_009
        } else {
            4_999
        };
        let mut v: Vec<f32> = (0..=u32::MAX / step)
            .map(|i| f32::from_bits(i * step))
            .filter(|x| !x.is_nan())
            .collect();
        v.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            88.72283,
            88.72284,
            -87.33654,
            -103.97,
            -104.5,
            0.625,
            -0.625,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
        ]);
        for i in -20_000..=20_000 {
            v.push(i as f32 * 0.001); // dense near the piece boundaries of [-20, 20]
        }
        v
    }

    #[test]
    fn transcendental_accuracy_every_isa() {
        let xs = sweep();
        let funcs = [
            (Func::Exp, 3e-7),
            (Func::Tanh, 4e-7),
            (Func::Sigmoid, 4e-7),
            (Func::Erf, 6e-7),
            (Func::Gelu, 1e-6),
            (Func::Silu, 5e-7),
        ];
        for isa in Isa::available() {
            for (f, tol) in funcs {
                let mut y = vec![0f32; xs.len()];
                map_with(isa, f, &xs, &mut y);
                let mut worst = (0.0, 0.0f32);
                for (&x, &g) in xs.iter().zip(&y) {
                    let e = rel_err_x(g, reference(f, x), x);
                    if e > worst.0 {
                        worst = (e, x);
                    }
                }
                assert!(
                    worst.0 <= tol,
                    "{isa:?} {f:?}: rel err {:e} at x = {:e} (got {:e}, want {:e})",
                    worst.0,
                    worst.1,
                    {
                        let mut o = [0f32];
                        map_with(isa, f, &[worst.1], &mut o);
                        o[0]
                    },
                    reference(f, worst.1)
                );
                eprintln!("{isa:?} {f:?}: max rel err {:e} at {:e}", worst.0, worst.1);
            }
            // gelu_tanh: the argument 2y of the sigmoid carries f32 rounding, amplified
            // by |2y| in the tail; allow for that condition number.
            let mut y = vec![0f32; xs.len()];
            map_with(isa, Func::GeluTanh, &xs, &mut y);
            for (&x, &g) in xs.iter().zip(&y) {
                let x64 = x as f64;
                let y2 = 2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
                let tol = 1e-6 + (6e-7 * y2.abs()).max(0.0);
                let e = rel_err_x(g, reference(Func::GeluTanh, x), x);
                assert!(e <= tol, "{isa:?} gelu_tanh({x:e}) = {g:e}: err {e:e}");
            }
        }
    }

    #[test]
    fn special_values() {
        for isa in Isa::available() {
            let xs = [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                89.0,
                -200.0,
            ];
            let mut y = [0f32; 7];
            map_with(isa, Func::Exp, &xs, &mut y);
            assert!(y[0].is_nan());
            assert_eq!(&y[1..], &[f32::INFINITY, 0.0, 1.0, 1.0, f32::INFINITY, 0.0]);
            map_with(isa, Func::Tanh, &xs, &mut y);
            assert!(y[0].is_nan());
            assert_eq!(y[1..3], [1.0, -1.0]);
            map_with(isa, Func::Sigmoid, &xs, &mut y);
            assert!(y[0].is_nan());
            assert_eq!(y[1..4], [1.0, 0.0, 0.5]);
            map_with(isa, Func::Erf, &xs, &mut y);
            assert!(y[0].is_nan());
            assert_eq!(y[1..3], [1.0, -1.0]);
            assert_eq!(y[4].to_bits(), (-0.0f32).to_bits());
            map_with(isa, Func::Gelu, &xs, &mut y);
            assert!(y[0].is_nan() && y[2].is_nan());
            assert_eq!(y[1], f32::INFINITY);
            assert_eq!(y[6], -0.0);
        }
    }

    #[test]
    fn simple_funcs_match_scalar_semantics_every_length() {
        let funcs = [
            Func::Relu,
            Func::ReluZeroNan,
            Func::Clip { lo: -1.0, hi: 6.0 },
            Func::LeakyRelu { alpha: 0.1 },
            Func::HardSwish,
            Func::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Func::Sqrt,
            Func::Neg,
            Func::Abs,
            Func::Affine { a: 2.0, b: -1.0 },
        ];
        let scalar = |f: Func, x: f32| -> f32 {
            match f {
                Func::Relu => {
                    if x < 0.0 {
                        0.0
                    } else {
                        x
                    }
                }
                Func::ReluZeroNan => {
                    if x > 0.0 {
                        x
                    } else {
                        0.0
                    }
                }
                Func::Clip { lo, hi } => {
                    if x.is_nan() {
                        x
                    } else {
                        x.max(lo).min(hi)
                    }
                }
                Func::LeakyRelu { alpha } => {
                    if x < 0.0 {
                        alpha * x
                    } else {
                        x
                    }
                }
                Func::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
                Func::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
                Func::Sqrt => x.sqrt(),
                Func::Neg => -x,
                Func::Abs => x.abs(),
                Func::Affine { a, b } => x * a + b,
                _ => unreachable!(),
            }
        };
        let base: Vec<f32> = (0..45)
            .map(|i| match i % 9 {
                0 => f32::NAN,
                1 => -0.0,
                2 => f32::INFINITY,
                3 => f32::NEG_INFINITY,
                _ => (i as f32 - 20.0) * 0.37,
            })
            .collect();
        for isa in Isa::available() {
            for f in funcs {
                for n in 0..base.len() {
                    let mut y = base[..n].to_vec();
                    map_inplace_with(isa, f, &mut y);
                    for (x, g) in base.iter().zip(&y) {
                        let w = scalar(f, *x);
                        let close = (g - w).abs() <= 1e-6 * w.abs().max(1.0);
                        assert!(
                            (g.is_nan() && w.is_nan())
                                || g.to_bits() == w.to_bits()
                                || (close && !matches!(f, Func::Relu | Func::ReluZeroNan)),
                            "{isa:?} {f:?}({x}) = {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reductions_and_row_kernels() {
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
        };
        for isa in Isa::available() {
            for n in [0usize, 1, 3, 8, 15, 16, 17, 31, 64, 100, 128, 768, 1000] {
                let x: Vec<f32> = (0..n).map(|_| rnd()).collect();
                let mx = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(reduce_with(isa, Reduce::Max, &x, 0.0), mx);
                let s: f64 = x.iter().map(|&v| v as f64).sum();
                assert!(
                    (reduce_with(isa, Reduce::Sum, &x, 0.0) as f64 - s).abs()
                        < 1e-4 * n as f64 + 1e-6
                );
                let c = 0.25f32;
                let q: f64 = x.iter().map(|&v| (v as f64 - c as f64).powi(2)).sum();
                let got = reduce_with(isa, Reduce::SumSqDev, &x, c) as f64;
                assert!((got - q).abs() <= 1e-5 * q.max(1.0), "{isa:?} {n}");
                let mut d = vec![0f32; n];
                let tot = exp_shift_sum_with(isa, &x, &mut d, mx);
                let mut want_tot = 0.0f64;
                for (xi, di) in x.iter().zip(&d) {
                    let w = ((xi - mx) as f64).exp();
                    want_tot += w;
                    assert!((*di as f64 - w).abs() <= 3e-7 * w);
                }
                assert!((tot as f64 - want_tot).abs() <= 1e-6 * want_tot.max(1.0));
                let scale: Vec<f32> = (0..n).map(|_| rnd()).collect();
                let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
                for b in [&bias[..], &[][..]] {
                    normalize_row_with(isa, &x, &mut d, 0.5, 1.5, &scale, b);
                    for i in 0..n {
                        let w = (x[i] - 0.5) * 1.5 * scale[i] + b.get(i).copied().unwrap_or(0.0);
                        assert!((d[i] - w).abs() <= 1e-5 * w.abs().max(1.0));
                    }
                }
            }
        }
    }

    #[test]
    fn binary_ops_every_layout() {
        let a: Vec<f32> = (0..37)
            .map(|i| {
                if i == 5 {
                    f32::NAN
                } else {
                    i as f32 * 0.5 - 7.0
                }
            })
            .collect();
        let b: Vec<f32> = (0..37)
            .map(|i| {
                if i == 9 {
                    f32::NAN
                } else {
                    3.0 - i as f32 * 0.25
                }
            })
            .collect();
        let same = |g: f32, w: f32| (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits();
        for isa in Isa::available() {
            for op in [Bin::Add, Bin::Sub, Bin::Mul, Bin::Div, Bin::Max, Bin::Min] {
                for n in [0, 1, 7, 16, 37] {
                    let mut d = vec![0f32; n];
                    binary_with(isa, op, Operands::Both(&a[..n], &b[..n]), &mut d);
                    for i in 0..n {
                        assert!(same(d[i], op.scalar(a[i], b[i])), "{isa:?} {op:?}");
                    }
                    for s in [2.5f32, f32::NAN] {
                        binary_with(isa, op, Operands::ScalarB(&a[..n], s), &mut d);
                        for i in 0..n {
                            assert!(same(d[i], op.scalar(a[i], s)), "{isa:?} {op:?}");
                        }
                        binary_with(isa, op, Operands::ScalarA(s, &b[..n]), &mut d);
                        for i in 0..n {
                            assert!(same(d[i], op.scalar(s, b[i])), "{isa:?} {op:?}");
                        }
                    }
                }
            }
        }
    }
}

/// Throughput check: `cargo test --release -p millrace-kernels vmath_bench -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use super::*;
    use crate::activation::Activation;
    use std::time::Instant;

    fn best(mut f: impl FnMut()) -> f64 {
        let mut b = f64::INFINITY;
        for _ in 0..20 {
            let t = Instant::now();
            f();
            b = b.min(t.elapsed().as_secs_f64());
        }
        b
    }

    #[test]
    #[ignore]
    fn vmath_bench() {
        let n = 1 << 16;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 16.0 - 8.0).collect();
        let mut y = vec![0f32; n];
        let gbs = |t: f64| (n * 8) as f64 / t / 1e9;
        let scalar = [
            (Func::Exp, Activation::None),
            (Func::Erf, Activation::None),
            (Func::Gelu, Activation::Gelu),
            (Func::Tanh, Activation::Tanh),
            (Func::Sigmoid, Activation::Sigmoid),
        ];
        for (f, act) in scalar {
            let ts = best(|| {
                for (o, &v) in y.iter_mut().zip(&x) {
                    *o = match f {
                        Func::Exp => v.exp(),
                        Func::Erf => crate::activation::erf(v),
                        _ => act.apply(v),
                    };
                }
                std::hint::black_box(&y);
            });
            let mut line = format!("{f:?}: scalar {:.2} GB/s", gbs(ts));
            for isa in Isa::available() {
                let t = best(|| {
                    map_with(isa, f, &x, &mut y);
                    std::hint::black_box(&y);
                });
                line += &format!(", {isa:?} {:.2} GB/s", gbs(t));
            }
            eprintln!("{line}");
        }
    }
}
