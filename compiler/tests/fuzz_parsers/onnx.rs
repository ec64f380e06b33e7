//! ONNX seeds and structural mutations of decoded models (attributes,
//! initializers, op types, wiring, declared shapes, the opset).

use super::harness::{repo, Rng};

/// ONNX models the importer fuzzer starts from: the fixtures, every
/// conformance model under 8 KiB (one or a few nodes of each op, so the
/// mutations reach every importer) and the two small transformer blocks.
pub fn onnx_seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    for dir in ["models/fixtures", "tests/conformance/node"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("model directory") {
            let model = entry.expect("entry").path().join("model.onnx");
            if std::fs::metadata(&model).is_ok_and(|m| m.len() <= 8192) {
                paths.push(model);
            }
        }
    }
    paths.sort();
    paths.push(repo().join("models/attention_block/model.onnx"));
    paths.push(repo().join("models/mlp_block/model.onnx"));
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("model"))
        .collect()
}

/// Signed values that break shape, axis and count arithmetic.
const INTERESTING_I64: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    -2,
    7,
    255,
    1 << 31,
    -(1 << 31),
    1 << 32,
    1 << 62,
    i64::MAX,
    i64::MIN,
];

/// Floats that break value handling.
const INTERESTING_F32: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN_POSITIVE,
    1e-45,
];

/// A random element of `values`.
fn pick<T: Copy>(rng: &mut Rng, values: &[T]) -> T {
    values[rng.below(values.len())]
}

/// Sets one element of `v` (or appends, or drops one) to an interesting value.
fn mutate_i64s(rng: &mut Rng, v: &mut Vec<i64>) {
    match rng.below(4) {
        0 if !v.is_empty() => {
            v.pop();
        }
        1 => v.push(pick(rng, INTERESTING_I64)),
        _ if v.is_empty() => v.push(pick(rng, INTERESTING_I64)),
        _ => {
            let at = rng.below(v.len());
            v[at] = pick(rng, INTERESTING_I64);
        }
    }
}

/// Mutates a tensor's header or one of its values.
fn mutate_tensor(rng: &mut Rng, t: &mut onnx_protobuf::TensorProto) {
    match rng.below(5) {
        0 => mutate_i64s(rng, &mut t.dims),
        1 => t.data_type = rng.below(24) as i32,
        2 if t.raw_data.len() >= 8 => {
            let at = rng.below(t.raw_data.len() / 8) * 8;
            let value = pick(rng, INTERESTING_I64).to_le_bytes();
            t.raw_data[at..at + 8].copy_from_slice(&value);
        }
        2 if !t.raw_data.is_empty() => {
            let at = rng.below(t.raw_data.len());
            t.raw_data[at] = rng.next() as u8;
        }
        3 if !t.int64_data.is_empty() => mutate_i64s(rng, &mut t.int64_data),
        3 if !t.float_data.is_empty() => {
            let at = rng.below(t.float_data.len());
            t.float_data[at] = pick(rng, INTERESTING_F32);
        }
        _ => {
            let keep = rng.below(t.raw_data.len() + 1);
            t.raw_data.truncate(keep);
        }
    }
}

/// One structural mutation of a decoded model: an attribute, an
/// initializer, an op type, a node's wiring, a declared shape or the opset.
/// Returns `None` when `bytes` is not a model.
pub fn mutate_model(rng: &mut Rng, bytes: &[u8], op_types: &[String]) -> Option<Vec<u8>> {
    use onnx_protobuf::Message as _;
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(bytes).ok()?;
    for _ in 0..1 + rng.below(3) {
        let graph = model.graph.mut_or_insert_default();
        let names: Vec<String> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().chain(&n.output).cloned())
            .chain(graph.initializer.iter().map(|t| t.name.clone()))
            .collect();
        match rng.below(8) {
            0..=2 if !graph.node.is_empty() => {
                let n = rng.below(graph.node.len());
                let node = &mut graph.node[n];
                if node.attribute.is_empty() || rng.below(4) == 0 {
                    // A wiring change: another value, none, one more or one less.
                    match rng.below(4) {
                        0 if !node.input.is_empty() => {
                            node.input.pop();
                        }
                        1 if !names.is_empty() => {
                            node.input.push(names[rng.below(names.len())].clone())
                        }
                        2 if !node.input.is_empty() => {
                            let at = rng.below(node.input.len());
                            node.input[at] = String::new();
                        }
                        _ if !node.input.is_empty() && !names.is_empty() => {
                            let at = rng.below(node.input.len());
                            node.input[at] = names[rng.below(names.len())].clone();
                        }
                        _ => node.output.push(format!("extra{}", rng.below(4))),
                    }
                    continue;
                }
                let a = rng.below(node.attribute.len());
                let attr = &mut node.attribute[a];
                match rng.below(5) {
                    0 => attr.i = pick(rng, INTERESTING_I64),
                    1 => mutate_i64s(rng, &mut attr.ints),
                    2 => attr.f = pick(rng, INTERESTING_F32),
                    3 if attr.t.is_some() => mutate_tensor(rng, attr.t.mut_or_insert_default()),
                    _ => attr.type_ = protobuf::EnumOrUnknown::from_i32(rng.below(16) as i32),
                }
            }
            3 if !graph.node.is_empty() && !op_types.is_empty() => {
                let n = rng.below(graph.node.len());
                graph.node[n].op_type = op_types[rng.below(op_types.len())].clone();
            }
            4 if !graph.initializer.is_empty() => {
                let t = rng.below(graph.initializer.len());
                mutate_tensor(rng, &mut graph.initializer[t]);
            }
            5 if !graph.input.is_empty() || !graph.output.is_empty() => {
                let list =
                    if graph.output.is_empty() || (!graph.input.is_empty() && rng.below(2) == 0) {
                        &mut graph.input
                    } else {
                        &mut graph.output
                    };
                let v = rng.below(list.len());
                let tensor = list[v].type_.mut_or_insert_default().mut_tensor_type();
                match rng.below(3) {
                    0 => tensor.elem_type = rng.below(24) as i32,
                    _ => {
                        let shape = tensor.shape.mut_or_insert_default();
                        if shape.dim.is_empty() || rng.below(4) == 0 {
                            shape.dim.push(Default::default());
                        }
                        let d = rng.below(shape.dim.len());
                        if rng.below(3) == 0 {
                            shape.dim[d].set_dim_param("seq".into());
                        } else {
                            shape.dim[d].set_dim_value(pick(rng, INTERESTING_I64));
                        }
                    }
                }
            }
            6 if !model.opset_import.is_empty() => {
                let o = rng.below(model.opset_import.len());
                model.opset_import[o].version =
                    pick(rng, &[1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 21, 22, 99]);
            }
            _ if graph.node.len() > 1 => {
                let n = rng.below(graph.node.len());
                graph.node.remove(n);
            }
            _ => {}
        }
    }
    model.write_to_bytes().ok()
}
