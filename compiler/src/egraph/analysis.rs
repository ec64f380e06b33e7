//! The e-class analysis: every tensor class knows its type, whether it is
//! computable from constants alone, and (for small visible constants) its
//! value. Merging two classes checks that they have the same type: a rule
//! that unites tensors of different types is a compiler bug, and the pass
//! reports it instead of producing a wrong graph.
//!
//! The analysis also carries the bookkeeping of one e-graph run: the
//! segment's parameters, the rewrite budget of `--egraph-rule-limit`, and
//! which rules fired.

use std::collections::BTreeMap;
use std::sync::Arc;

use egg::{Analysis, DidMerge, EGraph, Id, RecExpr};

use crate::graph::{Op, TensorType};
use crate::interp::eval_op;
use crate::tensor::{DType, Tensor};

use super::lang::{AttrLeaf, ENode};

/// Constant values with at most this many elements are computed during
/// the run (so rules can test them); larger ones only know they are
/// constant.
pub const VALUE_LIMIT: usize = 1024;

/// The e-graph type of the optimizer.
pub type EG = EGraph<ENode, TensorAnalysis>;

/// What the analysis knows about a segment parameter.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Its type.
    pub ty: TensorType,
    /// Whether it is a constant.
    pub constant: bool,
    /// Its value, if rules may look at it (see `segment` for which
    /// constants are visible).
    pub value: Option<Arc<Tensor>>,
}

/// The analysis data of an e-class.
#[derive(Clone, Debug)]
pub enum Data {
    /// An attribute leaf.
    Attrs(AttrLeaf),
    /// A tensor value.
    Tensor(TensorInfo),
}

/// What is known about a tensor class.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The type (the same for every node of the class).
    pub ty: TensorType,
    /// Whether some node of the class is computable from constants alone.
    pub constant: bool,
    /// The value, when constant, visible and small.
    pub value: Option<Arc<Tensor>>,
}

/// One application of a rule, recorded when
/// [`TensorAnalysis::record_applications`] is set (rule validation): the
/// matched term and the term it was united with, each extracted right
/// before the union.
#[derive(Clone, Debug)]
pub struct Application {
    /// Rule name.
    pub rule: &'static str,
    /// The matched side.
    pub lhs: RecExpr<ENode>,
    /// The side the rule built.
    pub rhs: RecExpr<ENode>,
}

/// The analysis of one e-graph run.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    /// The segment's parameters, indexed by [`ENode::Param`].
    pub params: Vec<ParamInfo>,
    /// Rewrites still allowed (`None`: unlimited).
    pub budget: Option<usize>,
    /// How many times each rule fired (changed the e-graph).
    pub fired: BTreeMap<&'static str, usize>,
    /// The last rule that fired.
    pub last_fired: Option<&'static str>,
    /// Inconsistencies found (type mismatches on merge, ill-typed nodes).
    pub conflicts: Vec<String>,
    /// Whether to record every application (rule validation).
    pub record_applications: bool,
    /// The recorded applications.
    pub applications: Vec<Application>,
}

impl TensorAnalysis {
    /// An analysis over these parameters.
    pub fn new(params: Vec<ParamInfo>, budget: Option<usize>) -> TensorAnalysis {
        TensorAnalysis {
            params,
            budget,
            ..TensorAnalysis::default()
        }
    }
}

impl Data {
    /// The tensor information, unless this is an attribute leaf.
    pub fn tensor(&self) -> Option<&TensorInfo> {
        match self {
            Data::Tensor(t) => Some(t),
            Data::Attrs(_) => None,
        }
    }
}

/// The Graph IR op an e-node stands for and its operand classes, reading
/// the attribute leaf from the e-graph. `None` for leaves.
pub fn node_op(egraph: &EG, node: &ENode) -> Option<(Op, Vec<Id>)> {
    let ENode::Op(kind, children) = node else {
        return None;
    };
    let (attrs, operands) = match children.first().map(|&c| &egraph[c].data) {
        Some(Data::Attrs(leaf)) => (leaf.list(), &children[1..]),
        _ => (&[][..], &children[..]),
    };
    let op = Op::from_parts(kind, attrs).ok()?;
    Some((op, operands.to_vec()))
}

impl Analysis<ENode> for TensorAnalysis {
    type Data = Data;

    fn make(egraph: &mut EG, enode: &ENode, _id: Id) -> Data {
        match enode {
            ENode::Attrs(leaf) => Data::Attrs(leaf.clone()),
            ENode::Param(index) => match egraph.analysis.params.get(*index as usize) {
                Some(p) => Data::Tensor(TensorInfo {
                    ty: p.ty.clone(),
                    constant: p.constant,
                    value: p.value.clone(),
                }),
                None => {
                    egraph
                        .analysis
                        .conflicts
                        .push(format!("parameter ${index} does not exist"));
                    Data::Tensor(unknown())
                }
            },
            ENode::Literal(bits) => Data::Tensor(TensorInfo {
                ty: TensorType::new(DType::F32, vec![]),
                constant: true,
                value: Some(Arc::new(Tensor::from_f32(&[], vec![f32::from_bits(*bits)]))),
            }),
            ENode::Op(kind, _) => {
                let Some((op, operands)) = node_op(egraph, enode) else {
                    egraph
                        .analysis
                        .conflicts
                        .push(format!("`{kind}` has bad attributes"));
                    return Data::Tensor(unknown());
                };
                let infos: Vec<TensorInfo> = operands
                    .iter()
                    .map(|&o| egraph[o].data.tensor().cloned().unwrap_or_else(unknown))
                    .collect();
                let types: Vec<&TensorType> = infos.iter().map(|i| &i.ty).collect();
                let ty = match op.infer(&types) {
                    Ok(ty) => ty,
                    Err(message) => {
                        egraph
                            .analysis
                            .conflicts
                            .push(format!("ill-typed `{kind}`: {message}"));
                        return Data::Tensor(unknown());
                    }
                };
                let constant = !infos.is_empty() && infos.iter().all(|i| i.constant);
                let value = if constant && ty.numel() <= VALUE_LIMIT {
                    let values: Option<Vec<&Tensor>> =
                        infos.iter().map(|i| i.value.as_deref()).collect();
                    values
                        .and_then(|v| eval_op(&op, &v, &ty).ok())
                        .map(Arc::new)
                } else {
                    None
                };
                Data::Tensor(TensorInfo {
                    ty,
                    constant,
                    value,
                })
            }
        }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        match (a, b) {
            (Data::Tensor(a), Data::Tensor(b)) => {
                if a.ty != b.ty {
                    self.conflicts
                        .push(format!("merged classes of types {} and {}", a.ty, b.ty));
                    return DidMerge(false, false);
                }
                let mut changed_a = false;
                let mut changed_b = false;
                if a.constant != b.constant {
                    changed_a |= !a.constant;
                    changed_b |= !b.constant;
                    a.constant = true;
                }
                match (&a.value, b.value) {
                    (None, Some(v)) => {
                        a.value = Some(v);
                        changed_a = true;
                    }
                    (Some(_), None) => changed_b = true,
                    _ => {}
                }
                DidMerge(changed_a, changed_b)
            }
            (Data::Attrs(a), Data::Attrs(b)) => {
                if *a != b {
                    self.conflicts
                        .push(format!("merged attributes {} and {}", a.text(), b.text()));
                }
                DidMerge(false, false)
            }
            (a, b) => {
                self.conflicts.push(format!(
                    "merged an attribute leaf with a tensor: {a:?} / {b:?}"
                ));
                DidMerge(false, false)
            }
        }
    }
}

/// Placeholder data for a class whose type could not be inferred (a
/// conflict is recorded alongside, which fails the pass).
fn unknown() -> TensorInfo {
    TensorInfo {
        ty: TensorType::new(DType::F32, vec![0]),
        constant: false,
        value: None,
    }
}
