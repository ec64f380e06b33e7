//! The e-graph language: Graph IR ops as e-nodes.
//!
//! An operation is an [`ENode::Op`] whose kind is the Graph IR mnemonic
//! (`matmul`, `transpose`, `gemm`, ...). An op with attributes takes an
//! [`ENode::Attrs`] leaf as its first child, then its operands; an op
//! without attributes has only its operands. Keeping attributes in a child
//! lets rule patterns bind them to variables (`(transpose ?perm ?x)`) and
//! check them in Rust, instead of spelling out every attribute value.
//!
//! Leaves besides attributes: [`ENode::Param`] (`$3`), the value of a
//! segment parameter (a graph input, a constant, or a value computed
//! outside the segment), and [`ENode::Literal`] (`0.5`), an f32 scalar that
//! a rewrite introduced.
//!
//! The s-expression form (what patterns and the one-line rule tests use):
//!
//! ```text
//! (gemm {trans_b=false,act=gelu} $0 $1 $2)
//! (transpose {perm=[0,2,1,3]} (reshape {shape=[1,8,2,16]} $0))
//! (mul (mul $0 (add (erf (mul $0 0.70710677)) 1.0)) 0.5)
//! ```

use std::fmt;
use std::sync::Arc;

use egg::{FromOp, Id, Language, RecExpr};

use crate::graph::{AttrValue, BinaryOp, Op, UnaryOp};

/// Mnemonics of the ops with neither a unary nor a binary kind, in the
/// order of [`Op`]'s variants. `kind_name` maps text to these static
/// strings; a test checks that every op's mnemonic is covered.
const OTHER_KINDS: [&str; 30] = [
    "where",
    "cast",
    "gelu",
    "matmul",
    "gather_matmul",
    "transpose",
    "reshape",
    "expand",
    "concat",
    "slice",
    "gather",
    "gather_elements",
    "gather_nd",
    "scatter",
    "scatter_elements",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "softmax",
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "elementwise",
    "conv",
    "trilu",
    "gemm",
    "qgemm",
    "attention",
    "rope",
];

/// The static mnemonic for an op name, if it names a Graph IR op.
pub fn kind_name(name: &str) -> Option<&'static str> {
    UnaryOp::ALL
        .iter()
        .map(|u| u.name())
        .chain(BinaryOp::ALL.iter().map(|b| b.name()))
        .chain(OTHER_KINDS)
        .find(|k| *k == name)
}

/// The attributes of one op, in canonical order, with their canonical text
/// `{key=value,...}` (no spaces, so it is one s-expression token). Equality,
/// ordering and hashing use the text.
#[derive(Clone, Debug)]
pub struct AttrLeaf {
    text: Arc<str>,
    list: Arc<[(String, AttrValue)]>,
}

impl AttrLeaf {
    /// The attributes of an op (empty for ops without any).
    pub fn of(op: &Op) -> AttrLeaf {
        let list: Vec<(String, AttrValue)> = op
            .attrs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        AttrLeaf::from_list(list)
    }

    fn from_list(list: Vec<(String, AttrValue)>) -> AttrLeaf {
        let items: Vec<String> = list
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect();
        AttrLeaf {
            text: format!("{{{}}}", items.join(",")).into(),
            list: list.into(),
        }
    }

    /// The attribute list, as [`Op::from_parts`] takes it.
    pub fn list(&self) -> &[(String, AttrValue)] {
        &self.list
    }

    /// The canonical text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Parses the canonical text (`{perm=[0,2,1,3]}`).
    pub fn parse(text: &str) -> Result<AttrLeaf, String> {
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| format!("`{text}` is not an attribute list"))?;
        let mut list = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        let mut items = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !inner.is_empty() {
            items.push(&inner[start..]);
        }
        for item in items {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not key=value"))?;
            list.push((key.to_string(), parse_value(value)?));
        }
        Ok(AttrLeaf::from_list(list))
    }
}

fn value_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Ints(items) => {
            let items: Vec<String> = items.iter().map(|x| x.to_string()).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn parse_value(text: &str) -> Result<AttrValue, String> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items = if inner.is_empty() {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(|x| x.parse::<i64>().map_err(|_| format!("bad integer `{x}`")))
                .collect::<Result<_, _>>()?
        };
        return Ok(AttrValue::Ints(items));
    }
    Ok(match text {
        "true" => AttrValue::Bool(true),
        "false" => AttrValue::Bool(false),
        t if t.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
            || matches!(t, "inf" | "NaN") =>
        {
            match t.parse::<i64>() {
                Ok(v) => AttrValue::Int(v),
                Err(_) => AttrValue::Float(t.parse().map_err(|_| format!("bad number `{t}`"))?),
            }
        }
        t => AttrValue::Word(t.to_string()),
    })
}

impl PartialEq for AttrLeaf {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for AttrLeaf {}
impl PartialOrd for AttrLeaf {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AttrLeaf {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}
impl std::hash::Hash for AttrLeaf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// An e-node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ENode {
    /// An operation: kind, then children (the attribute leaf first when
    /// the op has attributes, then the operands in order).
    Op(&'static str, Vec<Id>),
    /// The attributes of the parent op.
    Attrs(AttrLeaf),
    /// A segment parameter.
    Param(u32),
    /// An f32 scalar (shape `[]`) introduced by a rewrite; the bits of the
    /// value.
    Literal(u32),
}

/// What distinguishes e-nodes when matching: the op kind, or the whole
/// leaf.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Discriminant {
    /// An op of this kind.
    Op(&'static str),
    /// This exact leaf.
    Leaf(ENode),
}

impl ENode {
    /// A literal scalar.
    pub fn literal(value: f32) -> ENode {
        ENode::Literal(value.to_bits())
    }

    /// The e-node for a Graph IR op over operand classes, given the class
    /// of its attribute leaf (required iff the op has attributes).
    pub fn op(op: &Op, attrs: Option<Id>, operands: &[Id]) -> ENode {
        let mut children = Vec::with_capacity(operands.len() + 1);
        children.extend(attrs);
        children.extend_from_slice(operands);
        ENode::Op(op.mnemonic(), children)
    }
}

impl Language for ENode {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            ENode::Op(kind, _) => Discriminant::Op(kind),
            leaf => Discriminant::Leaf(leaf.clone()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (ENode::Op(a, x), ENode::Op(b, y)) => a == b && x.len() == y.len(),
            (a, b) => a == b,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Op(_, children) => children,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Op(_, children) => children,
            _ => &mut [],
        }
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ENode::Op(kind, _) => f.write_str(kind),
            ENode::Attrs(leaf) => f.write_str(leaf.text()),
            ENode::Param(i) => write!(f, "${i}"),
            ENode::Literal(bits) => write!(f, "{:?}", f32::from_bits(*bits)),
        }
    }
}

/// Why an s-expression token is not an e-node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{0}` is not an e-node: {1}")]
pub struct ENodeParseError(String, String);

impl FromOp for ENode {
    type Error = ENodeParseError;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, Self::Error> {
        let fail = |why: &str| ENodeParseError(op.to_string(), why.to_string());
        if let Some(kind) = kind_name(op) {
            return Ok(ENode::Op(kind, children));
        }
        if !children.is_empty() {
            return Err(fail("unknown op"));
        }
        if op.starts_with('{') {
            return AttrLeaf::parse(op).map(ENode::Attrs).map_err(|e| fail(&e));
        }
        if let Some(index) = op.strip_prefix('$') {
            return index
                .parse()
                .map(ENode::Param)
                .map_err(|_| fail("bad parameter index"));
        }
        op.parse::<f32>()
            .map(ENode::literal)
            .map_err(|_| fail("unknown leaf"))
    }
}

/// The s-expression of a term, attribute leaves unquoted (the form the
/// rule tests and patterns use).
pub fn to_sexp(expr: &RecExpr<ENode>) -> String {
    fn go(expr: &RecExpr<ENode>, id: Id, out: &mut String) {
        let node = &expr[id];
        if node.children().is_empty() {
            out.push_str(&node.to_string());
            return;
        }
        out.push('(');
        out.push_str(&node.to_string());
        for &child in node.children() {
            out.push(' ');
            go(expr, child, out);
        }
        out.push(')');
    }
    let mut out = String::new();
    if !expr.as_ref().is_empty() {
        go(expr, Id::from(expr.as_ref().len() - 1), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Activation, ConvAttrs, GeluApprox, ReduceKind};
    use crate::tensor::{DType, Tensor};

    /// One op of every variant: the exhaustive match makes adding a
    /// variant fail here until it is listed.
    fn every_op() -> Vec<Op> {
        let ops = vec![
            Op::Constant(Arc::new(Tensor::from_f32(&[], vec![1.0]))),
            Op::Where,
            Op::Cast { to: DType::F32 },
            Op::Gelu {
                approximate: GeluApprox::None,
            },
            Op::MatMul,
            Op::GatherMatMul,
            Op::Transpose { perm: vec![1, 0] },
            Op::Reshape { shape: vec![2] },
            Op::Expand { shape: vec![2] },
            Op::Concat { axis: 0 },
            Op::Slice {
                starts: vec![0],
                ends: vec![1],
                steps: vec![1],
            },
            Op::Gather { axis: 0 },
            Op::GatherElements { axis: 0 },
            Op::GatherNd { batch_dims: 0 },
            Op::Scatter { axis: 0 },
            Op::ScatterElements { axis: 0 },
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: vec![0],
                keep_dims: true,
            },
            Op::Reduce {
                kind: ReduceKind::Mean,
                axes: vec![0],
                keep_dims: true,
            },
            Op::Reduce {
                kind: ReduceKind::Max,
                axes: vec![0],
                keep_dims: true,
            },
            Op::Softmax { axis: 0 },
            Op::LayerNorm {
                axis: 0,
                epsilon: 1e-5,
            },
            Op::RmsNorm {
                axis: 0,
                epsilon: 1e-5,
            },
            Op::AddLayerNorm {
                axis: 1,
                epsilon: 1e-5,
            },
            Op::AddRmsNorm {
                axis: 1,
                epsilon: 1e-6,
            },
            Op::Elementwise {
                expr: crate::graph::FusedExpr::parse("x0.x1.mul.gelu_tanh.x2.x0.where")
                    .expect("word"),
            },
            Op::Conv(ConvAttrs {
                strides: vec![1],
                pads: vec![0, 0],
                dilations: vec![1],
                group: 1,
            }),
            Op::Trilu { upper: true, k: 0 },
            Op::Gemm {
                trans_b: false,
                act: Some(Activation::Silu),
            },
            Op::QGemm {
                a_zp: Some(3),
                b_zp: Some(0),
                trans_b: false,
                act: None,
                out: None,
            },
            Op::Attention {
                scale: 0.5,
                causal: true,
            },
            Op::Rope,
        ];
        for op in &ops {
            match op {
                Op::Input
                | Op::Constant(_)
                | Op::Unary(_)
                | Op::Binary(_)
                | Op::Where
                | Op::Cast { .. }
                | Op::Gelu { .. }
                | Op::MatMul
                | Op::GatherMatMul
                | Op::Transpose { .. }
                | Op::Reshape { .. }
                | Op::Expand { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::Gather { .. }
                | Op::GatherElements { .. }
                | Op::GatherNd { .. }
                | Op::Scatter { .. }
                | Op::ScatterElements { .. }
                | Op::Reduce { .. }
                | Op::Softmax { .. }
                | Op::LayerNorm { .. }
                | Op::RmsNorm { .. }
                | Op::AddLayerNorm { .. }
                | Op::AddRmsNorm { .. }
                | Op::Elementwise { .. }
                | Op::Conv(_)
                | Op::Trilu { .. }
                | Op::Gemm { .. }
                | Op::QGemm { .. }
                | Op::Attention { .. }
                | Op::Rope => {}
            }
        }
        ops
    }

    #[test]
    fn every_mnemonic_is_a_kind() {
        for op in every_op().iter().skip(1) {
            assert_eq!(kind_name(op.mnemonic()), Some(op.mnemonic()));
        }
        for u in UnaryOp::ALL {
            assert_eq!(kind_name(u.name()), Some(u.name()));
        }
        for b in BinaryOp::ALL {
            assert_eq!(kind_name(b.name()), Some(b.name()));
        }
        assert_eq!(kind_name("input"), None);
    }

    #[test]
    fn attribute_text_round_trips() {
        for op in every_op().iter().skip(1) {
            let leaf = AttrLeaf::of(op);
            assert!(!leaf.text().contains(' '), "{}", leaf.text());
            let parsed = AttrLeaf::parse(leaf.text()).expect("parses");
            assert_eq!(parsed, leaf);
            assert_eq!(
                Op::from_parts(op.mnemonic(), parsed.list()).as_ref(),
                Ok(op),
                "{}",
                leaf.text()
            );
        }
    }

    #[test]
    fn s_expressions_parse_and_print() {
        let text = "(gemm {trans_b=false,act=gelu_tanh} (transpose {perm=[1,0]} $0) $1 0.5)";
        let expr: RecExpr<ENode> = text.parse().expect("parses");
        assert_eq!(to_sexp(&expr), text);
        assert!("(frobnicate $0)".parse::<RecExpr<ENode>>().is_err());
    }
}
