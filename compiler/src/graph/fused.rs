//! Fused elementwise chains: the expression of an `elementwise` node.
//!
//! A chain of elementwise ops whose intermediate results are f32, have one
//! user and the result's shape becomes one node (one kernel on the NPU,
//! intermediates never stored). Its expression is a tree over the node's
//! operands; in the text form and as an e-graph attribute it is one word
//! in postfix order, `x0.x1.mul.x2.add` for `(x0 · x1) + x2`: `x{i}` is
//! operand `i`, and each op name (a unary or binary Graph IR op, `gelu`,
//! `gelu_tanh`, `where`) takes its operands from the stack.
//!
//! Typing and evaluation apply each op of the tree exactly as the separate
//! nodes did ([`Op::infer`], the interpreter's `eval_op`), so fusing a
//! chain never changes a value.

use super::op::{BinaryOp, GeluApprox, Op, UnaryOp};
use super::TensorType;
use crate::tensor::DType;

/// Operand indices a parsed expression may name (`x0` to `x65535`): far
/// more operands than any node has, and small enough that counting them
/// cannot overflow.
pub const MAX_OPERANDS: usize = 1 << 16;

/// An elementwise expression over a node's operands.
#[derive(Clone, Debug, PartialEq)]
pub enum FusedExpr {
    /// Operand `i`.
    Input(usize),
    /// An elementwise Graph IR op (unary, binary, `gelu`, `where`) applied
    /// to sub-expressions.
    Apply(Box<Op>, Vec<FusedExpr>),
}

impl FusedExpr {
    /// Whether `op` may appear in a fused expression.
    pub fn fusable(op: &Op) -> bool {
        matches!(
            op,
            Op::Unary(_)
                | Op::Binary(_)
                | Op::Gelu { .. }
                | Op::Where
                | Op::Cast {
                    to: DType::F32 | DType::U8 | DType::I8
                }
        )
    }

    /// The postfix word: `x0.x1.mul`.
    pub fn to_word(&self) -> String {
        let mut parts = Vec::new();
        self.postfix(&mut parts);
        parts.join(".")
    }

    fn postfix(&self, out: &mut Vec<String>) {
        match self {
            FusedExpr::Input(i) => out.push(format!("x{i}")),
            FusedExpr::Apply(op, args) => {
                for a in args {
                    a.postfix(out);
                }
                out.push(match op.as_ref() {
                    Op::Gelu {
                        approximate: GeluApprox::Tanh,
                    } => "gelu_tanh".to_string(),
                    Op::Cast { to } => to.name().to_string(),
                    other => other.mnemonic().to_string(),
                });
            }
        }
    }

    /// Parses a postfix word.
    pub fn parse(word: &str) -> Result<FusedExpr, String> {
        let mut stack: Vec<FusedExpr> = Vec::new();
        for token in word.split('.') {
            if let Some(index) = token.strip_prefix('x') {
                let i = index
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < MAX_OPERANDS)
                    .ok_or_else(|| format!("bad operand `{token}` in `{word}`"))?;
                stack.push(FusedExpr::Input(i));
                continue;
            }
            let op = op_of(token).ok_or_else(|| format!("unknown op `{token}` in `{word}`"))?;
            let arity = match op {
                Op::Binary(_) => 2,
                Op::Where => 3,
                _ => 1,
            };
            if stack.len() < arity {
                return Err(format!("`{token}` lacks operands in `{word}`"));
            }
            let args = stack.split_off(stack.len() - arity);
            stack.push(FusedExpr::Apply(Box::new(op), args));
        }
        match (stack.pop(), stack.is_empty()) {
            (Some(e @ FusedExpr::Apply(..)), true) => Ok(e),
            _ => Err(format!("`{word}` is not one expression")),
        }
    }

    /// The number of operands the expression reads (largest index + 1).
    pub fn arity(&self) -> usize {
        match self {
            FusedExpr::Input(i) => i.saturating_add(1),
            FusedExpr::Apply(_, args) => args.iter().map(FusedExpr::arity).max().unwrap_or(0),
        }
    }

    /// The ops applied, innermost first.
    pub fn ops(&self) -> Vec<&Op> {
        match self {
            FusedExpr::Input(_) => vec![],
            FusedExpr::Apply(op, args) => {
                let mut v: Vec<&Op> = args.iter().flat_map(FusedExpr::ops).collect();
                v.push(op.as_ref());
                v
            }
        }
    }

    /// The result type, typing every op as its own node would be; every
    /// intermediate must be f32 or bool (the fused kernel keeps them in
    /// f32, where a bool is exactly 0 or 1; integers and half types would
    /// round differently).
    pub fn infer(&self, operands: &[&TensorType]) -> Result<TensorType, String> {
        self.infer_at(operands, true)
    }

    fn infer_at(&self, operands: &[&TensorType], root: bool) -> Result<TensorType, String> {
        match self {
            FusedExpr::Input(i) => operands
                .get(*i)
                .map(|t| TensorType::clone(t))
                .ok_or_else(|| format!("operand x{i} is missing")),
            FusedExpr::Apply(op, args) => {
                if !FusedExpr::fusable(op) {
                    return Err(format!("`{}` cannot be fused", op.mnemonic()));
                }
                let types = args
                    .iter()
                    .map(|a| a.infer_at(operands, false))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&TensorType> = types.iter().collect();
                let ty = op.infer(&refs)?;
                if !root && !matches!(ty.dtype, DType::F32 | DType::Bool) {
                    return Err(format!(
                        "intermediate `{}` is {}, not f32 or bool",
                        op.mnemonic(),
                        ty.dtype.name()
                    ));
                }
                Ok(ty)
            }
        }
    }
}

/// The op a postfix token names.
fn op_of(token: &str) -> Option<Op> {
    if let Some(u) = UnaryOp::ALL.iter().find(|u| u.name() == token) {
        return Some(Op::Unary(*u));
    }
    if let Some(b) = BinaryOp::ALL.iter().find(|b| b.name() == token) {
        return Some(Op::Binary(*b));
    }
    match token {
        "gelu" => Some(Op::Gelu {
            approximate: GeluApprox::None,
        }),
        "gelu_tanh" => Some(Op::Gelu {
            approximate: GeluApprox::Tanh,
        }),
        "where" => Some(Op::Where),
        // A widening to f32 (of an operand, as the kernel loads it) or, at
        // the root, a narrowing into 8 bits (as the kernel stores it).
        "f32" => Some(Op::Cast { to: DType::F32 }),
        "u8" => Some(Op::Cast { to: DType::U8 }),
        "i8" => Some(Op::Cast { to: DType::I8 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_bad_words_are_refused() {
        for word in [
            "x0.x1.mul.x2.add",
            "x0.neg",
            "x0.gelu_tanh.x1.mul",
            "x2.x0.x1.where.exp",
            "x0.x0.mul.sqrt",
        ] {
            let e = FusedExpr::parse(word).expect(word);
            assert_eq!(e.to_word(), word);
        }
        assert_eq!(FusedExpr::parse("x0.x1.mul.x2.add").expect("ok").arity(), 3);
        for bad in [
            "",
            "x0",
            "x0.x1",
            "mul",
            "x0.frob",
            "xa.neg",
            "x0.x1.add.x2",
            // An operand index past every node's operands (once an
            // overflow counting them).
            "x0.x18446744073709551615.add",
            "x0.x65536.add",
        ] {
            assert!(FusedExpr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intermediates_must_be_f32() {
        let f32_ty = TensorType::new(DType::F32, vec![2]);
        let lt = FusedExpr::parse("x0.x1.less").expect("ok");
        // A comparison may end the chain (bool result)...
        assert_eq!(
            lt.infer(&[&f32_ty, &f32_ty]).expect("types").dtype,
            DType::Bool
        );
        // ... or feed another op (a bool is exactly 0 or 1 in f32) ...
        let e = FusedExpr::parse("x0.x1.less.not").expect("ok");
        assert_eq!(
            e.infer(&[&f32_ty, &f32_ty]).expect("types").dtype,
            DType::Bool
        );
        // ... but an integer or half-precision intermediate may not.
        let i64_ty = TensorType::new(DType::I64, vec![2]);
        let e = FusedExpr::parse("x0.x1.add.neg").expect("ok");
        assert!(e.infer(&[&i64_ty, &i64_ty]).is_err());
    }
}
