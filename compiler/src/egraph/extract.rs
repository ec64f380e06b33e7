//! DAG-aware extraction: picks one e-node per e-class so that the program
//! reachable from the roots is cheapest, counting a shared class (a
//! residual, a K/V projection used twice) once.
//!
//! Two phases. First the "faster greedy DAG" extractor of extraction-gym:
//! each class's best choice carries the set of classes its sub-program
//! uses, with their node costs; a node's cost is the sum over the union of
//! its children's sets plus its own; iterated to a fixed point. A node whose
//! children's sets contain its own class would close a cycle and is
//! skipped. That is exact within one sub-program but not across siblings
//! (a choice that is dearer alone can be cheaper because its parent pays
//! for a shared child anyway), so a second phase improves the selection
//! locally: for each selected class, try each alternative node and keep
//! it if the whole program (every class reachable from the roots, counted
//! once) gets cheaper and stays acyclic; repeat until nothing improves.
//! Classes and nodes are visited in id order and ties keep the earlier
//! choice, so the result is deterministic.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use egg::{Id, Language};

use super::analysis::EG;
use super::lang::ENode;

/// The chosen node of every class reachable from the roots.
#[derive(Debug)]
pub struct Selection {
    /// Chosen node per canonical class id (children canonicalized).
    pub choice: BTreeMap<Id, ENode>,
    /// The cost of the selected program (each class counted once).
    pub cost: f64,
}

/// Improvement sweeps at most (each is a full pass over the selection).
const MAX_SWEEPS: usize = 8;

struct Best {
    node: usize,
    total: f64,
    set: Rc<BTreeMap<Id, f64>>,
}

/// Extracts the cheapest DAG for `roots` under `cost(node, class)`.
/// Returns `None` if some root has no acyclic choice.
pub fn extract(egraph: &EG, roots: &[Id], cost: impl Fn(&ENode, Id) -> f64) -> Option<Selection> {
    let mut class_ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    class_ids.sort_unstable();
    // Canonical nodes with their costs, per class.
    let nodes: HashMap<Id, Vec<(ENode, f64)>> = class_ids
        .iter()
        .map(|&id| {
            let list = egraph[id]
                .nodes
                .iter()
                .map(|n| {
                    let canonical = n.clone().map_children(|c| egraph.find(c));
                    let c = cost(&canonical, id);
                    (canonical, c)
                })
                .collect();
            (id, list)
        })
        .collect();
    let roots: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    let best = greedy_dag(&class_ids, &nodes);
    let mut choice: HashMap<Id, usize> = best.iter().map(|(&c, b)| (c, b.node)).collect();
    let mut current = program_cost(&roots, &choice, &nodes)?;
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        let selected = reachable(&roots, &choice, &nodes)?;
        for class in selected {
            let was = choice[&class];
            for (index, (node, _)) in nodes[&class].iter().enumerate() {
                if index == was || node.children().iter().any(|c| !choice.contains_key(c)) {
                    continue;
                }
                let before = choice.insert(class, index);
                match program_cost(&roots, &choice, &nodes) {
                    Some(c) if c < current => {
                        current = c;
                        improved = true;
                    }
                    _ => {
                        if let Some(b) = before {
                            choice.insert(class, b);
                        }
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
    let selected = reachable(&roots, &choice, &nodes)?;
    let choice = selected
        .into_iter()
        .map(|c| (c, nodes[&c][choice[&c]].0.clone()))
        .collect();
    Some(Selection {
        choice,
        cost: current,
    })
}

/// Phase one: the best node of every class it can extract.
fn greedy_dag(class_ids: &[Id], nodes: &HashMap<Id, Vec<(ENode, f64)>>) -> HashMap<Id, Best> {
    let mut best: HashMap<Id, Best> = HashMap::new();
    loop {
        let mut changed = false;
        for &class in class_ids {
            for (index, (node, node_cost)) in nodes[&class].iter().enumerate() {
                let children = node.children();
                if children.iter().any(|c| !best.contains_key(c)) {
                    continue;
                }
                if children
                    .iter()
                    .any(|c| *c == class || best[c].set.contains_key(&class))
                {
                    continue;
                }
                let set = union_sets(children.iter().map(|c| &best[c].set), class, *node_cost);
                let total: f64 = set.values().sum();
                if best.get(&class).is_none_or(|b| total < b.total) {
                    best.insert(
                        class,
                        Best {
                            node: index,
                            total,
                            set: Rc::new(set),
                        },
                    );
                    changed = true;
                }
            }
        }
        if !changed {
            return best;
        }
    }
}

fn union_sets<'a>(
    sets: impl Iterator<Item = &'a Rc<BTreeMap<Id, f64>>>,
    class: Id,
    node_cost: f64,
) -> BTreeMap<Id, f64> {
    let sets: Vec<&Rc<BTreeMap<Id, f64>>> = sets.collect();
    let largest = sets
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (s.len(), usize::MAX - i))
        .map(|(i, _)| i);
    let mut out = match largest {
        Some(i) => BTreeMap::clone(sets[i]),
        None => BTreeMap::new(),
    };
    for (i, s) in sets.iter().enumerate() {
        if Some(i) != largest {
            for (k, v) in s.iter() {
                out.insert(*k, *v);
            }
        }
    }
    out.insert(class, node_cost);
    out
}

/// The classes the choices reach from the roots, in id order; `None` on a
/// cycle or a class without a choice.
fn reachable(
    roots: &[Id],
    choice: &HashMap<Id, usize>,
    nodes: &HashMap<Id, Vec<(ENode, f64)>>,
) -> Option<Vec<Id>> {
    // false: on the stack, true: done.
    let mut state: BTreeMap<Id, bool> = BTreeMap::new();
    let mut stack: Vec<(Id, usize)> = Vec::new();
    for &root in roots {
        if state.contains_key(&root) {
            continue;
        }
        state.insert(root, false);
        stack.push((root, 0));
        while let Some(&mut (class, ref mut next)) = stack.last_mut() {
            let node = &nodes[&class][*choice.get(&class)?].0;
            match node.children().get(*next) {
                Some(&child) => {
                    *next += 1;
                    match state.get(&child) {
                        Some(false) => return None,
                        Some(true) => {}
                        None => {
                            state.insert(child, false);
                            stack.push((child, 0));
                        }
                    }
                }
                None => {
                    state.insert(class, true);
                    stack.pop();
                }
            }
        }
    }
    Some(state.into_keys().collect())
}

/// The cost of the program the choices select, each class once.
fn program_cost(
    roots: &[Id],
    choice: &HashMap<Id, usize>,
    nodes: &HashMap<Id, Vec<(ENode, f64)>>,
) -> Option<f64> {
    let classes = reachable(roots, choice, nodes)?;
    Some(classes.iter().map(|c| nodes[c][choice[c]].1).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egraph::analysis::{ParamInfo, TensorAnalysis};
    use crate::graph::TensorType;
    use crate::tensor::DType;

    #[test]
    fn a_shared_class_is_counted_once() {
        // root = add(x, s) with s = exp($0) (dear) and x = neg(s) or
        // relu($0). Alone, relu is cheaper than neg(exp); but the root
        // pays for s anyway, so neg(s) only adds its own cost.
        let params = vec![ParamInfo {
            ty: TensorType::new(DType::F32, vec![4]),
            constant: false,
            value: None,
        }];
        let mut egraph = EG::new(TensorAnalysis::new(params, None));
        let expr: egg::RecExpr<ENode> = "(add (neg (exp $0)) (exp $0))".parse().expect("parses");
        let root = egraph.add_expr(&expr);
        let neg = egraph.add_expr(&"(neg (exp $0))".parse().expect("parses"));
        let relu = egraph.add_expr(&"(relu $0)".parse().expect("parses"));
        egraph.union(neg, relu);
        egraph.rebuild();
        let cost = |node: &ENode, _: Id| match node {
            ENode::Op("exp", _) => 100.0,
            ENode::Op("relu", _) => 50.0,
            ENode::Op("neg", _) => 10.0,
            ENode::Op(..) => 1.0,
            _ => 0.0,
        };
        let selection = extract(&egraph, &[root], cost).expect("extracts");
        let x = egraph.find(neg);
        assert!(
            matches!(selection.choice[&x], ENode::Op("neg", _)),
            "{:?}",
            selection.choice[&x]
        );
        assert_eq!(selection.cost, 111.0);
        // A tree-cost extractor would have paid for exp twice or taken relu.
        let tree = egg::Extractor::new(&egraph, TreeCost(cost)).find_best(root);
        assert_eq!(tree.0, 151.0);
    }

    struct TreeCost<F>(F);

    impl<F: Fn(&ENode, Id) -> f64> egg::CostFunction<ENode> for TreeCost<F> {
        type Cost = f64;
        fn cost<C: FnMut(Id) -> f64>(&mut self, enode: &ENode, mut costs: C) -> f64 {
            (self.0)(enode, Id::from(0)) + enode.children().iter().map(|&c| costs(c)).sum::<f64>()
        }
    }
}
