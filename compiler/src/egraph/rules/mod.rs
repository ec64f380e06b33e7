//! The rewrite rules, one file per theme (see `README.md` in this
//! directory for how to write one):
//!
//! - [`algebra`]: identities, canonical operand order, constant folding of
//!   scales, division by a constant;
//! - [`layout`]: transposes, reshape chains, layout ops around GEMMs and
//!   elementwise ops;
//! - [`lifting`]: GELU, LayerNorm, RMSNorm, SiLU, softmax and rotary
//!   embedding recognized from their decompositions;
//! - [`fusion`]: GEMM with bias and activation, attention, and the other
//!   NPU-native forms.
//!
//! A rule is a [`RuleDef`]: a kebab-case name, an egg pattern for its
//! left-hand side, and a Rust function that checks the conditions and
//! builds the right-hand side through a [`Ctx`]. [`Ctx::add`] type-checks
//! every node it adds (an ill-typed right-hand side makes the rule not
//! apply), and the applier refuses to unite classes of different types.

use std::sync::Arc;

use egg::{Applier, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};

use crate::graph::{Op, TensorType};
use crate::tensor::Tensor;

use super::analysis::{node_op, Application, Data, TensorAnalysis, EG};
use super::lang::{AttrLeaf, ENode};

pub mod algebra;
pub mod fusion;
pub mod layout;
pub mod lifting;
#[cfg(test)]
mod tests;

/// The theme a rule belongs to (its file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Theme {
    /// `algebra.rs`.
    Algebra,
    /// `layout.rs`.
    Layout,
    /// `lifting.rs`.
    Lifting,
    /// `fusion.rs`.
    Fusion,
}

/// A rewrite rule.
#[derive(Clone, Copy)]
pub struct RuleDef {
    /// Kebab-case name, unique.
    pub name: &'static str,
    /// The left-hand side, an egg pattern over the e-graph language.
    pub lhs: &'static str,
    /// Checks the conditions and builds the right-hand side; `None` when
    /// the rule does not apply to this match.
    pub apply: fn(&mut Ctx<'_>) -> Option<Id>,
}

/// Every rule with its theme, in a fixed order (themes in order, rules in
/// file order).
pub fn all_rules() -> Vec<(Theme, RuleDef)> {
    let mut rules = Vec::new();
    for (theme, list) in [
        (Theme::Algebra, algebra::rules()),
        (Theme::Layout, layout::rules()),
        (Theme::Lifting, lifting::rules()),
        (Theme::Fusion, fusion::rules()),
    ] {
        rules.extend(list.into_iter().map(|r| (theme, r)));
    }
    rules
}

/// The egg rewrites for the rules `keep` selects.
pub fn rewrites(
    keep: impl Fn(&RuleDef) -> bool,
) -> Result<Vec<Rewrite<ENode, TensorAnalysis>>, String> {
    all_rules()
        .into_iter()
        .filter(|(_, r)| keep(r))
        .map(|(_, rule)| {
            let pattern: Pattern<ENode> = rule
                .lhs
                .parse()
                .map_err(|e| format!("rule `{}`: bad pattern: {e}", rule.name))?;
            Rewrite::new(rule.name, pattern, RuleApplier(rule))
        })
        .collect()
}

/// Applies a [`RuleDef`]: builds its right-hand side, checks the type,
/// unites, and keeps the books (budget, counts, recorded applications).
struct RuleApplier(RuleDef);

impl Applier<ENode, TensorAnalysis> for RuleApplier {
    fn apply_one(
        &self,
        egraph: &mut EG,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<ENode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        if egraph.analysis.budget == Some(0) {
            return vec![];
        }
        let root = egraph.find(eclass);
        let mut ctx = Ctx {
            egraph,
            subst,
            root,
        };
        let Some(new) = (self.0.apply)(&mut ctx) else {
            return vec![];
        };
        let new = egraph.find(new);
        if new == root {
            return vec![];
        }
        let (want, got) = (tensor_type(egraph, root), tensor_type(egraph, new));
        if want != got {
            egraph.analysis.conflicts.push(format!(
                "rule `{}` built {} for a class of type {}",
                self.0.name,
                got.map_or("an attribute".into(), |t| t.to_string()),
                want.map_or("an attribute".into(), |t| t.to_string()),
            ));
            return vec![];
        }
        let application = if egraph.analysis.record_applications {
            let extractor = egg::Extractor::new(egraph, egg::AstSize);
            Some(Application {
                rule: self.0.name,
                lhs: extractor.find_best(root).1,
                rhs: extractor.find_best(new).1,
            })
        } else {
            None
        };
        if !egraph.union(root, new) {
            return vec![];
        }
        let analysis = &mut egraph.analysis;
        *analysis.fired.entry(self.0.name).or_default() += 1;
        analysis.last_fired = Some(self.0.name);
        if let Some(budget) = analysis.budget.as_mut() {
            *budget -= 1;
        }
        analysis.applications.extend(application);
        vec![root]
    }
}

fn tensor_type(egraph: &EG, id: Id) -> Option<TensorType> {
    egraph[id].data.tensor().map(|t| t.ty.clone())
}

/// What a rule's function sees: the e-graph, the match, and helpers to
/// read classes and build the right-hand side.
pub struct Ctx<'a> {
    egraph: &'a mut EG,
    subst: &'a Subst,
    /// The matched class.
    pub root: Id,
}

impl Ctx<'_> {
    /// The class bound to a pattern variable (`"?x"`).
    pub fn v(&self, name: &str) -> Id {
        let var: Var = name
            .parse()
            .unwrap_or_else(|_| panic!("bad variable {name}"));
        self.egraph.find(self.subst[var])
    }

    /// The class bound to a pattern variable, if the pattern has it.
    pub fn try_v(&self, name: &str) -> Option<Id> {
        let var: Var = name.parse().ok()?;
        self.subst.get(var).map(|&id| self.egraph.find(id))
    }

    /// A class's type (`None` for an attribute leaf).
    pub fn ty(&self, id: Id) -> Option<&TensorType> {
        self.egraph[id].data.tensor().map(|t| &t.ty)
    }

    /// A class's shape (empty for an attribute leaf).
    pub fn shape(&self, id: Id) -> Vec<usize> {
        self.ty(id).map(|t| t.shape.clone()).unwrap_or_default()
    }

    /// Whether a class is computable from constants alone.
    pub fn is_const(&self, id: Id) -> bool {
        self.egraph[id].data.tensor().is_some_and(|t| t.constant)
    }

    /// A class's value, when it is a visible constant.
    pub fn value(&self, id: Id) -> Option<Arc<Tensor>> {
        self.egraph[id].data.tensor().and_then(|t| t.value.clone())
    }

    /// The value of a one-element constant.
    pub fn scalar(&self, id: Id) -> Option<f32> {
        let v = self.value(id)?;
        (v.numel() == 1 && v.dtype().is_float()).then(|| v.to_f32_vec()[0])
    }

    /// Whether a class is a one-element constant of value `x` (within
    /// `rel` relative tolerance).
    pub fn is_scalar(&self, id: Id, x: f32, rel: f32) -> bool {
        self.scalar(id)
            .is_some_and(|v| (v - x).abs() <= rel * x.abs().max(f32::MIN_POSITIVE))
    }

    /// The op of kind `kind` whose attributes are the leaf class `attrs`.
    pub fn op(&self, kind: &str, attrs: Id) -> Option<Op> {
        match &self.egraph[attrs].data {
            Data::Attrs(leaf) => Op::from_parts(kind, leaf.list()).ok(),
            Data::Tensor(_) => None,
        }
    }

    /// The ops (with operand classes) of the nodes in a class.
    pub fn nodes(&self, id: Id) -> Vec<(Op, Vec<Id>)> {
        self.egraph[id]
            .nodes
            .iter()
            .filter_map(|n| node_op(self.egraph, n))
            .map(|(op, operands)| {
                let operands = operands.iter().map(|&o| self.egraph.find(o)).collect();
                (op, operands)
            })
            .collect()
    }

    /// Adds `op` over operand classes, if it type-checks.
    pub fn add(&mut self, op: Op, operands: &[Id]) -> Option<Id> {
        let types: Vec<TensorType> = operands
            .iter()
            .map(|&o| self.ty(o).cloned())
            .collect::<Option<_>>()?;
        let refs: Vec<&TensorType> = types.iter().collect();
        op.infer(&refs).ok()?;
        let attrs = if op.attrs().is_empty() {
            None
        } else {
            Some(self.egraph.add(ENode::Attrs(AttrLeaf::of(&op))))
        };
        Some(self.egraph.add(ENode::op(&op, attrs, operands)))
    }

    /// An f32 scalar constant.
    pub fn literal(&mut self, value: f32) -> Id {
        self.egraph.add(ENode::literal(value))
    }
}

/// Whether `perm` is the identity permutation.
pub fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}
