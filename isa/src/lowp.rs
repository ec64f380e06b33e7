//! Low-precision arithmetic of the NPU, bit for bit (SPEC.md §4.3 and §4.4):
//! the FP8 formats, the MXU's narrow accumulator with promotion, block
//! scales, and the VPU's quantize and dequantize.
//!
//! Rounding is computed in f64 and rounded once to the narrow format. A sum
//! of two f32 (or a product of two 8-bit values) rounded to f64 and then to
//! at most 24 significant bits equals the correctly rounded result, because
//! 53 ≥ 2·24 + 2 (double rounding is innocuous), so these definitions are
//! the single-rounding semantics SPEC.md writes down.

use crate::fields::DType;
use crate::target::Target;

/// An 8-bit float format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8 {
    /// Mantissa (fraction) bits.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Largest finite magnitude.
    pub max: f32,
    /// Whether exponent all-ones with a zero mantissa is infinity (E5M2); in
    /// E4M3 only `S.1111.111` is special (NaN) and there is no infinity.
    pub has_inf: bool,
}

/// OCP FP8 E4M3 (ONNX `float8e4m3fn`).
pub const E4M3: Fp8 = Fp8 {
    man_bits: 3,
    bias: 7,
    max: 448.0,
    has_inf: false,
};

/// OCP FP8 E5M2 (ONNX `float8e5m2`).
pub const E5M2: Fp8 = Fp8 {
    man_bits: 2,
    bias: 15,
    max: 57344.0,
    has_inf: true,
};

impl Fp8 {
    /// The format of an FP8 memory type.
    pub fn of(dtype: DType) -> Option<Fp8> {
        match dtype {
            DType::E4m3 => Some(E4M3),
            DType::E5m2 => Some(E5M2),
            _ => None,
        }
    }

    /// The canonical NaN (positive).
    fn nan_bits(self) -> u8 {
        0x7f
    }

    /// Widens an FP8 value to f32 (exact).
    pub fn to_f32(self, bits: u8) -> f32 {
        let sign = if bits & 0x80 != 0 { -1.0f32 } else { 1.0 };
        let exp_bits = 7 - self.man_bits;
        let exp = i32::from((bits >> self.man_bits) & ((1 << exp_bits) - 1) as u8);
        let man = u32::from(bits) & ((1 << self.man_bits) - 1);
        let all_ones = (1 << exp_bits) - 1;
        if self.has_inf && exp == all_ones {
            return if man == 0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            };
        }
        if !self.has_inf && exp == all_ones && man == (1 << self.man_bits) - 1 {
            return f32::NAN;
        }
        let scale = |e: i32| (2.0f64).powi(e);
        let value = if exp == 0 {
            f64::from(man) * scale(1 - self.bias - self.man_bits as i32)
        } else {
            (f64::from(man) + f64::from(1u32 << self.man_bits))
                * scale(exp - self.bias - self.man_bits as i32)
        };
        sign * value as f32
    }

    /// Rounds an f32 to this format, nearest even. With `saturate`, finite
    /// values beyond the range and infinities become ±max; without, they
    /// become infinity (E5M2) or NaN (E4M3). NaN stays NaN.
    pub fn from_f32(self, x: f32, saturate: bool) -> u8 {
        let sign: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
        if x.is_nan() {
            return self.nan_bits();
        }
        let overflow = |s: u8| {
            if saturate {
                s | self.from_f32(self.max, true)
            } else if self.has_inf {
                s | (0x7f & !((1u8 << self.man_bits) - 1))
            } else {
                s | self.nan_bits()
            }
        };
        if x.is_infinite() {
            return overflow(sign);
        }
        let a = f64::from(x.abs());
        if a == 0.0 {
            return sign;
        }
        let emin = 1 - self.bias;
        let r = round_at(a, emin, self.man_bits, false);
        if r > f64::from(self.max) {
            return overflow(sign);
        }
        if r == 0.0 {
            return sign;
        }
        let e = exponent_of(r);
        if e < emin {
            // Subnormal: exponent field 0, mantissa counts quanta.
            let man = (r / (2.0f64).powi(emin - self.man_bits as i32)) as u8;
            return sign | man;
        }
        let man = (r / (2.0f64).powi(e - self.man_bits as i32)) as u32 - (1 << self.man_bits);
        sign | (((e + self.bias) as u8) << self.man_bits) | man as u8
    }
}

/// floor(log2 |a|) for a finite non-zero f64.
fn exponent_of(a: f64) -> i32 {
    let bits = a.abs().to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // f64 subnormal: far below anything these formats represent.
        -1074 + (63 - bits.leading_zeros() as i32)
    } else {
        biased - 1023
    }
}

/// Rounds `x` to a float with `man_bits` mantissa bits and the exponent range
/// of fp32 (subnormal quantum 2^(-126-man_bits)), nearest even; results beyond
/// the range are ±infinity. `man_bits = 23` is rounding to f32.
pub fn round_to_mantissa(x: f64, man_bits: u32) -> f32 {
    if man_bits >= 23 || !x.is_finite() || x == 0.0 {
        return x as f32;
    }
    narrow(x, man_bits, false)
}

/// As [`round_to_mantissa`], rounding toward zero (truncating the bits
/// below the last mantissa bit, as cheap adders do); results stay finite.
pub fn truncate_to_mantissa(x: f64, man_bits: u32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x as f32;
    }
    narrow(x, man_bits.min(23), true)
}

/// `x` rounded to `man_bits` fraction bits in a format whose smallest
/// normal exponent is `emin` (below it the quantum stays `2^(emin −
/// man_bits)`: gradual underflow), to nearest even or toward zero. Exact in
/// f64: the quantum is a power of two.
fn round_at(x: f64, emin: i32, man_bits: u32, truncate: bool) -> f64 {
    let e = exponent_of(x).max(emin);
    let quantum = (2.0f64).powi(e - man_bits as i32);
    let scaled = x / quantum;
    let q = if truncate {
        scaled.trunc()
    } else {
        scaled.round_ties_even()
    };
    q * quantum
}

fn narrow(x: f64, man_bits: u32, truncate: bool) -> f32 {
    let r = round_at(x, -126, man_bits, truncate);
    if r.abs() >= (2.0f64).powi(128) {
        // Overflow: to nearest gives infinity, toward zero the largest
        // finite value of the format.
        let largest = (2.0 - (2.0f64).powi(-(man_bits as i32))) * (2.0f64).powi(127);
        let v = if truncate {
            largest as f32
        } else {
            f32::INFINITY
        };
        return if r > 0.0 { v } else { -v };
    }
    // Exact: r has at most man_bits + 1 significant bits in fp32's range.
    r as f32
}

/// The MXU's accumulator, as the target configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accumulator {
    /// Mantissa bits of the narrow accumulator (23: fp32).
    pub man_bits: u32,
    /// Products per promotion into fp32; 0 never promotes.
    pub promote: u32,
    /// The narrow additions round toward zero instead of to nearest even.
    pub truncate: bool,
}

impl Accumulator {
    /// The accumulator of a target.
    pub fn of(target: &Target) -> Accumulator {
        Accumulator {
            man_bits: target.mxu_acc_mantissa_bits,
            promote: target.mxu_promote_interval,
            truncate: target.mxu_acc_truncate,
        }
    }

    /// Whether this is plain fp32 accumulation (the fast path).
    pub fn is_fp32(self) -> bool {
        self.man_bits >= 23 && self.promote == 0 && !self.truncate
    }

    /// One narrow addition's rounding.
    pub fn round(self, x: f64) -> f32 {
        if self.truncate {
            truncate_to_mantissa(x, self.man_bits)
        } else {
            round_to_mantissa(x, self.man_bits)
        }
    }

    /// One output of a float- or FP8-class `mxu.mm` (SPEC.md §4.4):
    /// `init` is the ACC value (or +0), `product(kk)` the fp32 product
    /// `A[i][kk] × W[kk][j]`, `scale(kk)` the block scale that applies to
    /// element `kk` (1.0 when unscaled), and `block` the scale block size
    /// (`None` when unscaled).
    pub fn dot(
        self,
        init: f32,
        k: usize,
        block: Option<usize>,
        product: impl Fn(usize) -> f32,
        scale: impl Fn(usize) -> f32,
    ) -> f32 {
        if self.promote == 0 {
            let mut c = init;
            for kk in 0..k {
                let p = match block {
                    Some(_) => product(kk) * scale(kk),
                    None => product(kk),
                };
                c = self.round(f64::from(c) + f64::from(p));
            }
            return c;
        }
        let interval = self.promote as usize;
        let mut c = init;
        let mut partial = 0.0f32;
        let mut count = 0usize;
        for kk in 0..k {
            partial = self.round(f64::from(partial) + f64::from(product(kk)));
            count += 1;
            let block_end = block.is_some_and(|b| (kk + 1) % b == 0);
            if count == interval || block_end || kk + 1 == k {
                let promoted = match block {
                    Some(_) => partial * scale(kk),
                    None => partial,
                };
                c += promoted;
                partial = 0.0;
                count = 0;
            }
        }
        c
    }
}

/// Reads an 8-bit MXU input element (integer or FP8) as its exact value,
/// before zero points.
pub fn byte_value(dtype: DType, byte: u8) -> f32 {
    match dtype {
        DType::I8 => f32::from(byte as i8),
        DType::U8 => f32::from(byte),
        DType::E4m3 => E4M3.to_f32(byte),
        DType::E5m2 => E5M2.to_f32(byte),
        _ => f32::NAN,
    }
}

/// The integer range of an integer memory type.
pub fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Whether `zp` is a zero point of `dtype`: within an integer type's range;
/// FP8 takes none (0).
pub fn zero_point_fits(dtype: DType, zp: i64) -> bool {
    if dtype.is_fp8() {
        return zp == 0;
    }
    let (lo, hi) = int_range(dtype);
    (lo..=hi).contains(&zp)
}

/// Reads an FP8 block scale: fp32 bits, or an E8M0 byte (2^(e − 127); 0xFF
/// is NaN).
pub fn block_scale(e8m0: bool, bytes: &[u8]) -> f32 {
    if e8m0 {
        if bytes[0] == 0xff {
            f32::NAN
        } else {
            (2.0f64).powi(i32::from(bytes[0]) - 127) as f32
        }
    } else {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
}

/// `vpu.quant` of one element: `saturate(round(a / s) + zp)` in `dtype`,
/// written as its byte. Integers round half to even and saturate; NaN gives
/// the zero point. FP8 rounds to nearest even and saturates to ±max (the
/// zero point must be 0).
pub fn quantize(dtype: DType, a: f32, s: f32, zp: i64) -> u8 {
    quantize_by(dtype, a, s, crate::ScaleOp::Div, zp)
}

/// `vpu.quant` with its scale operation: `a / s` (`div`) or `a × s`
/// (`mul`, `s` the reciprocal scale), each one fp32 operation, then as
/// [`quantize`].
pub fn quantize_by(dtype: DType, a: f32, s: f32, op: crate::ScaleOp, zp: i64) -> u8 {
    let q = match op {
        crate::ScaleOp::Div => a / s,
        crate::ScaleOp::Mul => a * s,
    };
    if let Some(fmt) = Fp8::of(dtype) {
        return fmt.from_f32(q, true);
    }
    let (lo, hi) = int_range(dtype);
    let rounded = if q.is_nan() {
        0.0
    } else {
        f64::from(q).round_ties_even()
    };
    let v = (rounded + zp as f64).clamp(lo as f64, hi as f64) as i64;
    v as u8
}

/// `vpu.dequant` of one element of `atype` at `bytes`: `(a − zp) × s` in
/// fp32; the difference is exact, then rounded to f32, then multiplied.
pub fn dequantize(atype: DType, bytes: &[u8], s: f32, zp: i64) -> f32 {
    let x = match atype {
        DType::I32 => {
            let v = i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            (v - zp) as f32
        }
        DType::I8 => (i64::from(bytes[0] as i8) - zp) as f32,
        DType::U8 => (i64::from(bytes[0]) - zp) as f32,
        DType::E4m3 | DType::E5m2 => byte_value(atype, bytes[0]),
        _ => f32::NAN,
    };
    x * s
}

/// Whether `vpu.quant` writes this type.
pub fn quant_type_ok(dtype: DType) -> bool {
    matches!(dtype, DType::I8 | DType::U8 | DType::E4m3 | DType::E5m2)
}

/// Whether `vpu.dequant` reads this type.
pub fn dequant_type_ok(atype: DType) -> bool {
    matches!(
        atype,
        DType::I8 | DType::U8 | DType::I32 | DType::E4m3 | DType::E5m2
    )
}

/// Bytes of one FP8 block scale.
pub fn scale_bytes(target: &Target) -> u64 {
    if target.mxu_scale_e8m0 {
        1
    } else {
        4
    }
}

/// Number of scale blocks covering `len` elements.
pub fn blocks(len: u64, block: u64) -> u64 {
    len.div_ceil(block.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite value of a format, by bits.
    fn finite(fmt: Fp8) -> Vec<(u8, f32)> {
        (0..=255u8)
            .map(|b| (b, fmt.to_f32(b)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }

    /// Round to nearest by search, ties to the even encoding (the spec's
    /// definition, independent of the implementation).
    fn nearest(fmt: Fp8, x: f32) -> u8 {
        let mut best: Option<(f64, u8)> = None;
        for (b, v) in finite(fmt) {
            let d = (f64::from(v) - f64::from(x)).abs();
            let better = match best {
                None => true,
                Some((bd, bb)) => d < bd || (d == bd && b & 1 == 0 && bb & 1 == 1),
            };
            if better && (v != 0.0 || (b & 0x80 != 0) == x.is_sign_negative()) {
                best = Some((d, b));
            }
        }
        best.expect("finite values").1
    }

    #[test]
    fn formats_have_the_ocp_ranges() {
        assert_eq!(E4M3.to_f32(0x7e), 448.0);
        assert!(E4M3.to_f32(0x7f).is_nan());
        assert_eq!(E4M3.to_f32(0x08), 2f32.powi(-6));
        assert_eq!(E4M3.to_f32(0x01), 2f32.powi(-9));
        assert_eq!(E5M2.to_f32(0x7b), 57344.0);
        assert_eq!(E5M2.to_f32(0x7c), f32::INFINITY);
        assert_eq!(E5M2.to_f32(0x01), 2f32.powi(-16));
        assert_eq!(E4M3.from_f32(1e6, true), 0x7e);
        assert_eq!(E4M3.from_f32(1e6, false), 0x7f);
        assert_eq!(E5M2.from_f32(f32::NEG_INFINITY, true), 0xfb);
        assert_eq!(E5M2.from_f32(1e6, false), 0x7c);
        // 464 is halfway between 448 and the (NaN) code above it: even, 448.
        assert_eq!(E4M3.from_f32(464.0, false), 0x7e);
        assert_eq!(E4M3.from_f32(-0.0, true), 0x80);
    }

    #[test]
    fn encoding_is_round_to_nearest_even_on_a_dense_sweep() {
        for fmt in [E4M3, E5M2] {
            let mut x = 2f32.powi(-20);
            while x < fmt.max {
                for v in [x, -x] {
                    assert_eq!(fmt.from_f32(v, true), nearest(fmt, v), "{fmt:?} {v}");
                }
                x *= 1.0137;
            }
            for (b, v) in finite(fmt) {
                assert_eq!(
                    fmt.to_f32(fmt.from_f32(v, false)).to_bits(),
                    v.to_bits(),
                    "{b:#x}"
                );
            }
        }
    }

    #[test]
    fn narrow_rounding_matches_f32_at_23_bits_and_bf16_at_7() {
        let mut seed = 7u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f32::from_bits((seed >> 32) as u32);
            if !x.is_finite() {
                continue;
            }
            let wide = f64::from(x) * 1.000_000_1;
            assert_eq!(
                round_to_mantissa(wide, 23).to_bits(),
                (wide as f32).to_bits()
            );
            let bf = crate::numerics::bf16_to_f32(crate::numerics::f32_to_bf16(x));
            assert_eq!(
                round_to_mantissa(f64::from(x), 7).to_bits(),
                bf.to_bits(),
                "{x}"
            );
        }
    }

    #[test]
    fn a_narrow_accumulator_loses_small_addends_and_promotion_recovers_them() {
        // 1 + 4096 × 2^-12 with a 10-bit accumulator: each 2^-12 is below half
        // an ulp of 1 (2^-11), so the sum stays 1; promoting every 128
        // products keeps each partial exact (128 × 2^-12 = 2^-5).
        let narrow = Accumulator {
            man_bits: 10,
            promote: 0,
            truncate: false,
        };
        let promoted = Accumulator {
            man_bits: 10,
            promote: 128,
            truncate: false,
        };
        let tiny = 2f32.powi(-12);
        let p = |_| tiny;
        assert_eq!(narrow.dot(1.0, 4096, None, p, |_| 1.0), 1.0);
        assert_eq!(promoted.dot(1.0, 4096, None, p, |_| 1.0), 2.0);
        // Truncation drops even addends just above half an ulp.
        let truncating = Accumulator {
            truncate: true,
            ..narrow
        };
        let big = 2f32.powi(-11) * 1.5;
        assert_eq!(
            narrow.dot(1.0, 1, None, |_| big, |_| 1.0),
            1.0 + 2f32.powi(-10)
        );
        assert_eq!(truncating.dot(1.0, 1, None, |_| big, |_| 1.0), 1.0);
        assert_eq!(truncate_to_mantissa(-1.75, 1), -1.5);
        assert_eq!(truncate_to_mantissa(1e39, 23), f32::MAX);
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        assert_eq!(quantize(DType::I8, 2.5, 1.0, 0), 2);
        assert_eq!(quantize(DType::I8, 3.5, 1.0, 0), 4);
        assert_eq!(quantize(DType::I8, -1000.0, 1.0, 0) as i8, -128);
        assert_eq!(quantize(DType::U8, 1.0, 0.5, 10), 12);
        assert_eq!(quantize(DType::U8, -100.0, 1.0, 10), 0);
        assert_eq!(quantize(DType::U8, f32::NAN, 1.0, 10), 10);
        assert_eq!(quantize(DType::E4m3, 1000.0, 1.0, 0), 0x7e);
        assert_eq!(dequantize(DType::U8, &[12], 0.5, 10), 1.0);
        assert_eq!(
            dequantize(DType::I32, &(-7i32).to_le_bytes(), 2.0, 1),
            -16.0
        );
    }
}
