//! Constant, ConstantOfShape (a scalar expanded to the shape), Range and
//! NonZero (computed at import: their length decides their shape) and
//! Identity (no node at all).

use crate::fold::FOLD_LIMIT;
use crate::graph::{BinaryOp, NodeId, Op};
use crate::tensor::DType;
use crate::tensor::Tensor;

use super::super::ctx::{built_constant, static_shape, ConvertError, ConvertResult, Ctx};
use super::super::ExpertRole;
use super::one;

/// Constant in every attribute form: `value`, `value_float(s)`,
/// `value_int(s)`; strings and sparse tensors are refused.
pub(super) fn constant(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let value = if let Some(t) = ctx.attr_tensor("value")? {
        t
    } else if let Some(v) = ctx.attr_float("value_float")? {
        Tensor::from_f32(&[], vec![v])
    } else if let Some(v) = ctx.attr_floats("value_floats")? {
        Tensor::from_f32(&[v.len()], v)
    } else if let Some(v) = ctx.attr_int("value_int")? {
        Tensor::from_i64(&[], vec![v])
    } else if let Some(v) = ctx.attr_ints("value_ints")? {
        Tensor::from_i64(&[v.len()], v)
    } else if ctx.attr("value_string").is_some() || ctx.attr("value_strings").is_some() {
        return Err(ConvertError::UnsupportedDtype {
            what: "string constant".into(),
            dtype: "string".into(),
        });
    } else if ctx.attr("sparse_value").is_some() {
        return Err("sparse constants are not supported".into());
    } else {
        return Err("no value attribute".into());
    };
    one(ctx.constant("value", value)?)
}

/// ConstantOfShape: `value` (one element, default f32 0) broadcast to the
/// shape given by input 0.
pub(super) fn constant_of_shape(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let dims = ctx
        .opt_ints_input(0)?
        .ok_or("the shape (input 0) is required")?;
    let shape = static_shape(&dims)?;
    let fill = match ctx.attr_tensor("value")? {
        Some(t) if t.numel() == 1 => t.reshaped(vec![]).ok_or("bad value")?,
        Some(_) => return Err("`value` must have exactly one element".into()),
        None => Tensor::from_f32(&[], vec![0.0]),
    };
    let scalar = ctx.constant("value", fill)?;
    if shape.is_empty() {
        return one(scalar);
    }
    one(ctx.add("expand", Op::Expand { shape }, &[scalar])?)
}

/// Range(start, limit, delta): all three must be known at compile time,
/// and the result is a constant of at most [`FOLD_LIMIT`] elements.
pub(super) fn range(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let start = ctx.value(0)?;
    let limit = ctx.value(1)?;
    let delta = ctx.value(2)?;
    if start.numel() != 1 || limit.numel() != 1 || delta.numel() != 1 {
        return Err("start, limit and delta must be scalars".into());
    }
    let dtype = start.dtype();
    if limit.dtype() != dtype || delta.dtype() != dtype {
        return Err("start, limit and delta must have the same type".into());
    }
    let too_long = || ConvertError::Overflow("the range has too many elements".into());
    let value = if dtype.is_float() {
        let (s, l, d) = (
            f64::from(start.to_f32_vec()[0]),
            f64::from(limit.to_f32_vec()[0]),
            f64::from(delta.to_f32_vec()[0]),
        );
        if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
            return Err("delta must be non-zero and all values finite".into());
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > FOLD_LIMIT as f64 {
            return Err(too_long());
        }
        let n = n as usize;
        let values = (0..n).map(|i| (s + i as f64 * d) as f32).collect();
        Tensor::from_f32_as(dtype, vec![n], values)
    } else if dtype.is_int() {
        let (s, l, d) = (
            start.to_i64_vec()[0],
            limit.to_i64_vec()[0],
            delta.to_i64_vec()[0],
        );
        if d == 0 {
            return Err("delta must be non-zero".into());
        }
        let span = i128::from(l) - i128::from(s);
        let d128 = i128::from(d);
        let n = if (span > 0) == (d128 > 0) && span != 0 {
            (span + d128 - d128.signum()) / d128
        } else {
            0
        };
        if n > FOLD_LIMIT as i128 {
            return Err(too_long());
        }
        let n = n as usize;
        let values = (0..n as i64)
            .map(|i| s.wrapping_add(i.wrapping_mul(d)))
            .collect();
        Tensor::from_i64_as(dtype, vec![n], values)
    } else {
        return Err(format!("Range does not take {dtype}").into());
    }
    .ok_or("cannot build the range")?;
    one(ctx.constant("range", value)?)
}

/// Identity: the output is the input.
pub(super) fn identity(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    one(ctx.input(0)?)
}

/// NonZero: the indices of the non-zero elements, `[rank, count]` int64 in
/// row-major order. Its length is the count, so the operand must be known
/// at compile time (computed here); one computed at run time is refused
/// naming the graph input it depends on, never given a guessed shape.
pub(super) fn non_zero(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    if let Some(ExpertRole::Enumerate { pieces, experts }) = ctx.expert {
        let operand = ctx.input(0)?;
        if ctx.node_value(operand)?.is_none() {
            return one(every_position(ctx, pieces, experts)?);
        }
    }
    let x = ctx.value(0)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let hits: Vec<usize> = x
        .to_bool_vec()
        .iter()
        .enumerate()
        .filter_map(|(i, &nz)| nz.then_some(i))
        .collect();
    let mut out = vec![0i64; rank * hits.len()];
    for (j, &flat) in hits.iter().enumerate() {
        let mut rest = flat;
        for d in (0..rank).rev() {
            out[d * hits.len() + j] = (rest % shape[d]) as i64;
            rest /= shape[d];
        }
    }
    // A scalar has rank 0: its result is [0, count] with no elements.
    let value = Tensor::from_i64(&[rank, hits.len()], out);
    one(ctx.constant("indices", value)?)
}

/// A `NonZero` of an expert loop (`expert_loop.rs`) whose operand is a
/// run-time value: every position of the operand, in row-major order —
/// for the outer loop, of the experts the router can choose (a one-hot's
/// padding class past them is never hit).
fn every_position(
    ctx: &mut Ctx,
    pieces: Option<usize>,
    experts: Option<usize>,
) -> ConvertResult<NodeId> {
    let mut shape = ctx.input_ty(0)?.shape;
    if let ([classes], Some(e)) = (shape.as_mut_slice(), experts) {
        *classes = (*classes).min(e);
    }
    if let (None, &[slots, tokens]) = (pieces, shape.as_slice()) {
        return token_positions(ctx, slots, tokens);
    }
    let count: usize = shape.iter().product();
    if let Some(p) = pieces.filter(|&p| p != count) {
        return Err(format!(
            "the traced expert loop runs {p} times for {count} experts: the export only runs \
             on inputs that use exactly {p} experts (a data-dependent shape); trace with an \
             input that uses every expert, or export the experts batched \
             (experts_implementation=\"batched_mm\")"
        )
        .into());
    }
    built_constant("the positions of an expert loop", &[shape.len(), count])?;
    let rank = shape.len();
    let mut out = vec![0i64; rank * count];
    for flat in 0..count {
        let mut rest = flat;
        for d in (0..rank).rev() {
            out[d * count + flat] = (rest % shape[d]) as i64;
            rest /= shape[d];
        }
    }
    ctx.constant("every_position", Tensor::from_i64(&[rank, count], out))
}

/// An inner expert loop's `NonZero` over the expert's `[slots, tokens]`
/// routing mask, as one position per token: `[slot, token]` with the slot
/// the token routes to the expert from (`Σ_k k · mask[k, t]`: a token uses
/// an expert in at most one of its top-k slots) and every token — a
/// static `[2, tokens]`. Tokens the expert does not serve get slot 0; the
/// scatter-add masks them out (see `scatter::expert_rows_added`).
fn token_positions(ctx: &mut Ctx, slots: usize, tokens: usize) -> ConvertResult<NodeId> {
    let mask = ctx.input(0)?;
    let ints = ctx.add("mask_i64", Op::Cast { to: DType::I64 }, &[mask])?;
    let slot_ids = Tensor::from_i64(&[slots, 1], (0..slots as i64).collect());
    let slot_ids = ctx.constant("slot_ids", slot_ids)?;
    let weighted = ctx.add("slot_of", Op::Binary(BinaryOp::Mul), &[ints, slot_ids])?;
    let slot = ctx.sum("slot", weighted, vec![0], true)?;
    let token_ids = Tensor::from_i64(&[1, tokens], (0..tokens as i64).collect());
    let token_ids = ctx.constant("token_ids", token_ids)?;
    ctx.add("every_token", Op::Concat { axis: 0 }, &[slot, token_ids])
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;
    use crate::graph::Op;

    #[test]
    fn constant_attribute_forms() {
        let out = run_node(
            "Constant",
            13,
            &[],
            &["c"],
            vec![("value_float", A::F(2.5))],
        );
        assert_close(&out[0], &[], &[2.5]);
        let out = run_node(
            "Constant",
            13,
            &[],
            &["c"],
            vec![("value_floats", A::Fs(vec![1., -2.]))],
        );
        assert_close(&out[0], &[2], &[1., -2.]);
        let bytes = model(
            vec![node(
                "Constant",
                &[],
                &["c"],
                vec![("value_floats", A::F(0.))],
            )],
            &[],
            &[],
            &["c"],
            13,
        );
        let err = import(&bytes).expect_err("wrong attribute type");
        assert_eq!(
            err.to_string(),
            "node `Constant_node` (Constant): attribute `value_floats` must be a list of floats"
        );
        let out = run_node(
            "Constant",
            13,
            &[],
            &["c"],
            vec![("value_ints", A::Is(vec![3, -2]))],
        );
        assert_eq!(out[0].to_i64_vec(), vec![3, -2]);
        assert_eq!(out[0].shape(), &[2]);
        let out = run_node("Constant", 13, &[], &["c"], vec![("value_int", A::I(7))]);
        assert_eq!((out[0].shape(), out[0].to_i64_vec()), (&[][..], vec![7]));
        let out = run_node(
            "Constant",
            13,
            &[],
            &["c"],
            vec![("value", A::T(f(&[2], &[1.5, 2.5])))],
        );
        assert_close(&out[0], &[2], &[1.5, 2.5]);
    }

    #[test]
    fn constant_of_shape_fills_the_value() {
        let out = run_node_with_consts(
            "ConstantOfShape",
            13,
            &[],
            &[("s", i(&[2], &[2, 3]))],
            &["s"],
            &["y"],
            vec![("value", A::T(i(&[1], &[7])))],
        );
        assert_eq!(out[0].shape(), &[2, 3]);
        assert_eq!(out[0].to_i64_vec(), vec![7; 6]);
    }

    #[test]
    fn range_counts_like_onnx() {
        let consts = [
            ("s", i(&[], &[10])),
            ("l", i(&[], &[4])),
            ("d", i(&[], &[-3])),
        ];
        let out = run_node_with_consts("Range", 13, &[], &consts, &["s", "l", "d"], &["y"], vec![]);
        assert_eq!(out[0].to_i64_vec(), vec![10, 7]);
        let consts = [
            ("s", f(&[], &[0.])),
            ("l", f(&[], &[1.])),
            ("d", f(&[], &[0.25])),
        ];
        let out = run_node_with_consts("Range", 13, &[], &consts, &["s", "l", "d"], &["y"], vec![]);
        assert_close(&out[0], &[4], &[0., 0.25, 0.5, 0.75]);
    }

    #[test]
    fn identity_adds_no_node() {
        let x = f(&[2], &[1., 2.]);
        let bytes = model(
            vec![node("Identity", &["x"], &["y"], vec![])],
            &[("x", &x)],
            &[],
            &["y"],
            13,
        );
        let g = import(&bytes).expect("imports");
        assert_eq!(g.node_count(), 1);
        assert!(matches!(g.node(g.outputs()[0].1).op, Op::Input));
    }

    #[test]
    fn non_zero_of_a_constant_is_folded() {
        let x = f(&[2, 3], &[0., 1., 0., f32::NAN, 0., -2.]);
        let out = run_node_with_consts("NonZero", 13, &[], &[("x", x)], &["x"], &["y"], vec![]);
        assert_eq!(out[0].shape(), &[2, 3]);
        assert_eq!(out[0].to_i64_vec(), vec![0, 1, 1, 1, 0, 2]);
    }

    #[test]
    fn non_zero_of_a_run_time_value_is_refused_naming_the_node() {
        let x = f(&[4], &[0., 1., 0., 2.]);
        let bytes = model(
            vec![node("NonZero", &["x"], &["y"], vec![])],
            &[("x", &x)],
            &[],
            &["y"],
            13,
        );
        let err = import(&bytes).expect_err("refused").to_string();
        assert!(err.contains("(NonZero)"), "{err}");
        assert!(err.contains("depends on graph input `x`"), "{err}");
    }
}
