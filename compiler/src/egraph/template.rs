//! Templates: the optimized form of a segment, over its parameters, that
//! can be stamped out for every identical segment.
//!
//! A template node takes its name from the segment node whose e-class it
//! is (the earliest such node); a node a rewrite created is named after
//! its first operand that has a name (a segment node or a parameter),
//! `{operand}.{op}`, else after its first user (`.1`, `.2`, ... when
//! taken). Names are resolved per instance, so each block keeps its own
//! names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use egg::Id;

use crate::graph::{Graph, GraphError, NodeId, Op};
use crate::tensor::Tensor;

use super::analysis::{node_op, EG};
use super::extract::Selection;
use super::lang::ENode;
use super::segment::Segment;

/// An operand of a template node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TRef {
    /// An earlier template node.
    Node(usize),
    /// A segment parameter.
    Param(usize),
    /// An f32 scalar constant.
    Literal(f32),
}

/// How a template node is named in an instance.
#[derive(Clone, Debug, PartialEq)]
pub enum NameRule {
    /// The name of the segment's node at this index.
    Origin(usize),
    /// `{name of the anchor}.{suffix}`.
    Derived {
        /// The node the name hangs off.
        anchor: Anchor,
        /// What follows the dot (unique within the template).
        suffix: String,
    },
}

/// What a derived name hangs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// The segment's node at this index.
    Node(usize),
    /// The segment's parameter at this index.
    Param(usize),
}

/// One operation of a template.
#[derive(Clone, Debug)]
pub struct TNode {
    /// The operation.
    pub op: Op,
    /// Its operands.
    pub operands: Vec<TRef>,
    /// Its name.
    pub name: NameRule,
}

/// A segment's computation as a list of operations over its parameters.
#[derive(Clone, Debug, Default)]
pub struct Template {
    /// Operations in topological order.
    pub nodes: Vec<TNode>,
    /// What each of the segment's outputs becomes (same order as
    /// `Segment::outputs`).
    pub outputs: Vec<TRef>,
}

impl Template {
    /// The segment unchanged.
    pub fn identity(graph: &Graph, segment: &Segment) -> Template {
        let index: HashMap<NodeId, usize> = segment
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let param: HashMap<NodeId, usize> = segment
            .params
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let nodes = segment
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &id)| TNode {
                op: graph.node(id).op.clone(),
                operands: graph
                    .operands(id)
                    .iter()
                    .map(|o| match index.get(o) {
                        Some(&j) => TRef::Node(j),
                        None => TRef::Param(param[o]),
                    })
                    .collect(),
                name: NameRule::Origin(i),
            })
            .collect();
        Template {
            nodes,
            outputs: segment.outputs.iter().map(|&i| TRef::Node(i)).collect(),
        }
    }

    /// The template of an extraction: `roots` are the classes of the
    /// segment's outputs, `origin` maps a class to the earliest segment
    /// node in it.
    pub fn from_selection(
        egraph: &EG,
        selection: &Selection,
        roots: &[Id],
        origin: &BTreeMap<Id, usize>,
    ) -> Option<Template> {
        let mut builder = Builder {
            egraph,
            selection,
            origin,
            refs: HashMap::new(),
            nodes: Vec::new(),
            classes: Vec::new(),
        };
        let outputs = roots
            .iter()
            .map(|&r| builder.visit(egraph.find(r)))
            .collect::<Option<Vec<_>>>()?;
        let mut template = Template {
            nodes: builder.nodes,
            outputs,
        };
        template.derive_names(&builder.classes, origin);
        Some(template)
    }

    /// Names the nodes without an origin after an operand, else a user.
    fn derive_names(&mut self, classes: &[Id], origin: &BTreeMap<Id, usize>) {
        let n = self.nodes.len();
        let mut anchors: Vec<Option<Anchor>> = vec![None; n];
        for i in 0..n {
            anchors[i] = match origin.get(&classes[i]) {
                Some(&o) => Some(Anchor::Node(o)),
                None => self.nodes[i]
                    .operands
                    .iter()
                    .find_map(|operand| match *operand {
                        TRef::Node(j) => anchors[j],
                        TRef::Param(k) => Some(Anchor::Param(k)),
                        TRef::Literal(_) => None,
                    }),
            };
        }
        let mut first_user: Vec<Option<usize>> = vec![None; n];
        for (i, node) in self.nodes.iter().enumerate() {
            for operand in &node.operands {
                if let TRef::Node(j) = operand {
                    first_user[*j].get_or_insert(i);
                }
            }
        }
        // Users come later in the order: resolve the rest backwards.
        for i in (0..n).rev() {
            if anchors[i].is_none() {
                anchors[i] = first_user[i].and_then(|u| anchors[u]);
            }
        }
        let mut taken: HashSet<(Anchor, String)> = HashSet::new();
        for i in 0..n {
            if origin.contains_key(&classes[i]) {
                continue;
            }
            let anchor = anchors[i].unwrap_or(Anchor::Node(0));
            let base = self.nodes[i].op.mnemonic().to_string();
            let mut suffix = base.clone();
            let mut k = 1;
            while !taken.insert((anchor, suffix.clone())) {
                suffix = format!("{base}.{k}");
                k += 1;
            }
            self.nodes[i].name = NameRule::Derived { anchor, suffix };
        }
    }

    /// Adds one instance of the template to `out` for `segment` of `old`:
    /// `values` maps every node of `old` already placed in `out` (inputs,
    /// constants, earlier segments) and receives the segment's outputs.
    /// Constants are added on first use.
    pub fn instantiate(
        &self,
        old: &Graph,
        segment: &Segment,
        out: &mut Graph,
        values: &mut HashMap<NodeId, NodeId>,
        reserved: &HashSet<String>,
    ) -> Result<(), GraphError> {
        let mut params = Vec::with_capacity(segment.params.len());
        for &p in &segment.params {
            params.push(place_constant(old, p, out, values)?);
        }
        let mut placed: Vec<NodeId> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let name = match &node.name {
                NameRule::Origin(i) => old.node(segment.nodes[*i]).name.clone(),
                NameRule::Derived { anchor, suffix } => {
                    let anchor = match *anchor {
                        Anchor::Node(i) => segment.nodes[i],
                        Anchor::Param(k) => segment.params[k],
                    };
                    fresh_name(
                        out,
                        reserved,
                        &format!("{}.{suffix}", old.node(anchor).name),
                    )
                }
            };
            let mut operands = Vec::with_capacity(node.operands.len());
            for (position, operand) in node.operands.iter().enumerate() {
                operands.push(match *operand {
                    TRef::Node(j) => placed[j],
                    TRef::Param(k) => params[k],
                    TRef::Literal(v) => {
                        let name = fresh_name(out, reserved, &format!("{name}.c{position}"));
                        out.add_constant(name, Arc::new(Tensor::from_f32(&[], vec![v])))?
                    }
                });
            }
            placed.push(out.add_node(name, node.op.clone(), &operands)?);
        }
        for (&i, output) in segment.outputs.iter().zip(&self.outputs) {
            let id = match *output {
                TRef::Node(j) => placed[j],
                TRef::Param(k) => params[k],
                TRef::Literal(v) => {
                    let name = fresh_name(out, reserved, &old.node(segment.nodes[i]).name);
                    out.add_constant(name, Arc::new(Tensor::from_f32(&[], vec![v])))?
                }
            };
            values.insert(segment.nodes[i], id);
        }
        Ok(())
    }
}

/// The node of `out` for `old`'s node `id`, adding it if it is a constant
/// not placed yet.
pub fn place_constant(
    old: &Graph,
    id: NodeId,
    out: &mut Graph,
    values: &mut HashMap<NodeId, NodeId>,
) -> Result<NodeId, GraphError> {
    if let Some(&placed) = values.get(&id) {
        return Ok(placed);
    }
    let node = old.node(id);
    let Op::Constant(t) = &node.op else {
        return Err(GraphError::Type {
            node: node.name.clone(),
            op: node.op.mnemonic().into(),
            message: "internal: a segment parameter was not placed".into(),
        });
    };
    let placed = out.add_constant(node.name.clone(), Arc::clone(t))?;
    values.insert(id, placed);
    Ok(placed)
}

/// `base`, or `base.1`, `base.2`, ... whichever is free in `out` and not
/// reserved for a node still to come.
fn fresh_name(out: &Graph, reserved: &HashSet<String>, base: &str) -> String {
    let free = |n: &str| out.find(n).is_none() && !reserved.contains(n);
    if free(base) {
        return base.to_string();
    }
    (1..)
        .map(|k| format!("{base}.{k}"))
        .find(|n| free(n))
        .unwrap_or_else(|| base.to_string())
}

struct Builder<'a> {
    egraph: &'a EG,
    selection: &'a Selection,
    origin: &'a BTreeMap<Id, usize>,
    refs: HashMap<Id, TRef>,
    nodes: Vec<TNode>,
    /// The class of each template node.
    classes: Vec<Id>,
}

impl Builder<'_> {
    fn visit(&mut self, class: Id) -> Option<TRef> {
        if let Some(&r) = self.refs.get(&class) {
            return Some(r);
        }
        let node = self.selection.choice.get(&class)?;
        let r = match node {
            ENode::Param(k) => TRef::Param(*k as usize),
            ENode::Literal(bits) => TRef::Literal(f32::from_bits(*bits)),
            ENode::Attrs(_) => return None,
            ENode::Op(..) => {
                let (op, operands) = node_op(self.egraph, node)?;
                let operands = operands
                    .iter()
                    .map(|&o| self.visit(self.egraph.find(o)))
                    .collect::<Option<Vec<_>>>()?;
                self.nodes.push(TNode {
                    op,
                    operands,
                    name: NameRule::Origin(self.origin.get(&class).copied().unwrap_or(0)),
                });
                self.classes.push(class);
                TRef::Node(self.nodes.len() - 1)
            }
        };
        self.refs.insert(class, r);
        Some(r)
    }
}
