//! The Graph IR verifier, run after every pass (in debug and release).
//!
//! Checks: the graph is acyclic; names are unique and non-empty; every
//! input node is listed once as a graph input and every listed input is an
//! input node; constants match their declared type; each operation's
//! operand count and types produce its declared type ([`Op::infer`]); every
//! output refers to a live node and output names are distinct.

use std::collections::HashSet;

use super::{Graph, Op};

/// A verifier failure, naming the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid graph: {0}")]
pub struct VerifyError(pub String);

/// Verifies a graph.
pub fn verify(graph: &Graph) -> Result<(), VerifyError> {
    let fail = |m: String| Err(VerifyError(m));
    graph.topo_order().map_err(|e| VerifyError(e.to_string()))?;
    let mut names = HashSet::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if node.name.is_empty() {
            return fail(format!("a {} node has an empty name", node.op.mnemonic()));
        }
        if !names.insert(node.name.as_str()) {
            return fail(format!("duplicate node name `{}`", node.name));
        }
        if graph.find(&node.name) != Some(id) {
            return fail(format!(
                "node `{}` is missing from the name index",
                node.name
            ));
        }
        match &node.op {
            Op::Input => {
                if graph.inputs().iter().filter(|&&i| i == id).count() != 1 {
                    return fail(format!(
                        "input node `{}` is not listed once as a graph input",
                        node.name
                    ));
                }
                if !graph.operands(id).is_empty() {
                    return fail(format!("input node `{}` has operands", node.name));
                }
            }
            _ => {
                if let Err(message) = graph.check_types(id) {
                    return fail(format!(
                        "node `{}` ({}): {message}",
                        node.name,
                        node.op.mnemonic()
                    ));
                }
            }
        }
    }
    for &id in graph.inputs() {
        if !graph.contains(id) || !matches!(graph.node(id).op, Op::Input) {
            return fail("a graph input is not an input node".into());
        }
    }
    let mut output_names = HashSet::new();
    for (name, id) in graph.outputs() {
        if !graph.contains(*id) {
            return fail(format!("output `{name}` refers to a removed node"));
        }
        if !output_names.insert(name.as_str()) {
            return fail(format!("duplicate output name `{name}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BinaryOp, TensorType};
    use crate::tensor::DType;

    #[test]
    fn wrong_declared_type_is_reported_with_the_node() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        g.add_node_typed(
            "bad",
            Op::Binary(BinaryOp::Add),
            &[x, x],
            TensorType::new(DType::F32, vec![3]),
        )
        .expect("added unchecked");
        let err = verify(&g).expect_err("type mismatch");
        assert!(
            err.to_string()
                .contains("node `bad` (add): declared type f32[3]"),
            "{err}"
        );
    }

    #[test]
    fn missing_operand_is_an_arity_error() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        g.add_node_typed("mm", Op::MatMul, &[x], TensorType::new(DType::F32, vec![2]))
            .expect("added unchecked");
        let err = verify(&g).expect_err("arity");
        assert!(
            err.to_string().contains("expects 2 operands, has 1"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_output_names_are_refused() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        g.add_output("y", x);
        g.add_output("y", x);
        assert!(verify(&g).is_err());
    }
}
