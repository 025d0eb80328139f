//! Activations that kernels apply in their epilogues, on output tiles still in cache.
//!
//! Each variant's formula is the ONNX op's (`Relu`, `Clip`, `Sigmoid`, `HardSigmoid`,
//! `HardSwish`, `LeakyRelu`, `Tanh`, `Gelu` with `approximate=none|tanh`) so a fused node
//! gives the same numbers as the unfused graph. SiLU is `x * Sigmoid(x)`, the pair PyTorch
//! exports for `nn.SiLU`.

/// An activation applied elementwise after bias and residual.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// `min(max(x, lo), hi)`, NaN kept (as the Clip op); Relu6 is `Clip { lo: 0, hi: 6 }`.
    Clip {
        lo: f32,
        hi: f32,
    },
    Sigmoid,
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// `x * sigmoid(x)`.
    Silu,
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    GeluTanh,
}

impl Activation {
    /// The activation of one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            // As millrace's Relu op (and ONNX Runtime's max with zero): NaN and -0 give +0.
            Activation::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Activation::Clip { lo, hi } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(lo).min(hi)
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Silu => x * sigmoid(x),
            Activation::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
            }
        }
    }

    /// How a kernel's register-tile epilogue takes this activation: `(relu, clamp, after)`.
    /// Relu and Clip are applied in the tile; every other activation (`after`) is applied
    /// by the caller to the stored rows.
    pub fn in_tile(self) -> (bool, Option<(f32, f32)>, bool) {
        match self {
            Activation::None => (false, None, false),
            Activation::Relu => (true, None, false),
            Activation::Clip { lo, hi } => (false, Some((lo, hi)), false),
            _ => (false, None, true),
        }
    }

    /// Applies the activation to every element in place.
    ///
    /// Vectorized through [`crate::vmath`] (AVX-512 / AVX2 / portable); the transcendental
    /// variants agree with [`Activation::apply`] to about 1e-6 relative, the others exactly.
    pub fn apply_slice(self, xs: &mut [f32]) {
        use crate::vmath::{map_inplace, Func};
        let f = match self {
            Activation::None => return,
            Activation::Relu => Func::ReluZeroNan,
            Activation::Clip { lo, hi } => Func::Clip { lo, hi },
            Activation::Sigmoid => Func::Sigmoid,
            Activation::HardSigmoid { alpha, beta } => Func::HardSigmoid { alpha, beta },
            Activation::HardSwish => Func::HardSwish,
            Activation::Silu => Func::Silu,
            Activation::LeakyRelu { alpha } => Func::LeakyRelu { alpha },
            Activation::Tanh => Func::Tanh,
            Activation::Gelu => Func::Gelu,
            Activation::GeluTanh => Func::GeluTanh,
        };
        map_inplace(f, xs)
    }

    pub fn is_none(self) -> bool {
        self == Activation::None
    }

    /// Short name for plans and dumps.
    pub fn describe(self) -> String {
        match self {
            Activation::None => "none".into(),
            Activation::Relu => "relu".into(),
            Activation::Clip { lo, hi } => format!("clip({lo},{hi})"),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::HardSigmoid { alpha, beta } => format!("hardsigmoid({alpha},{beta})"),
            Activation::HardSwish => "hardswish".into(),
            Activation::Silu => "silu".into(),
            Activation::LeakyRelu { alpha } => format!("leakyrelu({alpha})"),
            Activation::Tanh => "tanh".into(),
            Activation::Gelu => "gelu".into(),
            Activation::GeluTanh => "gelu_tanh".into(),
        }
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Error function, computed in f64 (Abramowitz-Stegun 7.1.26 is too coarse for 1e-6).
#[inline]
pub fn erf(x: f32) -> f32 {
    erf64(x as f64) as f32
}

/// W. J. Cody's rational approximations, |error| < 1e-15 relative.
#[allow(clippy::excessive_precision)]
pub fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax < 0.5 {
        const P: [f64; 5] = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 5] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
            1.0,
        ];
        let z = x * x;
        let num = (((P[4] * z + P[3]) * z + P[2]) * z + P[1]) * z + P[0];
        let den = (((Q[4] * z + Q[3]) * z + Q[2]) * z + Q[1]) * z + Q[0];
        return x * num / den;
    }
    let c = if ax < 4.0 {
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_5e3,
            1.712_047_612_634_070_6e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_701e-1,
            2.153_115_354_744_038_3e-8,
        ];
        const Q: [f64; 9] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_3e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_5e1,
            1.0,
        ];
        let mut num = P[8];
        let mut den = Q[8];
        for i in (0..8).rev() {
            num = num * ax + P[i];
            den = den * ax + Q[i];
        }
        (-ax * ax).exp() * num / den
    } else {
        const P: [f64; 6] = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_4e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_6e-2,
        ];
        const Q: [f64; 6] = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_132e-2,
            5.279_051_029_514_284e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822,
            1.0,
        ];
        let z = 1.0 / (ax * ax);
        let mut num = P[5];
        let mut den = Q[5];
        for i in (0..5).rev() {
            num = num * z + P[i];
            den = den * z + Q[i];
        }
        let r = z * num / den;
        (-ax * ax).exp() / ax * (0.564_189_583_547_756_3 + r)
    };
    let v = 1.0 - c;
    if x < 0.0 {
        -v
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.3, 0.328_626_759_3),
            (1.0, 0.842_700_792_9),
            (-2.0, -0.995_322_265_0),
            (4.5, 0.999_999_999_8),
        ] {
            assert!((erf64(x) - want).abs() < 1e-9, "erf({x})");
        }
    }

    #[test]
    fn activations_follow_onnx_formulas() {
        assert_eq!(Activation::Relu.apply(-1.0), 0.0);
        assert_eq!(Activation::Clip { lo: 0.0, hi: 6.0 }.apply(7.0), 6.0);
        assert!((Activation::Sigmoid.apply(0.0) - 0.5).abs() < 1e-7);
        assert!((Activation::HardSwish.apply(1.0) - 1.0 * (1.0 / 6.0 + 0.5)).abs() < 1e-7);
        assert!((Activation::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::GeluTanh.apply(1.0) - 0.841_192).abs() < 1e-5);
        let mut v = [-2.0, 3.0];
        Activation::LeakyRelu { alpha: 0.1 }.apply_slice(&mut v);
        assert_eq!(v, [-0.2, 3.0]);
    }

    #[test]
    fn apply_slice_matches_apply() {
        let acts = [
            Activation::Relu,
            Activation::Clip { lo: 0.0, hi: 6.0 },
            Activation::Sigmoid,
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Silu,
            Activation::LeakyRelu { alpha: 0.01 },
            Activation::Tanh,
            Activation::Gelu,
            Activation::GeluTanh,
        ];
        let xs: Vec<f32> = (0..300)
            .map(|i| match i {
                0 => f32::NAN,
                1 => -0.0,
                2 => f32::INFINITY,
                _ => (i as f32 - 150.0) * 0.071,
            })
            .collect();
        for a in acts {
            for n in [1, 5, 16, 31, 300] {
                let mut v = xs[..n].to_vec();
                a.apply_slice(&mut v);
                for (x, g) in xs.iter().zip(&v) {
                    let w = a.apply(*x);
                    let ok = (g.is_nan() && w.is_nan())
                        || g == &w
                        || (g - w).abs() <= 2e-6 * w.abs() + 1e-7 * x.abs();
                    assert!(ok, "{a:?}({x}) = {g}, want {w}");
                }
            }
        }
    }
}
