//! Comparing computed tensors with expected ones: error metrics and
//! tolerances. Shared by `tessera check` (interpreted or simulated), the
//! model tests and the conformance runner, so they all judge alike.
//!
//! Metrics, over all elements (in f64):
//! - `max_abs`: the largest `|actual - expected|`;
//! - `max_rel`: the largest `|actual - expected| / max(|expected|, 1e-6)`;
//! - `cosine`: the cosine similarity of the two tensors as vectors (1 when
//!   both are all zero);
//! - `rel_l2`: `‖a − e‖ / ‖e‖`;
//! - `sqnr_db`: `10·log10(‖e‖² / ‖a − e‖²)`, the signal-to-quantization-noise
//!   ratio (+∞ when equal).
//!
//! NaN equals NaN and an infinity equals the same infinity (error 0); any
//! other disagreement involving NaN or infinity is an infinite error.
//! Integer and bool tensors must match exactly, whatever the tolerance —
//! except 8-bit (quantized) tensors under a cosine tolerance, which a
//! reduced-precision program may round one quantization step differently
//! and which are judged by the cosine criterion like floats.

use crate::precision::Precision;
use crate::tensor::{DType, Tensor};

/// Error metrics of one comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Largest absolute error.
    pub max_abs: f64,
    /// Largest relative error (see the module docs).
    pub max_rel: f64,
    /// Cosine similarity.
    pub cosine: f64,
    /// Largest `|expected|` (finite elements).
    pub max_expected: f64,
    /// Relative L2 error `‖a − e‖ / ‖e‖` over the finite elements (0 when
    /// both are zero).
    pub rel_l2: f64,
    /// Elements where one side is NaN or infinite and the other is not the
    /// same special value.
    pub special_mismatches: usize,
    /// Signal-to-quantization-noise ratio in dB, `10·log10(‖e‖² / ‖a − e‖²)`
    /// over the finite elements: +∞ when they are equal, −∞ when the
    /// expected tensor is zero and the actual one is not.
    pub sqnr_db: f64,
}

/// When a comparison passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// `max_abs <= factor * max(1, max |expected|)`: the models' criterion.
    Scaled {
        /// Allowed error per unit of the output's magnitude.
        factor: f64,
    },
    /// Every element: `|a - e| <= atol + rtol * |e|` (ONNX backend-test
    /// style, numpy's `assert_allclose`).
    Elementwise {
        /// Relative tolerance.
        rtol: f64,
        /// Absolute tolerance.
        atol: f64,
    },
    /// Cosine similarity of the whole tensor at least `min` (reduced
    /// precision: bf16 MXU operands), and — so that a NaN, an infinity or a
    /// wrong scale cannot pass — every non-finite value matched and the
    /// relative L2 error at most `max_rel_l2`; integer outputs must still
    /// be exact, except 8-bit quantized ones (see the module docs).
    Cosine {
        /// Smallest acceptable cosine similarity.
        min: f64,
        /// Largest acceptable relative L2 error.
        max_rel_l2: f64,
    },
}

impl Tolerance {
    /// The tolerance `tessera check` uses for fp32 models: 1e-4 scaled.
    pub const MODEL_FP32: Tolerance = Tolerance::Scaled { factor: 1e-4 };
    /// The tolerance for bf16 programs: cosine similarity ≥ 0.999.
    pub const MODEL_BF16: Tolerance = Tolerance::Cosine {
        min: 0.999,
        max_rel_l2: Tolerance::COSINE_MAX_REL_L2,
    };
    /// Largest relative L2 error a cosine comparison accepts (a bf16
    /// rounding of every operand is about 0.4%; 5% leaves room for long
    /// reductions and catches scale errors).
    pub const COSINE_MAX_REL_L2: f64 = 0.05;
    /// The tolerance between a reduced-precision program and the
    /// interpreter at the same precision (`interp::EvalOptions`): both round
    /// the same MXU operands, so what is left is f32 rounding in a different
    /// order and the occasional operand that rounds the other way after it.
    pub const SAME_PRECISION: Tolerance = Tolerance::Cosine {
        min: 0.9999,
        max_rel_l2: 5e-3,
    };

    /// The tolerance for a whole model's outputs against onnxruntime's fp32
    /// ones at `precision` (README, "Low precision"): fp32 and bf16 as
    /// [`Tolerance::for_model`]; the 8-bit precisions cosine and SQNR
    /// (`max_rel_l2 = 10^(−SQNR/20)`) thresholds.
    pub fn for_precision(precision: Precision) -> Tolerance {
        match precision {
            Precision::Fp32 => Tolerance::MODEL_FP32,
            Precision::Bf16 => Tolerance::MODEL_BF16,
            Precision::Int8 => Tolerance::INT8,
            Precision::Fp8E4m3 => Tolerance::FP8_E4M3,
            Precision::Fp8E5m2 => Tolerance::FP8_E5M2,
        }
    }

    /// `--precision int8`: cosine ≥ 0.99, SQNR ≥ 15 dB.
    pub const INT8: Tolerance = Tolerance::Cosine {
        min: 0.99,
        max_rel_l2: 0.178,
    };
    /// `--precision fp8-e4m3`: cosine ≥ 0.99, SQNR ≥ 15 dB.
    pub const FP8_E4M3: Tolerance = Tolerance::Cosine {
        min: 0.99,
        max_rel_l2: 0.178,
    };
    /// `--precision fp8-e5m2` (two mantissa bits): cosine ≥ 0.98, SQNR ≥
    /// 12 dB.
    pub const FP8_E5M2: Tolerance = Tolerance::Cosine {
        min: 0.98,
        max_rel_l2: 0.251,
    };

    /// The tolerance for a whole model's outputs: [`Tolerance::MODEL_BF16`]
    /// when the program computes in reduced precision or any expected
    /// output is fp16/bf16 (onnxruntime then rounds in its own way), else
    /// [`Tolerance::MODEL_FP32`].
    pub fn for_model(reduced_precision: bool, expected: &[(String, Tensor)]) -> Tolerance {
        let half_outputs = expected
            .iter()
            .any(|(_, t)| matches!(t.dtype(), DType::F16 | DType::BF16));
        if reduced_precision || half_outputs {
            Tolerance::MODEL_BF16
        } else {
            Tolerance::MODEL_FP32
        }
    }
}

impl Tolerance {
    /// [`Tolerance::for_model`] for the outputs of `graph`: a graph that
    /// computes any value in fp16 or bf16 (converted to half precision
    /// inside, with f32 inputs and outputs) gets the half-precision
    /// tolerance, as half-precision outputs do — onnxruntime's half kernels
    /// round in their own order.
    pub fn for_graph(
        graph: &crate::graph::Graph,
        reduced_precision: bool,
        expected: &[(String, Tensor)],
    ) -> Tolerance {
        let half_inside = graph
            .node_ids()
            .into_iter()
            .any(|id| matches!(graph.node(id).ty.dtype, DType::F16 | DType::BF16));
        Tolerance::for_model(reduced_precision || half_inside, expected)
    }

    /// The largest absolute error allowed for a tensor with these metrics,
    /// for [`Tolerance::Scaled`] (elementwise tolerances have none).
    pub fn allowed_abs(&self, metrics: &Metrics) -> Option<f64> {
        match self {
            Tolerance::Scaled { factor } => Some(factor * metrics.max_expected.max(1.0)),
            Tolerance::Elementwise { .. } | Tolerance::Cosine { .. } => None,
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Scaled { factor } => {
                write!(f, "max_abs <= {factor:e} * max(1, max|expected|)")
            }
            Tolerance::Elementwise { rtol, atol } => {
                write!(f, "|a - e| <= {atol:e} + {rtol:e} * |e|")
            }
            Tolerance::Cosine { min, max_rel_l2 } => write!(
                f,
                "cosine similarity >= {min}, relative L2 error <= {max_rel_l2}, special values matched"
            ),
        }
    }
}

/// The outcome of comparing one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The metrics.
    pub metrics: Metrics,
    /// Whether it is within tolerance.
    pub pass: bool,
    /// Elements outside the elementwise tolerance (or differing, for exact
    /// types).
    pub mismatches: usize,
}

/// Compares `actual` with `expected`. Fails (with a message) when dtypes or
/// shapes differ.
pub fn compare(
    actual: &Tensor,
    expected: &Tensor,
    tolerance: Tolerance,
) -> Result<Comparison, String> {
    if actual.dtype() != expected.dtype() {
        return Err(format!(
            "dtype {} but expected {}",
            actual.dtype(),
            expected.dtype()
        ));
    }
    if actual.shape() != expected.shape() {
        return Err(format!(
            "shape {:?} but expected {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    // Quantized 8-bit values under a cosine tolerance are numbers like any
    // other: a reduced-precision program moves a value across a rounding
    // boundary of the quantizer, one step up or down. Every other integer
    // (indices, shapes, bools) must match exactly.
    let quantized = matches!(expected.dtype(), DType::I8 | DType::U8)
        && matches!(tolerance, Tolerance::Cosine { .. });
    let exact = !expected.dtype().is_float() && !quantized;
    let (a, e) = (actual.to_f64_vec(), expected.to_f64_vec());
    let (mut max_abs, mut max_rel, mut max_expected) = (0f64, 0f64, 0f64);
    let (mut dot, mut norm_a, mut norm_e, mut norm_d) = (0f64, 0f64, 0f64, 0f64);
    let mut mismatches = 0;
    let mut special_mismatches = 0;
    for (&x, &y) in a.iter().zip(&e) {
        let same_special = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
        let err = if same_special { 0.0 } else { (x - y).abs() };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        max_abs = max_abs.max(err);
        max_rel = max_rel.max(err / y.abs().max(1e-6));
        if y.is_finite() {
            max_expected = max_expected.max(y.abs());
        }
        if x.is_finite() && y.is_finite() {
            dot += x * y;
            norm_a += x * x;
            norm_e += y * y;
            norm_d += (x - y) * (x - y);
        } else if !same_special {
            special_mismatches += 1;
        }
        let ok = match tolerance {
            _ if same_special || exact => err == 0.0,
            Tolerance::Elementwise { rtol, atol } => err <= atol + rtol * y.abs(),
            Tolerance::Scaled { .. } | Tolerance::Cosine { .. } => true,
        };
        if !ok {
            mismatches += 1;
        }
    }
    let cosine = if norm_a == 0.0 && norm_e == 0.0 {
        1.0
    } else if norm_a == 0.0 || norm_e == 0.0 {
        0.0
    } else {
        dot / (norm_a.sqrt() * norm_e.sqrt())
    };
    let rel_l2 = if norm_e > 0.0 {
        (norm_d / norm_e).sqrt()
    } else if norm_d > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let pass = match tolerance {
        Tolerance::Scaled { factor } if !exact => max_abs <= factor * max_expected.max(1.0),
        Tolerance::Cosine { min, max_rel_l2 } if !exact => {
            special_mismatches == 0 && cosine >= min && rel_l2 <= max_rel_l2
        }
        _ => mismatches == 0,
    };
    let sqnr_db = if norm_d == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (norm_e / norm_d).log10()
    };
    Ok(Comparison {
        metrics: Metrics {
            max_abs,
            max_rel,
            cosine,
            max_expected,
            rel_l2,
            special_mismatches,
            sqnr_db,
        },
        pass,
        mismatches,
    })
}

/// The comparison of one named output.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputCheck {
    /// Output name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The comparison.
    pub comparison: Comparison,
}

impl OutputCheck {
    /// One report line: `name: shape [..] max_abs .. max_rel .. cosine .. PASS`.
    pub fn line(&self) -> String {
        let m = &self.comparison.metrics;
        format!(
            "{}: shape {:?} max_abs {:.3e} max_rel {:.3e} rel_l2 {:.3e} cosine {:.6} sqnr {:.1} dB{} {}",
            self.name,
            self.shape,
            m.max_abs,
            m.max_rel,
            m.rel_l2,
            m.cosine,
            m.sqnr_db,
            if m.special_mismatches > 0 {
                format!(" ({} NaN/inf mismatches)", m.special_mismatches)
            } else {
                String::new()
            },
            if self.comparison.pass { "PASS" } else { "FAIL" }
        )
    }
}

/// Pairs each expected tensor with an actual output (by name when the
/// expected tensor has one that matches, else by position) and compares.
pub fn check_outputs(
    actual: &[(String, &Tensor)],
    expected: &[(String, Tensor)],
    tolerance: Tolerance,
) -> Result<Vec<OutputCheck>, String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "the graph has {} outputs but {} are expected",
            actual.len(),
            expected.len()
        ));
    }
    let mut checks = Vec::with_capacity(expected.len());
    for (position, (expected_name, expected_value)) in expected.iter().enumerate() {
        let (name, value) = actual
            .iter()
            .find(|(n, _)| !expected_name.is_empty() && n == expected_name)
            .unwrap_or(&actual[position]);
        let comparison = compare(value, expected_value, tolerance)
            .map_err(|m| format!("output `{name}`: {m}"))?;
        checks.push(OutputCheck {
            name: name.clone(),
            shape: value.shape().to_vec(),
            comparison,
        });
    }
    Ok(checks)
}

/// Reads `DIR/{prefix}_0.pb`, `DIR/{prefix}_1.pb`, ... until one is
/// missing (the ONNX backend-test layout), with their TensorProto names.
pub fn read_numbered_pbs(
    dir: &std::path::Path,
    prefix: &str,
) -> Result<Vec<(String, Tensor)>, String> {
    let mut tensors = Vec::new();
    loop {
        let path = dir.join(format!("{prefix}_{}.pb", tensors.len()));
        if !path.exists() {
            return Ok(tensors);
        }
        tensors.push(Tensor::read_pb(&path).map_err(|e| e.to_string())?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_small_error() {
        let expected = Tensor::from_f32(&[3], vec![1.0, -2.0, 4.0]);
        let actual = Tensor::from_f32(&[3], vec![1.0, -2.0, 4.001]);
        let c = compare(&actual, &expected, Tolerance::MODEL_FP32).expect("same type");
        assert!((c.metrics.max_abs - 0.001).abs() < 1e-6);
        assert!((c.metrics.max_rel - 0.00025).abs() < 1e-6);
        assert!(c.metrics.cosine > 0.999_999);
        // 1e-3 > 1e-4 * 4.
        assert!(!c.pass);
        let loose =
            compare(&actual, &expected, Tolerance::Scaled { factor: 1e-3 }).expect("same type");
        assert!(loose.pass);
    }

    #[test]
    fn sqnr_is_signal_over_noise_energy_in_db() {
        // ‖e‖² = 1 + 4 + 16 = 21, ‖a − e‖² = 0.01: 10·log10(2100).
        let expected = Tensor::from_f32(&[3], vec![1.0, -2.0, 4.0]);
        let actual = Tensor::from_f32(&[3], vec![1.0, -2.1, 4.0]);
        let c = compare(&actual, &expected, Tolerance::MODEL_FP32).expect("same type");
        let want = 10.0 * (21.0f64 / 0.01).log10();
        assert!(
            (c.metrics.sqnr_db - want).abs() < 1e-3,
            "{}",
            c.metrics.sqnr_db
        );
        let same = compare(&expected, &expected, Tolerance::MODEL_FP32).expect("same type");
        assert_eq!(same.metrics.sqnr_db, f64::INFINITY);
    }

    #[test]
    fn elementwise_tolerance_counts_mismatches() {
        let expected = Tensor::from_f32(&[2], vec![100.0, 0.0]);
        let actual = Tensor::from_f32(&[2], vec![100.05, 0.001]);
        let tol = Tolerance::Elementwise {
            rtol: 1e-3,
            atol: 1e-5,
        };
        let c = compare(&actual, &expected, tol).expect("same type");
        assert_eq!(c.mismatches, 1, "0.05 <= 0.1 passes, 0.001 > 1e-5 fails");
        assert!(!c.pass);
    }

    #[test]
    fn nan_matches_nan_and_integers_are_exact() {
        let e = Tensor::from_f32(&[2], vec![f32::NAN, f32::NEG_INFINITY]);
        assert!(compare(&e, &e, Tolerance::MODEL_FP32).expect("ok").pass);
        let a = Tensor::from_i64(&[2], vec![1, 2]);
        let b = Tensor::from_i64(&[2], vec![1, 3]);
        let c = compare(&a, &b, Tolerance::Scaled { factor: 10.0 }).expect("ok");
        assert!(!c.pass);
        assert_eq!(c.mismatches, 1);
    }

    #[test]
    fn quantized_values_may_round_one_step_apart_only_under_cosine() {
        let q = |v: Vec<i64>| Tensor::from_i64_as(DType::U8, vec![4], v).expect("u8");
        let (a, e) = (q(vec![200, 101, 50, 3]), q(vec![200, 100, 50, 3]));
        assert!(compare(&a, &e, Tolerance::MODEL_BF16).expect("ok").pass);
        assert!(!compare(&a, &e, Tolerance::MODEL_FP32).expect("ok").pass);
        let far = q(vec![20, 100, 50, 3]);
        assert!(!compare(&far, &e, Tolerance::MODEL_BF16).expect("ok").pass);
        let (i, j) = (
            Tensor::from_i64(&[2], vec![7, 8]),
            Tensor::from_i64(&[2], vec![7, 9]),
        );
        assert!(!compare(&i, &j, Tolerance::MODEL_BF16).expect("ok").pass);
    }

    #[test]
    fn cosine_tolerance_catches_nan_infinity_and_scale() {
        let e = Tensor::from_f32(&[4], vec![5.0, 1.0, 2.0, 3.0]);
        let close = Tensor::from_f32(&[4], vec![5.01, 1.0, 2.0, 2.99]);
        assert!(compare(&close, &e, Tolerance::MODEL_BF16).expect("ok").pass);
        for bad in [
            vec![f32::NAN, 1.0, 2.0, 3.0],
            vec![f32::INFINITY, 1.0, 2.0, 3.0],
            vec![50.0, 10.0, 20.0, 30.0],
        ] {
            let a = Tensor::from_f32(&[4], bad.clone());
            let c = compare(&a, &e, Tolerance::MODEL_BF16).expect("ok");
            assert!(!c.pass, "{bad:?} passed: {:?}", c.metrics);
        }
        let scalar = compare(
            &Tensor::from_f32(&[1], vec![1000.0]),
            &Tensor::from_f32(&[1], vec![1.0]),
            Tolerance::MODEL_BF16,
        )
        .expect("ok");
        assert!(!scalar.pass);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = Tensor::from_f32(&[2], vec![1.0, 2.0]);
        let b = Tensor::from_f32(&[1, 2], vec![1.0, 2.0]);
        assert_eq!(
            compare(&a, &b, Tolerance::MODEL_FP32),
            Err("shape [2] but expected [1, 2]".into())
        );
    }
}
