//! The arithmetic of the NPU, bit for bit (SPEC.md, "Numerics").
//!
//! Conversions, the vector engine's functions and its reduction order are
//! defined here once, in portable f32 code (transcendentals from the `libm`
//! crate, a port of musl), so that every simulator build and every host
//! computes identical bits.

use crate::fields::{BinFunc, DType, RedFunc, UnFunc};

/// Rounds an f32 to bfloat16 bits, nearest-even; NaN stays NaN (quiet).
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Widens bfloat16 bits to f32 (exact).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Rounds an f32 to binary16 bits, nearest-even, with subnormals; overflow
/// gives infinity.
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Widens binary16 bits to f32 (exact).
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Reads one element of `dtype` from little-endian bytes as f32.
/// Integers convert with round-to-nearest-even.
pub fn load_as_f32(dtype: DType, bytes: &[u8]) -> f32 {
    match dtype {
        DType::F32 => f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        DType::Bf16 => bf16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])),
        DType::F16 => f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])),
        DType::I32 => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32,
        DType::I64 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[..8]);
            i64::from_le_bytes(b) as f32
        }
        DType::U8 => f32::from(bytes[0]),
        DType::I8 => f32::from(bytes[0] as i8),
        DType::Bool => f32::from(u8::from(bytes[0] != 0)),
        DType::E4m3 => crate::lowp::E4M3.to_f32(bytes[0]),
        DType::E5m2 => crate::lowp::E5M2.to_f32(bytes[0]),
    }
}

/// Converts one element between memory types (`vpu.cvt`), writing
/// `dtype.size()` little-endian bytes to `out`.
///
/// Float to float rounds to nearest even; float to integer truncates toward
/// zero and saturates, NaN giving 0; integer to float rounds to nearest even;
/// integer to integer wraps (two's complement truncation); float to FP8
/// rounds to nearest even and saturates to ±max (NaN stays NaN).
pub fn convert(atype: DType, input: &[u8], dtype: DType, out: &mut [u8]) {
    let is_int = DType::is_int;
    if atype == dtype {
        let n = dtype.size() as usize;
        out[..n].copy_from_slice(&input[..n]);
        return;
    }
    if is_int(atype) && is_int(dtype) {
        let v: i64 = match atype {
            DType::I32 => i64::from(i32::from_le_bytes([input[0], input[1], input[2], input[3]])),
            DType::I64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&input[..8]);
                i64::from_le_bytes(b)
            }
            DType::U8 => i64::from(input[0]),
            DType::Bool => i64::from(input[0] != 0),
            _ => i64::from(input[0] as i8),
        };
        store_int(dtype, v, out);
        return;
    }
    let x = load_as_f32(atype, input);
    match dtype {
        DType::F32 => out[..4].copy_from_slice(&x.to_le_bytes()),
        DType::Bf16 => out[..2].copy_from_slice(&f32_to_bf16(x).to_le_bytes()),
        DType::F16 => out[..2].copy_from_slice(&f32_to_f16(x).to_le_bytes()),
        DType::I32 => out[..4].copy_from_slice(&(x as i32).to_le_bytes()),
        DType::I64 => out[..8].copy_from_slice(&(x as i64).to_le_bytes()),
        DType::U8 => out[0] = x as u8,
        DType::I8 => out[0] = (x as i8) as u8,
        DType::Bool => out[0] = u8::from(x != 0.0),
        DType::E4m3 => out[0] = crate::lowp::E4M3.from_f32(x, true),
        DType::E5m2 => out[0] = crate::lowp::E5M2.from_f32(x, true),
    }
}

fn store_int(dtype: DType, v: i64, out: &mut [u8]) {
    match dtype {
        DType::I32 => out[..4].copy_from_slice(&(v as i32).to_le_bytes()),
        DType::I64 => out[..8].copy_from_slice(&v.to_le_bytes()),
        DType::U8 | DType::I8 => out[0] = v as u8,
        DType::Bool => out[0] = u8::from(v != 0),
        _ => unreachable!("store_int called with a float type"),
    }
}

fn bool_f32(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Maximum that propagates NaN; on equal values (±0) returns `b`.
pub fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a > b {
        a
    } else {
        b
    }
}

/// Minimum that propagates NaN; on equal values (±0) returns `b`.
pub fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b {
        a
    } else {
        b
    }
}

/// A binary function of the VPU. `old` is the destination's previous value,
/// read only by `sel`.
pub fn binary(f: BinFunc, a: f32, b: f32, old: f32) -> f32 {
    match f {
        BinFunc::Add => a + b,
        BinFunc::Sub => a - b,
        BinFunc::Mul => a * b,
        BinFunc::Div => a / b,
        BinFunc::Max => max_nan(a, b),
        BinFunc::Min => min_nan(a, b),
        BinFunc::Pow => libm::powf(a, b),
        BinFunc::Eq => bool_f32(a == b),
        BinFunc::Ne => bool_f32(a != b),
        BinFunc::Lt => bool_f32(a < b),
        BinFunc::Le => bool_f32(a <= b),
        BinFunc::Gt => bool_f32(a > b),
        BinFunc::Ge => bool_f32(a >= b),
        BinFunc::And => bool_f32(a != 0.0 && b != 0.0),
        BinFunc::Or => bool_f32(a != 0.0 || b != 0.0),
        BinFunc::Sel => {
            if old != 0.0 {
                a
            } else {
                b
            }
        }
    }
}

/// sqrt(2/pi) in f32, used by the tanh form of GELU.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// A unary function of the VPU.
pub fn unary(f: UnFunc, x: f32) -> f32 {
    match f {
        UnFunc::Mov => x,
        UnFunc::Neg => -x,
        UnFunc::Abs => x.abs(),
        UnFunc::Exp => libm::expf(x),
        UnFunc::Log => libm::logf(x),
        UnFunc::Sqrt => libm::sqrtf(x),
        UnFunc::Rsqrt => 1.0 / libm::sqrtf(x),
        UnFunc::Recip => 1.0 / x,
        UnFunc::Tanh => libm::tanhf(x),
        UnFunc::Erf => libm::erff(x),
        UnFunc::Sigmoid => 1.0 / (1.0 + libm::expf(-x)),
        UnFunc::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnFunc::Gelu => (0.5 * x) * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        UnFunc::GeluTanh => {
            let inner = SQRT_2_OVER_PI * (x + 0.044_715 * (x * x * x));
            (0.5 * x) * (1.0 + libm::tanhf(inner))
        }
        UnFunc::Silu => x * (1.0 / (1.0 + libm::expf(-x))),
        UnFunc::Sin => libm::sinf(x),
        UnFunc::Cos => libm::cosf(x),
        UnFunc::Not => bool_f32(x == 0.0),
        UnFunc::Floor => libm::floorf(x),
        UnFunc::Ceil => libm::ceilf(x),
        UnFunc::Round => libm::rintf(x),
        UnFunc::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
    }
}

/// The identity element a reduction starts from.
pub fn reduce_init(f: RedFunc) -> f32 {
    match f {
        RedFunc::Sum => 0.0,
        RedFunc::Max => f32::NEG_INFINITY,
        RedFunc::Min => f32::INFINITY,
        RedFunc::Amax => 0.0,
    }
}

/// Combines two partial results of a reduction.
pub fn reduce_step(f: RedFunc, acc: f32, x: f32) -> f32 {
    match f {
        RedFunc::Sum => acc + x,
        RedFunc::Max => max_nan(acc, x),
        RedFunc::Min => min_nan(acc, x),
        RedFunc::Amax => max_nan(acc, x.abs()),
    }
}

/// Reduces one row in the VPU's specified order: lane `l` (of `lanes`)
/// folds the elements `j ≡ l (mod lanes)` in increasing `j` starting from the
/// identity, then the lanes combine pairwise, halving: `p[l] = p[l] ⊕ p[l+w]`
/// for `w = lanes/2, lanes/4, …, 1`. The result is `p[0]`.
pub fn reduce_row(f: RedFunc, row: impl Iterator<Item = f32>, lanes: usize) -> f32 {
    let mut partial = vec![reduce_init(f); lanes.max(1)];
    for (j, x) in row.enumerate() {
        let l = j % partial.len();
        partial[l] = reduce_step(f, partial[l], x);
    }
    let mut width = partial.len() / 2;
    while width >= 1 {
        for l in 0..width {
            partial[l] = reduce_step(f, partial[l], partial[l + width]);
        }
        width /= 2;
    }
    partial[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway, rounds up to the even 1 + 2^-6.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        // The largest finite f32 rounds up to infinity.
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
    }

    #[test]
    fn float_to_int_truncates_and_saturates() {
        let mut out = [0u8; 8];
        convert(DType::F32, &(-2.7f32).to_le_bytes(), DType::I32, &mut out);
        assert_eq!(i32::from_le_bytes([out[0], out[1], out[2], out[3]]), -2);
        convert(DType::F32, &1e20f32.to_le_bytes(), DType::I32, &mut out);
        assert_eq!(
            i32::from_le_bytes([out[0], out[1], out[2], out[3]]),
            i32::MAX
        );
        convert(DType::I64, &(-5i64).to_le_bytes(), DType::F32, &mut out);
        assert_eq!(f32::from_le_bytes([out[0], out[1], out[2], out[3]]), -5.0);
    }

    #[test]
    fn bool_conversions_test_for_non_zero() {
        let mut out = [0u8; 4];
        convert(DType::F32, &f32::NAN.to_le_bytes(), DType::Bool, &mut out);
        assert_eq!(out[0], 1);
        convert(DType::F32, &(-0.0f32).to_le_bytes(), DType::Bool, &mut out);
        assert_eq!(out[0], 0);
        convert(DType::Bool, &[1], DType::F32, &mut out);
        assert_eq!(f32::from_le_bytes(out), 1.0);
        convert(DType::I64, &256i64.to_le_bytes(), DType::Bool, &mut out);
        assert_eq!(out[0], 1);
    }

    #[test]
    fn max_and_min_propagate_nan() {
        assert!(binary(BinFunc::Max, f32::NAN, 1.0, 0.0).is_nan());
        assert!(binary(BinFunc::Min, 1.0, f32::NAN, 0.0).is_nan());
        assert_eq!(binary(BinFunc::Sel, 1.0, 2.0, 0.0), 2.0);
        assert_eq!(binary(BinFunc::Sel, 1.0, 2.0, 5.0), 1.0);
    }

    #[test]
    fn pow_follows_libm_powf_special_cases() {
        let pow = |a: f32, b: f32| binary(BinFunc::Pow, a, b, 0.0);
        let (nan, inf) = (f32::NAN, f32::INFINITY);
        // The cases SPEC.md §4.5 lists, where a NaN operand does not give NaN.
        assert_eq!(pow(1.0, nan), 1.0);
        assert_eq!(pow(1.0, -inf), 1.0);
        assert_eq!(pow(nan, 0.0), 1.0);
        assert_eq!(pow(nan, -0.0), 1.0);
        assert_eq!(pow(-1.0, inf), 1.0);
        assert_eq!(pow(-1.0, -inf), 1.0);
        // Otherwise NaN in, NaN out; and negative bases with non-integers.
        assert!(pow(nan, 1.0).is_nan());
        assert!(pow(2.0, nan).is_nan());
        assert!(pow(-1.0, nan).is_nan());
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(pow(-2.0, 3.0), -8.0);
        // Zeros and infinities.
        assert_eq!(pow(0.0, -1.0), inf);
        assert_eq!(pow(-0.0, -1.0), -inf);
        assert_eq!(pow(-0.0, -2.0), inf);
        assert_eq!(pow(-0.0, 3.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(pow(0.5, inf), 0.0);
        assert_eq!(pow(2.0, -inf), 0.0);
        assert_eq!(pow(-inf, 3.0), -inf);
        assert_eq!(pow(-inf, -3.0).to_bits(), (-0.0f32).to_bits());
        // Results are libm's bits, not the host's.
        assert_eq!(pow(3.7, 2.3).to_bits(), libm::powf(3.7, 2.3).to_bits());
    }

    #[test]
    fn reduction_follows_the_lane_order() {
        // With 2 lanes: p0 = 1e8 + -1e8 = 0, p1 = 1 + 1 = 2 → 2.
        let row = [1e8f32, 1.0, -1e8, 1.0];
        assert_eq!(reduce_row(RedFunc::Sum, row.iter().copied(), 2), 2.0);
        // Sequentially it would be ((1e8 + 1) - 1e8) + 1 = 1.
        assert_eq!(reduce_row(RedFunc::Sum, row.iter().copied(), 1), 1.0);
        assert_eq!(
            reduce_row(RedFunc::Max, [3.0, -1.0, 7.0].into_iter(), 8),
            7.0
        );
    }

    #[test]
    fn gelu_matches_its_definition() {
        let x = 1.5f32;
        let expected = 0.5 * x * (1.0 + libm::erff(x / 2f32.sqrt()));
        assert!((unary(UnFunc::Gelu, x) - expected).abs() < 1e-6);
        assert_eq!(unary(UnFunc::Relu, -3.0), 0.0);
    }
}
