//! Widening fp16/bf16 graphs to f32 for the NPU: its vector unit computes
//! in f32 (SPEC.md §4) and the kernels take f32 tensors, so a model
//! exported in half precision computes in f32 between its edges.
//!
//! Inputs keep their type and are converted once (`{input}.f32`);
//! constants are converted exactly at compile time; every operation then
//! infers f32 from its operands. A `Cast` to a half type keeps its rounding
//! (it is followed by a cast back, `{cast}.f32`), so a model that rounds on
//! purpose still does. Outputs are converted back to their declared type
//! (`{output}.{type}`). Computing in f32 is at least as accurate as the
//! half-precision arithmetic onnxruntime does on CPU (which also widens
//! most operations).

use std::collections::HashMap;
use std::sync::Arc;

use crate::graph::{Graph, GraphError, NodeId, Op, TensorType};
use crate::tensor::{DType, Tensor};

fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// A name not yet in `graph`, from `base`.
fn fresh(graph: &Graph, base: String) -> String {
    let mut name = base.clone();
    let mut n = 1;
    while graph.find(&name).is_some() {
        n += 1;
        name = format!("{base}.{n}");
    }
    name
}

/// The graph computing in f32, or `None` when it has no fp16/bf16 tensor.
pub fn widen_half(graph: &Graph) -> Result<Option<Graph>, GraphError> {
    let ids = graph.node_ids();
    if !ids.iter().any(|&id| is_half(graph.node(id).ty.dtype)) {
        return Ok(None);
    }
    let mut out = Graph::new(graph.name.clone());
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    // Every original name first, so added names never take one.
    let reserve = |out: &Graph, base: String| {
        let mut name = fresh(out, base);
        while graph.find(&name).is_some() {
            name.push('_');
        }
        name
    };
    for &id in graph.inputs() {
        let node = graph.node(id);
        let input = out.add_input(node.name.clone(), node.ty.clone())?;
        let widened = if is_half(node.ty.dtype) {
            let name = reserve(&out, format!("{}.f32", node.name));
            out.add_node(name, Op::Cast { to: DType::F32 }, &[input])?
        } else {
            input
        };
        map.insert(id, widened);
    }
    for id in graph.topo_order()? {
        let node = graph.node(id);
        let new = match &node.op {
            Op::Input => continue,
            Op::Constant(t) if is_half(t.dtype()) => {
                let value = Tensor::from_f32(t.shape(), t.to_f32_vec());
                out.add_constant(node.name.clone(), Arc::new(value))?
            }
            Op::Constant(t) => out.add_constant(node.name.clone(), Arc::clone(t))?,
            op => {
                let operands: Vec<NodeId> = graph.operands(id).iter().map(|o| map[o]).collect();
                let result = out.add_node(node.name.clone(), op.clone(), &operands)?;
                if let Op::Cast { to } = op {
                    if is_half(*to) {
                        let name = reserve(&out, format!("{}.f32", node.name));
                        out.add_node(name, Op::Cast { to: DType::F32 }, &[result])?
                    } else {
                        result
                    }
                } else {
                    result
                }
            }
        };
        map.insert(id, new);
    }
    for (name, id) in graph.outputs() {
        let declared = &graph.node(*id).ty;
        let value = map[id];
        let value = if out.node(value).ty.dtype != declared.dtype {
            let cast = reserve(&out, format!("{name}.{}", declared.dtype.name()));
            out.add_node(cast, Op::Cast { to: declared.dtype }, &[value])?
        } else {
            value
        };
        out.add_output(name.clone(), value);
    }
    debug_assert!(graph
        .outputs()
        .iter()
        .zip(out.outputs())
        .all(|((_, a), (_, b))| graph.node(*a).ty == TensorType::clone(&out.node(*b).ty)));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BinaryOp, UnaryOp};
    use crate::interp::run;

    fn to_f16(values: Vec<f32>) -> Tensor {
        let n = values.len();
        let t = Tensor::from_f32(&[n], values);
        let ty = TensorType::new(DType::F16, vec![n]);
        crate::interp::eval_op(&Op::Cast { to: DType::F16 }, &[&t], &ty).expect("f16")
    }

    #[test]
    fn a_half_graph_computes_in_f32_between_its_edges() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F16, vec![3]))
            .expect("x");
        let c = g
            .add_constant("c", Arc::new(to_f16(vec![0.1, 2.0, -3.0])))
            .expect("c");
        let y = g
            .add_node("y", Op::Binary(BinaryOp::Mul), &[x, c])
            .expect("mul");
        let r = g
            .add_node("r", Op::Cast { to: DType::BF16 }, &[y])
            .expect("cast");
        let e = g.add_node("e", Op::Unary(UnaryOp::Exp), &[r]).expect("exp");
        g.add_output("e", e);
        let w = widen_half(&g).expect("widens").expect("has half tensors");
        let dtype = |name: &str| w.node(w.find(name).expect(name)).ty.dtype;
        assert_eq!(dtype("x"), DType::F16, "inputs keep their type");
        assert_eq!(dtype("x.f32"), DType::F32);
        assert_eq!(dtype("c"), DType::F32);
        assert_eq!(dtype("y"), DType::F32);
        assert_eq!(dtype("r"), DType::BF16, "a cast to bf16 still rounds");
        assert_eq!(dtype("r.f32"), DType::F32);
        assert_eq!(dtype("e"), DType::F32);
        let (name, out) = &w.outputs()[0];
        assert_eq!((name.as_str(), w.node(*out).ty.dtype), ("e", DType::BF16));
        // Same values as the half-precision graph, to bf16 rounding.
        let input = to_f16(vec![1.5, -0.25, 0.5]);
        let expected = run(&g, std::slice::from_ref(&input)).expect("half");
        let actual = run(&w, &[input]).expect("wide");
        let (e, a) = (expected[0].to_f32_vec(), actual[0].to_f32_vec());
        for (e, a) in e.iter().zip(&a) {
            assert!((e - a).abs() <= 8e-3 * e.abs().max(1.0), "{e} vs {a}");
        }
    }

    #[test]
    fn a_graph_without_half_tensors_is_left_alone() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        let y = g.add_node("y", Op::Unary(UnaryOp::Neg), &[x]).expect("neg");
        g.add_output("y", y);
        assert!(widen_half(&g).expect("ok").is_none());
    }
}
