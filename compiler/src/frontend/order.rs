//! Node order and naming: unique IR names for ONNX nodes and the
//! topological order they are converted in.

use std::collections::{HashMap, HashSet, VecDeque};

use onnx_protobuf::NodeProto;

use super::{ImportError, Value};

/// The IR name of each ONNX node: its name, else its first output's name,
/// else `{op_type}_{index}`; made unique.
pub(super) fn node_names(nodes: &[NodeProto]) -> Vec<String> {
    let mut seen = HashSet::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let base = if !node.name.is_empty() {
                node.name.clone()
            } else if let Some(out) = node.output.iter().find(|o| !o.is_empty()) {
                out.clone()
            } else {
                format!("{}_{i}", node.op_type)
            };
            let mut name = base.clone();
            let mut n = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}~{n}");
                n += 1;
            }
            name
        })
        .collect()
}

/// Kahn's algorithm over value names, stable in file order. Reports the
/// first undefined value, or the nodes left on a cycle.
pub(super) fn topological_order(
    nodes: &[NodeProto],
    names: &[String],
    available: &HashMap<String, Value>,
) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(out.as_str(), i);
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for input in node.input.iter().filter(|v| !v.is_empty()) {
            if let Some(&p) = producer.get(input.as_str()) {
                pending[i] += 1;
                users[p].push(i);
            } else if !available.contains_key(input) {
                return Err(ImportError::UndefinedValue {
                    node: names[i].clone(),
                    value: input.clone(),
                });
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|&i| pending[i] > 0)
            .map(|i| names[i].clone())
            .collect();
        return Err(ImportError::Cycle(stuck));
    }
    Ok(order)
}
