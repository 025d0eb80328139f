//! Narrow element types: the float8 formats (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0),
//! float4 E2M1, and 4-bit and 2-bit integers.
//!
//! In memory every element takes one byte (packing only happens in `TensorProto`s). The
//! float types hold their bit pattern, so `==` compares bits (NaN equals the same NaN,
//! `-0 != +0`); use `to_f32` for numeric comparisons. The integer types hold their value.
//!
//! Conversions from `f32` follow ONNX's reference implementation (ml_dtypes): round to
//! nearest even, with the `saturate` rules of the ONNX `Cast` operator for float8.

/// A float format narrower than `f16` with an implicit leading one and subnormals.
#[derive(Clone, Copy, Debug)]
struct Format {
    mbits: u32,
    ebits: u32,
    bias: i32,
    kind: Kind,
    /// Largest finite value.
    max: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// IEEE-like: all-ones exponent is infinity (mantissa 0) or NaN (E5M2).
    Ieee,
    /// No infinities; S.1111.111 is NaN (E4M3FN).
    Fn,
    /// No infinities, no negative zero; 0x80 is the only NaN (E4M3FNUZ, E5M2FNUZ).
    Fnuz,
    /// No infinities and no NaN (E2M1); always saturates.
    NoNan,
}

const E4M3FN: Format = Format {
    mbits: 3,
    ebits: 4,
    bias: 7,
    kind: Kind::Fn,
    max: 448.0,
};
const E4M3FNUZ: Format = Format {
    mbits: 3,
    ebits: 4,
    bias: 8,
    kind: Kind::Fnuz,
    max: 240.0,
};
const E5M2: Format = Format {
    mbits: 2,
    ebits: 5,
    bias: 15,
    kind: Kind::Ieee,
    max: 57344.0,
};
const E5M2FNUZ: Format = Format {
    mbits: 2,
    ebits: 5,
    bias: 16,
    kind: Kind::Fnuz,
    max: 57344.0,
};
const E2M1: Format = Format {
    mbits: 1,
    ebits: 2,
    bias: 1,
    kind: Kind::NoNan,
    max: 6.0,
};

fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

impl Format {
    fn sign_bit(self) -> u8 {
        1 << (self.mbits + self.ebits)
    }

    fn decode(self, bits: u8) -> f32 {
        let sign_bit = self.sign_bit();
        let bits = bits & (sign_bit | (sign_bit - 1));
        if self.kind == Kind::Fnuz && bits == 0x80 {
            return f32::NAN;
        }
        let neg = bits & sign_bit != 0;
        let emask = (1u8 << self.ebits) - 1;
        let mmask = (1u8 << self.mbits) - 1;
        let exp = (bits >> self.mbits) & emask;
        let mant = bits & mmask;
        let mag = match self.kind {
            Kind::Ieee if exp == emask => {
                if mant == 0 {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            }
            Kind::Fn if exp == emask && mant == mmask => f64::NAN,
            _ if exp == 0 => mant as f64 * pow2(1 - self.bias - self.mbits as i32),
            _ => (1.0 + mant as f64 / pow2(self.mbits as i32)) * pow2(exp as i32 - self.bias),
        };
        (if neg { -mag } else { mag }) as f32
    }

    /// The bits of the largest finite value, with `neg`'s sign.
    fn max_bits(self, neg: bool) -> u8 {
        self.encode_finite(self.max, neg)
    }

    /// The bits of NaN (or what overflow gives without saturation) for sign `neg`.
    fn nan_bits(self, neg: bool) -> u8 {
        let s = if neg { self.sign_bit() } else { 0 };
        match self.kind {
            // Quiet NaN: exponent all ones, top mantissa bit set.
            Kind::Ieee => s | (((1u8 << self.ebits) - 1) << self.mbits) | (1 << (self.mbits - 1)),
            Kind::Fn => s | (self.sign_bit() - 1),
            Kind::Fnuz => 0x80,
            // ml_dtypes turns NaN into a zero of the opposite sign.
            Kind::NoNan => {
                if neg {
                    0
                } else {
                    self.sign_bit()
                }
            }
        }
    }

    fn inf_bits(self, neg: bool) -> u8 {
        let s = if neg { self.sign_bit() } else { 0 };
        s | (((1u8 << self.ebits) - 1) << self.mbits)
    }

    /// Encodes a representable magnitude `v >= 0` with sign `neg`.
    fn encode_finite(self, v: f64, neg: bool) -> u8 {
        let emin = 1 - self.bias;
        let s = if neg { self.sign_bit() } else { 0 };
        if v == 0.0 {
            return if self.kind == Kind::Fnuz { 0 } else { s };
        }
        let m = self.mbits as i32;
        let (exp, mant) = if v < pow2(emin) {
            (0u8, (v / pow2(emin - m)) as u8)
        } else {
            let e = exponent_of(v);
            let mant = (v / pow2(e) * pow2(m)) as u32 - (1u32 << m);
            ((e + self.bias) as u8, mant as u8)
        };
        s | (exp << self.mbits) | mant
    }

    /// Rounds `x` to nearest even; `saturate` clamps out-of-range values (and infinities) to
    /// the largest finite value, otherwise they become infinity or NaN as the format has.
    fn encode(self, x: f32, saturate: bool) -> u8 {
        let neg = x.is_sign_negative();
        if x.is_nan() {
            return self.nan_bits(neg);
        }
        let saturate = saturate || self.kind == Kind::NoNan;
        let overflow = |neg: bool| {
            if saturate {
                self.max_bits(neg)
            } else if self.kind == Kind::Ieee {
                self.inf_bits(neg)
            } else {
                self.nan_bits(neg)
            }
        };
        let a = (x as f64).abs();
        if a.is_infinite() {
            return overflow(neg);
        }
        if a == 0.0 {
            return self.encode_finite(0.0, neg);
        }
        let emin = 1 - self.bias;
        let e = exponent_of(a).max(emin);
        let q = pow2(e - self.mbits as i32);
        let r = (a / q).round_ties_even() * q;
        if r > self.max {
            return overflow(neg);
        }
        self.encode_finite(r, neg)
    }
}

/// `floor(log2(v))` for a positive normal f64.
fn exponent_of(v: f64) -> i32 {
    ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

macro_rules! small_float {
    ($(#[$doc:meta])* $name:ident, $fmt:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(pub u8);

        impl $name {
            /// Rounds to nearest even; see the ONNX `Cast` operator for `saturate`.
            pub fn from_f32(x: f32, saturate: bool) -> Self {
                $name($fmt.encode(x, saturate))
            }
            /// The exact value.
            pub fn to_f32(self) -> f32 {
                $fmt.decode(self.0)
            }
            pub fn to_f64(self) -> f64 {
                self.to_f32() as f64
            }
            pub fn is_nan(self) -> bool {
                self.to_f32().is_nan()
            }
            pub fn to_bits(self) -> u8 {
                self.0
            }
            pub fn from_bits(b: u8) -> Self {
                $name(b)
            }
        }
    };
}

small_float!(
    /// float8 E4M3FN: 4 exponent bits (bias 7), 3 mantissa bits, no infinities, NaN S.1111.111.
    F8E4M3FN,
    E4M3FN
);
small_float!(
    /// float8 E4M3FNUZ: bias 8, no infinities, no negative zero, NaN 0x80.
    F8E4M3FNUZ,
    E4M3FNUZ
);
small_float!(
    /// float8 E5M2: 5 exponent bits (bias 15), 2 mantissa bits, IEEE infinities and NaNs.
    F8E5M2,
    E5M2
);
small_float!(
    /// float8 E5M2FNUZ: bias 16, no infinities, no negative zero, NaN 0x80.
    F8E5M2FNUZ,
    E5M2FNUZ
);
small_float!(
    /// float4 E2M1 (low nibble): bias 1, no infinities or NaN; conversions always saturate.
    F4E2M1,
    E2M1
);

/// How a float is rounded to [`F8E8M0`] (Cast's `round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E8M0Round {
    /// Away from zero (the default).
    Up,
    /// Toward zero.
    Down,
    /// To the nearer power of two, ties up.
    Nearest,
}

/// float8 E8M0 (unsigned exponent, bias 127): the value is `2^(bits - 127)`; 0xFF is NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct F8E8M0(pub u8);

impl F8E8M0 {
    /// ONNX's reference conversion (`onnx.numpy_helper.to_float8e8m0`): the sign is
    /// ignored, NaN and infinities give NaN, zero gives the smallest value.
    pub fn from_f32(x: f32, saturate: bool, round: E8M0Round) -> Self {
        let bits = x.to_bits();
        let exp = (bits >> 23) & 0xff;
        if exp == 0xff {
            return F8E8M0(0xff);
        }
        let frac = bits & 0x7f_ffff;
        let up = match round {
            E8M0Round::Down => false,
            E8M0Round::Up => frac != 0,
            E8M0Round::Nearest => {
                let g = bits & 0x40_0000 != 0;
                let r = bits & 0x20_0000 != 0;
                let s = bits & 0x1f_ffff != 0;
                g && (r || s || exp > 0)
            }
        };
        let up = up && !(saturate && exp == 0xfe);
        F8E8M0((exp + up as u32) as u8)
    }

    pub fn to_f32(self) -> f32 {
        if self.0 == 0xff {
            f32::NAN
        } else {
            pow2(self.0 as i32 - 127) as f32
        }
    }
    pub fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
    pub fn is_nan(self) -> bool {
        self.0 == 0xff
    }
    pub fn to_bits(self) -> u8 {
        self.0
    }
    pub fn from_bits(b: u8) -> Self {
        F8E8M0(b)
    }
}

macro_rules! small_int {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $bits:expr, $signed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            pub const BITS: u32 = $bits;
            pub const MIN: i64 = if $signed { -(1 << ($bits - 1)) } else { 0 };
            pub const MAX: i64 = if $signed { (1 << ($bits - 1)) - 1 } else { (1 << $bits) - 1 };

            /// A float truncated toward zero, then wrapped like [`Self::wrapping`], as ONNX's
            /// reference (ml_dtypes) does on x86: through a 32-bit integer, so NaN and values
            /// outside the i32 range give 0.
            pub fn wrapping_from_f64(x: f64) -> Self {
                let t = x.trunc();
                if t.is_nan() || !(-2147483648.0..2147483648.0).contains(&t) {
                    return Self::from_bits(0);
                }
                Self::wrapping(t as i64)
            }
            /// The low bits of `v`, reinterpreted (two's complement for signed types).
            pub fn wrapping(v: i64) -> Self {
                Self::from_bits((v as u64 & ((1u64 << $bits) - 1)) as u8)
            }
            /// From the low `BITS` bits of `b` (sign-extended for signed types).
            pub fn from_bits(b: u8) -> Self {
                let b = b & ((1u8 << $bits) - 1);
                if $signed {
                    let shift = 8 - $bits;
                    $name((((b << shift) as i8) >> shift) as $inner)
                } else {
                    $name(b as $inner)
                }
            }
            /// The value's low `BITS` bits.
            pub fn to_bits(self) -> u8 {
                (self.0 as u8) & ((1u8 << $bits) - 1)
            }
            pub fn to_i64(self) -> i64 {
                self.0 as i64
            }
        }
    };
}

small_int!(
    /// 4-bit unsigned integer, 0..=15.
    U4,
    u8,
    4,
    false
);
small_int!(
    /// 4-bit signed integer, -8..=7.
    I4,
    i8,
    4,
    true
);
small_int!(
    /// 2-bit unsigned integer, 0..=3.
    U2,
    u8,
    2,
    false
);
small_int!(
    /// 2-bit signed integer, -2..=1.
    I2,
    i8,
    2,
    true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_round_trips_every_finite_pattern() {
        for b in 0..=255u8 {
            for (v, back) in [
                (
                    F8E4M3FN(b).to_f32(),
                    F8E4M3FN::from_f32(F8E4M3FN(b).to_f32(), false).0,
                ),
                (
                    F8E5M2(b).to_f32(),
                    F8E5M2::from_f32(F8E5M2(b).to_f32(), false).0,
                ),
                (
                    F8E4M3FNUZ(b).to_f32(),
                    F8E4M3FNUZ::from_f32(F8E4M3FNUZ(b).to_f32(), false).0,
                ),
                (
                    F8E5M2FNUZ(b).to_f32(),
                    F8E5M2FNUZ::from_f32(F8E5M2FNUZ(b).to_f32(), false).0,
                ),
            ] {
                if v.is_finite() {
                    assert_eq!(back, b, "{b:#x} = {v}");
                }
            }
        }
        for b in 0..16u8 {
            assert_eq!(F4E2M1::from_f32(F4E2M1(b).to_f32(), true).0, b);
        }
    }

    #[test]
    fn float8_special_values() {
        assert_eq!(F8E4M3FN(0x7e).to_f32(), 448.0);
        assert!(F8E4M3FN(0x7f).is_nan());
        assert_eq!(F8E4M3FNUZ(0x7f).to_f32(), 240.0);
        assert!(F8E4M3FNUZ(0x80).is_nan());
        assert_eq!(F8E5M2(0x7b).to_f32(), 57344.0);
        assert_eq!(F8E5M2(0x7c).to_f32(), f32::INFINITY);
        assert_eq!(F8E4M3FN(0x01).to_f32(), 2f32.powi(-9));
        // Saturation and overflow.
        assert_eq!(F8E4M3FN::from_f32(1e6, true).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(-1e6, false).0, 0xff);
        assert_eq!(F8E4M3FN::from_f32(464.0, false).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(465.0, false).0, 0x7f);
        assert_eq!(F8E5M2::from_f32(f32::INFINITY, false).0, 0x7c);
        assert_eq!(F8E5M2::from_f32(f32::NEG_INFINITY, true).0, 0xfb);
        assert_eq!(F8E5M2::from_f32(f32::NAN, true).0, 0x7e);
        assert_eq!(F8E4M3FNUZ::from_f32(-0.0, true).0, 0);
        assert_eq!(F8E4M3FNUZ::from_f32(-1e-10, true).0, 0);
        assert_eq!(F8E5M2FNUZ::from_f32(f32::INFINITY, false).0, 0x80);
        // Ties to even: 17 lies between 16 and 18.
        assert_eq!(F8E4M3FN::from_f32(17.0, true).to_f32(), 16.0);
        assert_eq!(F8E4M3FN::from_f32(17.5, true).to_f32(), 18.0);
        assert_eq!(F4E2M1::from_f32(0.25, true).0, 0);
        assert_eq!(F4E2M1::from_f32(0.75, true).to_f32(), 1.0);
        assert_eq!(F4E2M1::from_f32(-9.0, false).0, 0xf);
        assert_eq!(F4E2M1::from_f32(f32::NAN, true).0, 0x8);
    }

    #[test]
    fn e8m0_follows_the_reference() {
        let up = |x| F8E8M0::from_f32(x, true, E8M0Round::Up).0;
        assert_eq!(up(1.0), 127);
        assert_eq!(up(1.1), 128);
        assert_eq!(up(0.0), 0);
        assert_eq!(up(f32::INFINITY), 255);
        assert_eq!(up(f32::MAX), 254);
        assert_eq!(F8E8M0::from_f32(f32::MAX, false, E8M0Round::Up).0, 255);
        assert_eq!(F8E8M0::from_f32(1.5, true, E8M0Round::Nearest).0, 128);
        assert_eq!(F8E8M0::from_f32(1.4, true, E8M0Round::Nearest).0, 127);
        assert_eq!(F8E8M0::from_f32(1.9, true, E8M0Round::Down).0, 127);
        assert_eq!(F8E8M0(127).to_f32(), 1.0);
        assert_eq!(F8E8M0(0).to_f64(), 2f64.powi(-127));
        assert!(F8E8M0(255).is_nan());
    }

    #[test]
    fn small_ints_wrap() {
        assert_eq!(I4::wrapping(-9).0, 7);
        assert_eq!(I4::wrapping(15).0, -1);
        assert_eq!(U4::wrapping(-9).0, 7);
        assert_eq!(I2::wrapping(2).0, -2);
        assert_eq!(U2::wrapping(-1).0, 3);
        assert_eq!(I4::from_bits(0x8).0, -8);
        assert_eq!(I4(-1).to_bits(), 0xf);
        assert_eq!(I2(-2).to_bits(), 0x2);
    }
}
