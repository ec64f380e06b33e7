//! The text form of op attributes: [`Op::attrs`] lists them in canonical
//! order for the printer, [`Op::from_parts`] rebuilds an op from a parsed
//! mnemonic and attribute list.

use std::fmt;

use crate::tensor::DType;

use super::op::{Activation, BinaryOp, ConvAttrs, GeluApprox, Op, ReduceKind, UnaryOp};

/// An attribute value in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// An integer.
    Int(i64),
    /// A float (printed so it re-parses exactly).
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
    /// `true` or `false`.
    Bool(bool),
    /// A bare word: a dtype or an enum value.
    Word(String),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(v) => write!(f, "{v}"),
            AttrValue::Float(v) => write!(f, "{v:?}"),
            AttrValue::Ints(v) => {
                let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            AttrValue::Bool(v) => write!(f, "{v}"),
            AttrValue::Word(v) => f.write_str(v),
        }
    }
}

fn ints(v: &[usize]) -> AttrValue {
    AttrValue::Ints(v.iter().map(|&x| x as i64).collect())
}

/// Reads typed attributes out of a parsed attribute list.
struct Attrs<'a> {
    list: &'a [(String, AttrValue)],
}

impl Attrs<'_> {
    fn get(&self, key: &str) -> Result<&AttrValue, String> {
        self.list
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("missing attribute `{key}`"))
    }
    fn int(&self, key: &str) -> Result<i64, String> {
        match self.get(key)? {
            AttrValue::Int(v) => Ok(*v),
            other => Err(format!(
                "attribute `{key}` must be an integer, not `{other}`"
            )),
        }
    }
    fn usize(&self, key: &str) -> Result<usize, String> {
        usize::try_from(self.int(key)?)
            .map_err(|_| format!("attribute `{key}` must be non-negative"))
    }
    fn float(&self, key: &str) -> Result<f32, String> {
        match self.get(key)? {
            AttrValue::Float(v) => Ok(*v),
            AttrValue::Int(v) => Ok(*v as f32),
            other => Err(format!("attribute `{key}` must be a number, not `{other}`")),
        }
    }
    fn ints(&self, key: &str) -> Result<Vec<i64>, String> {
        match self.get(key)? {
            AttrValue::Ints(v) => Ok(v.clone()),
            other => Err(format!("attribute `{key}` must be a list, not `{other}`")),
        }
    }
    fn usizes(&self, key: &str) -> Result<Vec<usize>, String> {
        self.ints(key)?
            .into_iter()
            .map(|x| {
                usize::try_from(x).map_err(|_| format!("attribute `{key}` must be non-negative"))
            })
            .collect()
    }
    fn bool(&self, key: &str) -> Result<bool, String> {
        match self.get(key)? {
            AttrValue::Bool(v) => Ok(*v),
            other => Err(format!(
                "attribute `{key}` must be true or false, not `{other}`"
            )),
        }
    }
    fn word(&self, key: &str) -> Result<&str, String> {
        match self.get(key)? {
            AttrValue::Word(v) => Ok(v),
            other => Err(format!("attribute `{key}` must be a word, not `{other}`")),
        }
    }
    /// A GEMM's `act`: `none` or an activation's name.
    fn activation(&self) -> Result<Option<Activation>, String> {
        match self.word("act")? {
            "none" => Ok(None),
            word => Activation::ALL
                .into_iter()
                .find(|act| act.name() == word)
                .map(Some)
                .ok_or_else(|| format!("unknown activation `{word}`")),
        }
    }
    /// Rejects attributes the op does not have.
    fn only(&self, keys: &[&str]) -> Result<(), String> {
        match self.list.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("unknown attribute `{k}`")),
            None => Ok(()),
        }
    }
}

impl Op {
    /// The attributes, in their canonical printing order.
    pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
        match self {
            Op::Input
            | Op::Constant(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Where
            | Op::MatMul
            | Op::GatherMatMul
            | Op::Rope => {
                vec![]
            }
            Op::Cast { to } => vec![("to", AttrValue::Word(to.name().into()))],
            Op::Gelu { approximate } => vec![(
                "approximate",
                AttrValue::Word(
                    match approximate {
                        GeluApprox::None => "none",
                        GeluApprox::Tanh => "tanh",
                    }
                    .into(),
                ),
            )],
            Op::Transpose { perm } => vec![("perm", ints(perm))],
            Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", ints(shape))],
            Op::Concat { axis }
            | Op::Gather { axis }
            | Op::GatherElements { axis }
            | Op::Scatter { axis }
            | Op::ScatterElements { axis }
            | Op::Softmax { axis } => {
                vec![("axis", AttrValue::Int(*axis as i64))]
            }
            Op::Slice {
                starts,
                ends,
                steps,
            } => vec![
                ("starts", AttrValue::Ints(starts.clone())),
                ("ends", AttrValue::Ints(ends.clone())),
                ("steps", AttrValue::Ints(steps.clone())),
            ],
            Op::GatherNd { batch_dims } => vec![("batch_dims", AttrValue::Int(*batch_dims as i64))],
            Op::Reduce {
                axes, keep_dims, ..
            } => {
                vec![
                    ("axes", ints(axes)),
                    ("keep_dims", AttrValue::Bool(*keep_dims)),
                ]
            }
            Op::LayerNorm { axis, epsilon }
            | Op::RmsNorm { axis, epsilon }
            | Op::AddLayerNorm { axis, epsilon }
            | Op::AddRmsNorm { axis, epsilon } => vec![
                ("axis", AttrValue::Int(*axis as i64)),
                ("epsilon", AttrValue::Float(*epsilon)),
            ],
            Op::Elementwise { expr } => vec![("expr", AttrValue::Word(expr.to_word()))],
            Op::Conv(c) => vec![
                ("strides", ints(&c.strides)),
                ("pads", ints(&c.pads)),
                ("dilations", ints(&c.dilations)),
                ("group", AttrValue::Int(c.group as i64)),
            ],
            Op::Trilu { upper, k } => vec![
                ("upper", AttrValue::Bool(*upper)),
                ("k", AttrValue::Int(*k)),
            ],
            Op::Gemm { trans_b, act } => vec![
                ("trans_b", AttrValue::Bool(*trans_b)),
                (
                    "act",
                    AttrValue::Word(act.map_or("none", Activation::name).into()),
                ),
            ],
            Op::QGemm {
                a_zp,
                b_zp,
                trans_b,
                act,
                out,
            } => vec![
                (
                    "a_zp",
                    match a_zp {
                        Some(z) => AttrValue::Int(i64::from(*z)),
                        None => AttrValue::Word("input".into()),
                    },
                ),
                (
                    "b_zp",
                    match b_zp {
                        Some(z) => AttrValue::Int(i64::from(*z)),
                        None => AttrValue::Word("input".into()),
                    },
                ),
                ("trans_b", AttrValue::Bool(*trans_b)),
                (
                    "act",
                    AttrValue::Word(act.map_or("none", Activation::name).into()),
                ),
                (
                    "out",
                    AttrValue::Word(out.map_or("f32", |(t, _)| t.name()).into()),
                ),
                (
                    "out_zp",
                    AttrValue::Int(i64::from(out.map_or(0, |(_, z)| z))),
                ),
            ],
            Op::Attention { scale, causal } => vec![
                ("scale", AttrValue::Float(*scale)),
                ("causal", AttrValue::Bool(*causal)),
            ],
        }
    }

    /// Rebuilds an op from its mnemonic and attributes (the inverse of
    /// [`Op::mnemonic`] and [`Op::attrs`]; not for `input`/`const`).
    pub fn from_parts(mnemonic: &str, list: &[(String, AttrValue)]) -> Result<Op, String> {
        let a = Attrs { list };
        if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == mnemonic) {
            a.only(&[])?;
            return Ok(Op::Unary(u));
        }
        if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == mnemonic) {
            a.only(&[])?;
            return Ok(Op::Binary(b));
        }
        let (op, keys): (Op, &[&str]) = match mnemonic {
            "where" => (Op::Where, &[]),
            "matmul" => (Op::MatMul, &[]),
            "gather_matmul" => (Op::GatherMatMul, &[]),
            "rope" => (Op::Rope, &[]),
            "gemm" => (
                Op::Gemm {
                    trans_b: a.bool("trans_b")?,
                    act: a.activation()?,
                },
                &["trans_b", "act"],
            ),
            "qgemm" => {
                let zp = |key: &str| {
                    let v = a.int(key)?;
                    i32::try_from(v).map_err(|_| format!("`{key}` = {v} is out of range"))
                };
                (
                    Op::QGemm {
                        a_zp: match a.get("a_zp")? {
                            AttrValue::Word(w) if w == "input" => None,
                            _ => Some(zp("a_zp")?),
                        },
                        b_zp: match a.get("b_zp")? {
                            AttrValue::Word(w) if w == "input" => None,
                            _ => Some(zp("b_zp")?),
                        },
                        trans_b: a.bool("trans_b")?,
                        act: a.activation()?,
                        out: match a.word("out")? {
                            "f32" => None,
                            "u8" => Some((DType::U8, zp("out_zp")?)),
                            "i8" => Some((DType::I8, zp("out_zp")?)),
                            other => {
                                return Err(format!(
                                    "qgemm `out` must be f32, u8 or i8, not `{other}`"
                                ))
                            }
                        },
                    },
                    &["a_zp", "b_zp", "trans_b", "act", "out", "out_zp"],
                )
            }
            "attention" => (
                Op::Attention {
                    scale: a.float("scale")?,
                    causal: a.bool("causal")?,
                },
                &["scale", "causal"],
            ),
            "cast" => {
                let word = a.word("to")?;
                let to = DType::from_name(word).ok_or_else(|| format!("unknown dtype `{word}`"))?;
                (Op::Cast { to }, &["to"])
            }
            "gelu" => {
                let approximate = match a.word("approximate")? {
                    "none" => GeluApprox::None,
                    "tanh" => GeluApprox::Tanh,
                    other => return Err(format!("unknown gelu approximation `{other}`")),
                };
                (Op::Gelu { approximate }, &["approximate"])
            }
            "transpose" => (
                Op::Transpose {
                    perm: a.usizes("perm")?,
                },
                &["perm"],
            ),
            "reshape" => (
                Op::Reshape {
                    shape: a.usizes("shape")?,
                },
                &["shape"],
            ),
            "expand" => (
                Op::Expand {
                    shape: a.usizes("shape")?,
                },
                &["shape"],
            ),
            "concat" => (
                Op::Concat {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "gather" => (
                Op::Gather {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "gather_elements" => (
                Op::GatherElements {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "scatter" => (
                Op::Scatter {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "scatter_elements" => (
                Op::ScatterElements {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "softmax" => (
                Op::Softmax {
                    axis: a.usize("axis")?,
                },
                &["axis"],
            ),
            "gather_nd" => (
                Op::GatherNd {
                    batch_dims: a.usize("batch_dims")?,
                },
                &["batch_dims"],
            ),
            "slice" => (
                Op::Slice {
                    starts: a.ints("starts")?,
                    ends: a.ints("ends")?,
                    steps: a.ints("steps")?,
                },
                &["starts", "ends", "steps"],
            ),
            "reduce_sum" | "reduce_mean" | "reduce_max" => {
                let kind = match mnemonic {
                    "reduce_sum" => ReduceKind::Sum,
                    "reduce_mean" => ReduceKind::Mean,
                    _ => ReduceKind::Max,
                };
                let op = Op::Reduce {
                    kind,
                    axes: a.usizes("axes")?,
                    keep_dims: a.bool("keep_dims")?,
                };
                (op, &["axes", "keep_dims"])
            }
            "layer_norm" | "rms_norm" | "add_layer_norm" | "add_rms_norm" => {
                let (axis, epsilon) = (a.usize("axis")?, a.float("epsilon")?);
                let op = match mnemonic {
                    "layer_norm" => Op::LayerNorm { axis, epsilon },
                    "rms_norm" => Op::RmsNorm { axis, epsilon },
                    "add_layer_norm" => Op::AddLayerNorm { axis, epsilon },
                    _ => Op::AddRmsNorm { axis, epsilon },
                };
                (op, &["axis", "epsilon"])
            }
            "elementwise" => (
                Op::Elementwise {
                    expr: super::fused::FusedExpr::parse(a.word("expr")?)?,
                },
                &["expr"],
            ),
            "conv" => (
                Op::Conv(ConvAttrs {
                    strides: a.usizes("strides")?,
                    pads: a.usizes("pads")?,
                    dilations: a.usizes("dilations")?,
                    group: a.usize("group")?,
                }),
                &["strides", "pads", "dilations", "group"],
            ),
            "trilu" => (
                Op::Trilu {
                    upper: a.bool("upper")?,
                    k: a.int("k")?,
                },
                &["upper", "k"],
            ),
            other => return Err(format!("unknown op `{other}`")),
        };
        a.only(keys)?;
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip_through_from_parts() {
        let ops = [
            Op::Cast { to: DType::BF16 },
            Op::Gelu {
                approximate: GeluApprox::Tanh,
            },
            Op::Slice {
                starts: vec![0, 3],
                ends: vec![2, -1],
                steps: vec![1, -1],
            },
            Op::Reduce {
                kind: ReduceKind::Max,
                axes: vec![1],
                keep_dims: false,
            },
            Op::LayerNorm {
                axis: 2,
                epsilon: 1e-5,
            },
            Op::Trilu {
                upper: false,
                k: -1,
            },
            Op::Binary(BinaryOp::GreaterOrEqual),
            Op::Unary(UnaryOp::Silu),
            Op::Gemm {
                trans_b: true,
                act: Some(Activation::GeluTanh),
            },
            Op::Gemm {
                trans_b: false,
                act: None,
            },
            Op::QGemm {
                a_zp: Some(128),
                b_zp: Some(-3),
                trans_b: true,
                act: Some(Activation::Relu),
                out: None,
            },
            Op::QGemm {
                a_zp: None,
                b_zp: None,
                trans_b: false,
                act: None,
                out: Some((DType::I8, -4)),
            },
            Op::Attention {
                scale: 0.125,
                causal: true,
            },
            Op::Rope,
        ];
        for op in ops {
            let attrs: Vec<(String, AttrValue)> = op
                .attrs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(Op::from_parts(op.mnemonic(), &attrs), Ok(op));
        }
    }
}
