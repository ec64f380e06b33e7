//! Elementwise ONNX ops: arithmetic, comparisons, logic, unary math,
//! Min/Max (variadic, folded into a chain), Where, Cast, Clip (expanded to
//! max/min).

use crate::graph::{BinaryOp, NodeId, Op, UnaryOp};
use crate::tensor::{DType, Tensor};

use super::super::ctx::{ConvertError, ConvertResult, Ctx};
use super::one;

/// Add, Sub, Mul, Div, Pow, comparisons, And, Or.
pub(super) fn binary(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let op = match ctx.op_type() {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        other => return Err(format!("not a binary op: {other}").into()),
    };
    if ctx.attr("axis").is_some() {
        // Opset < 7 broadcasting with an explicit axis.
        return Err("the legacy `axis` broadcasting attribute (opset < 7) is not supported".into());
    }
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    one(ctx.add(op.name(), Op::Binary(op), &[a, b])?)
}

/// Min and Max over any number of inputs, as a left-to-right chain.
pub(super) fn variadic(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let op = if ctx.op_type() == "Min" {
        BinaryOp::Min
    } else {
        BinaryOp::Max
    };
    let mut acc = ctx.input(0)?;
    for i in 1..ctx.input_count() {
        let next = ctx.input(i)?;
        acc = ctx.add(&i.to_string(), Op::Binary(op), &[acc, next])?;
    }
    one(acc)
}

/// Unary math and Not.
pub(super) fn unary(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let op = match ctx.op_type() {
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Tanh" => UnaryOp::Tanh,
        "Erf" => UnaryOp::Erf,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Cos" => UnaryOp::Cos,
        "Sin" => UnaryOp::Sin,
        "Not" => UnaryOp::Not,
        "Sign" => UnaryOp::Sign,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        other => return Err(format!("not a unary op: {other}").into()),
    };
    let x = ctx.input(0)?;
    one(ctx.add(op.name(), Op::Unary(op), &[x])?)
}

/// Where(cond, x, y).
pub(super) fn where_(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (c, x, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    one(ctx.add("where", Op::Where, &[c, x, y])?)
}

/// Cast(to); a cast to the same type disappears.
pub(super) fn cast(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let code = ctx.attr_int("to")?.ok_or("attribute `to` is required")?;
    let to = DType::from_onnx(code as i32).map_err(|dtype| ConvertError::UnsupportedDtype {
        what: "cast target".into(),
        dtype,
    })?;
    if ctx.ty(x).dtype == to {
        return one(x);
    }
    one(ctx.add("cast", Op::Cast { to }, &[x])?)
}

/// CastLike(x, like): Cast to the element type of `like`.
pub(super) fn cast_like(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let to = ctx.input_ty(1)?.dtype;
    if ctx.ty(x).dtype == to {
        return one(x);
    }
    one(ctx.add("cast", Op::Cast { to }, &[x])?)
}

/// Mod(a, b, fmod). With `fmod = 1` (C's `fmod`) the result has the sign
/// of `a`: `r = a - b·trunc(a / b)`, and `a` itself for a finite `a` and an
/// infinite `b`. With `fmod = 0` (Python's `%`) that of `b`: `r`, plus `b`
/// where `r` and `b` differ in sign (`r·b < 0`). Integer division
/// truncates, so integers are exact; floats are as exact as `a / b` is.
pub(super) fn modulo(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    let dtype = ctx.ty(a).dtype;
    let fmod = ctx.attr_int("fmod")?.unwrap_or(0) != 0;
    let bin = |ctx: &mut Ctx, part: &str, op: BinaryOp, x: NodeId, y: NodeId| {
        ctx.add(part, Op::Binary(op), &[x, y])
    };
    let zero = ctx.scalar("zero", dtype, 0.0)?;
    let quotient = bin(ctx, "quotient", BinaryOp::Div, a, b)?;
    let whole = if dtype.is_float() {
        // trunc(q) = q < 0 ? ceil(q) : floor(q)
        let negative = bin(ctx, "negative", BinaryOp::Less, quotient, zero)?;
        let up = ctx.add("ceil", Op::Unary(UnaryOp::Ceil), &[quotient])?;
        let down = ctx.add("floor", Op::Unary(UnaryOp::Floor), &[quotient])?;
        ctx.add("trunc", Op::Where, &[negative, up, down])?
    } else {
        quotient
    };
    let product = bin(ctx, "product", BinaryOp::Mul, whole, b)?;
    let mut remainder = bin(ctx, "remainder", BinaryOp::Sub, a, product)?;
    if dtype.is_float() {
        // b·trunc(a / b) is ∞·0 for a finite `a` and an infinite `b`.
        let inf = ctx.scalar("inf", dtype, f64::INFINITY)?;
        let abs_a = ctx.add("abs_a", Op::Unary(UnaryOp::Abs), &[a])?;
        let abs_b = ctx.add("abs_b", Op::Unary(UnaryOp::Abs), &[b])?;
        let finite_a = bin(ctx, "finite_a", BinaryOp::Less, abs_a, inf)?;
        let infinite_b = bin(ctx, "infinite_b", BinaryOp::Equal, abs_b, inf)?;
        let keep_a = bin(ctx, "keep_a", BinaryOp::And, finite_a, infinite_b)?;
        remainder = ctx.add("fmod", Op::Where, &[keep_a, a, remainder])?;
    }
    if fmod {
        return one(remainder);
    }
    let signs = bin(ctx, "signs", BinaryOp::Mul, remainder, b)?;
    let differ = bin(ctx, "differ", BinaryOp::Less, signs, zero)?;
    let adjusted = bin(ctx, "adjusted", BinaryOp::Add, remainder, b)?;
    one(ctx.add("mod", Op::Where, &[differ, adjusted, remainder])?)
}

/// BitShift(x, y) with `direction` LEFT or RIGHT, on unsigned and (opset
/// 28) signed integers. `2^y` comes from a constant table gathered by the
/// shift amount; LEFT is `x · 2^y` wrapped to the type's width, RIGHT is
/// `floor(x / 2^y)` (arithmetic for signed types). A shift that is negative
/// or at least the width gives 0 to the left and the sign fill (0 or −1) to
/// the right, as ONNX specifies. 8-bit types are computed in i32 and
/// 32-bit ones in i64, then cast back (the cast wraps); 64-bit ones in
/// their own type. On the NPU, whose VPU computes in fp32, 8-bit shifts
/// are exact and wider ones while the results fit fp32's 24-bit
/// significand (or are powers of two).
pub(super) fn bit_shift(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    let dtype = ctx.ty(x).dtype;
    if !dtype.is_int() || ctx.ty(y).dtype != dtype {
        return Err(format!(
            "BitShift takes two integer tensors of one type, not {} and {}",
            dtype.name(),
            ctx.ty(y).dtype.name()
        )
        .into());
    }
    let left = match ctx.attr_string("direction")?.as_deref() {
        Some("LEFT") => true,
        Some("RIGHT") => false,
        Some(other) => return Err(format!("unknown direction `{other}`").into()),
        None => return Err("attribute `direction` is required".into()),
    };
    let width = 8 * dtype.size() as i64;
    let signed = dtype != DType::U8;
    let work = match width {
        8 => DType::I32,
        32 => DType::I64,
        _ => dtype,
    };
    let bin = |ctx: &mut Ctx, part: &str, op: BinaryOp, a: NodeId, b: NodeId| {
        ctx.add(part, Op::Binary(op), &[a, b])
    };
    let cast = |ctx: &mut Ctx, part: &str, v: NodeId, to: DType| {
        if ctx.ty(v).dtype == to {
            Ok(v)
        } else {
            ctx.add(part, Op::Cast { to }, &[v])
        }
    };
    let (xw, yw) = (cast(ctx, "x_wide", x, work)?, cast(ctx, "y_wide", y, work)?);
    // The largest shift the table serves: RIGHT on a signed type stops
    // one short (2^(width-1) is negative there) and fills the sign instead.
    let top = if !left && signed {
        width - 2
    } else {
        width - 1
    };
    let table: Vec<i64> = (0..=top).map(|k| 1i64.wrapping_shl(k as u32)).collect();
    let table = Tensor::from_i64_as(work, vec![table.len()], table).ok_or("shift table")?;
    let table = ctx.constant("powers", table)?;
    let zero = ctx.scalar("zero", work, 0.0)?;
    let last = ctx.scalar("top", work, top as f64)?;
    let floor0 = bin(ctx, "amount_low", BinaryOp::Max, yw, zero)?;
    let amount = bin(ctx, "amount", BinaryOp::Min, floor0, last)?;
    let index_type = if work == DType::I64 {
        DType::I64
    } else {
        DType::I32
    };
    let index = cast(ctx, "amount_index", amount, index_type)?;
    let factor = ctx.add("factor", Op::Gather { axis: 0 }, &[table, index])?;
    let not_negative = bin(ctx, "not_negative", BinaryOp::GreaterOrEqual, yw, zero)?;
    let within = bin(ctx, "within", BinaryOp::LessOrEqual, yw, last)?;
    let served = bin(ctx, "served", BinaryOp::And, not_negative, within)?;
    let (shifted, beyond) = if left {
        (bin(ctx, "product", BinaryOp::Mul, xw, factor)?, zero)
    } else {
        let quotient = bin(ctx, "quotient", BinaryOp::Div, xw, factor)?;
        if signed {
            // floor: one less where the truncated quotient rounded up.
            let back = bin(ctx, "back", BinaryOp::Mul, quotient, factor)?;
            let rounded_up = bin(ctx, "rounded_up", BinaryOp::Greater, back, xw)?;
            let one_ = ctx.scalar("one", work, 1.0)?;
            let lower = bin(ctx, "lower", BinaryOp::Sub, quotient, one_)?;
            let floor = ctx.add("floor", Op::Where, &[rounded_up, lower, quotient])?;
            let minus_one = ctx.scalar("minus_one", work, -1.0)?;
            let negative = bin(ctx, "negative", BinaryOp::Less, xw, zero)?;
            let fill = ctx.add("sign_fill", Op::Where, &[negative, minus_one, zero])?;
            (floor, fill)
        } else {
            (quotient, zero)
        }
    };
    let result = ctx.add("shift", Op::Where, &[served, shifted, beyond])?;
    one(cast(ctx, "narrow", result, dtype)?)
}

/// Clip(x, min, max) = min(max(x, min), max); bounds are inputs since
/// opset 11 and attributes before.
pub(super) fn clip(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let mut x = ctx.input(0)?;
    let dtype = ctx.ty(x).dtype;
    let (lower, upper) = if ctx.opset < 11 {
        let lower = match ctx.attr_float("min")? {
            Some(v) => Some(ctx.scalar("min_value", dtype, f64::from(v))?),
            None => None,
        };
        let upper = match ctx.attr_float("max")? {
            Some(v) => Some(ctx.scalar("max_value", dtype, f64::from(v))?),
            None => None,
        };
        (lower, upper)
    } else {
        (ctx.opt_input(1), ctx.opt_input(2))
    };
    for (bound, op, part) in [(lower, BinaryOp::Max, "min"), (upper, BinaryOp::Min, "max")] {
        if let Some(b) = bound {
            if ctx.ty(b).numel() != 1 {
                return Err(format!("the {part} bound must be a scalar").into());
            }
            let b = ctx.reshape(&format!("{part}_scalar"), b, vec![])?;
            x = ctx.add(part, Op::Binary(op), &[x, b])?;
        }
    }
    one(x)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;
    use crate::frontend::ImportError;
    use crate::tensor::{DType, Tensor};

    #[test]
    fn add_broadcasts_a_row() {
        let out = run_node(
            "Add",
            17,
            &[
                ("x", f(&[2, 3], &[1., 2., 3., 4., 5., 6.])),
                ("y", f(&[3], &[10., 20., 30.])),
            ],
            &["z"],
            vec![],
        );
        assert_close(&out[0], &[2, 3], &[11., 22., 33., 14., 25., 36.]);
    }

    #[test]
    fn integer_div_truncates_toward_zero() {
        let out = run_node(
            "Div",
            17,
            &[("x", i(&[2], &[7, -7])), ("y", i(&[2], &[2, 2]))],
            &["z"],
            vec![],
        );
        assert_eq!(out[0].to_i64_vec(), vec![3, -3]);
    }

    #[test]
    fn variadic_min_chains_and_names_parts() {
        let inputs = [
            ("a", f(&[2], &[1., 5.])),
            ("b", f(&[2], &[3., 2.])),
            ("c", f(&[1], &[4.])),
        ];
        let out = run_node("Min", 13, &inputs, &["m"], vec![]);
        assert_close(&out[0], &[2], &[1., 2.]);
        let bytes = model(
            vec![node("Min", &["a", "b", "c"], &["m"], vec![])],
            &[
                ("a", &inputs[0].1),
                ("b", &inputs[1].1),
                ("c", &inputs[2].1),
            ],
            &[],
            &["m"],
            13,
        );
        let g = import(&bytes).expect("imports");
        assert!(g.find("Min_node.1").is_some() && g.find("Min_node").is_some());
    }

    #[test]
    fn clip_bounds_as_attributes_before_opset_11() {
        let out = run_node(
            "Clip",
            6,
            &[("x", f(&[3], &[-1., 0.5, 2.]))],
            &["y"],
            vec![("min", A::F(0.)), ("max", A::F(1.))],
        );
        assert_close(&out[0], &[3], &[0., 0.5, 1.]);
    }

    #[test]
    fn clip_bounds_as_inputs_from_opset_11() {
        let out = run_node_with_consts(
            "Clip",
            13,
            &[("x", f(&[3], &[-1., 0.5, 2.]))],
            &[("lo", f(&[], &[0.]))],
            &["x", "lo"],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[3], &[0., 0.5, 2.]);
    }

    #[test]
    fn cast_truncates_and_refuses_float64_naming_the_node() {
        let out = run_node(
            "Cast",
            19,
            &[("x", f(&[2], &[1.7, -1.7]))],
            &["y"],
            vec![("to", A::I(7))],
        );
        assert_eq!(out[0].to_i64_vec(), vec![1, -1]);
        let x = f(&[2], &[1., 2.]);
        let bytes = model(
            vec![node("Cast", &["x"], &["y"], vec![("to", A::I(11))])],
            &[("x", &x)],
            &[],
            &["y"],
            19,
        );
        let err = import(&bytes).expect_err("float64");
        assert!(matches!(err, ImportError::UnsupportedDtype { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "node `Cast_node` (Cast): cast target: unsupported dtype float64"
        );
    }

    #[test]
    fn where_broadcasts_all_three() {
        let c = Tensor::from_bool(&[2, 1], vec![true, false]);
        let out = run_node(
            "Where",
            16,
            &[("c", c), ("x", f(&[2], &[1., 2.])), ("y", f(&[], &[0.]))],
            &["z"],
            vec![],
        );
        assert_close(&out[0], &[2, 2], &[1., 2., 0., 0.]);
        assert_eq!(out[0].dtype(), DType::F32);
    }

    #[test]
    fn mod_follows_the_sign_of_the_divisor_or_the_dividend() {
        let (a, b) = (i(&[4], &[7, -7, 7, -7]), i(&[4], &[3, 3, -3, -3]));
        let run = |fmod: i64| {
            run_node(
                "Mod",
                13,
                &[("a", a.clone()), ("b", b.clone())],
                &["c"],
                vec![("fmod", A::I(fmod))],
            )[0]
            .to_i64_vec()
        };
        assert_eq!(run(0), [1, 2, -2, -1]);
        assert_eq!(run(1), [1, -1, 1, -1]);
    }

    #[test]
    fn bit_shift_wraps_left_and_fills_the_sign_right() {
        let t = |v: &[i64]| Tensor::from_i64_as(DType::I8, vec![v.len()], v.to_vec()).expect("i8");
        let x = t(&[64, -64, 5, -7, -7, 3]);
        let y = t(&[1, 1, 9, 1, -1, 7]);
        let dir = |d: &'static str| vec![("direction", A::S(d))];
        let left = run_node(
            "BitShift",
            28,
            &[("x", x.clone()), ("y", y.clone())],
            &["z"],
            dir("LEFT"),
        );
        assert_eq!(left[0].to_i64_vec(), vec![-128, -128, 0, -14, 0, -128]);
        let right = run_node("BitShift", 28, &[("x", x), ("y", y)], &["z"], dir("RIGHT"));
        assert_eq!(right[0].to_i64_vec(), vec![32, -32, 0, -4, -1, 0]);
        let u = |v: &[i64]| Tensor::from_i64_as(DType::U8, vec![v.len()], v.to_vec()).expect("u8");
        let out = run_node(
            "BitShift",
            11,
            &[("x", u(&[200, 3])), ("y", u(&[1, 8]))],
            &["z"],
            dir("LEFT"),
        );
        assert_eq!(out[0].to_i64_vec(), vec![144, 0]);
    }
}
