//! The ONNX frontend: reads a model and builds Graph IR with static shapes.
//!
//! Import, in order:
//! 1. parse the protobuf (`onnx-protobuf`); find the default-domain opset;
//! 2. look every node up in the op registry ([`ops::REGISTRY`]); every node
//!    without an entry is collected, and *all* of them are reported in one
//!    [`ImportError::UnsupportedOps`] (node names and op types);
//! 3. bind graph inputs: dtypes must be supported, symbolic dimensions are
//!    bound from [`ImportOptions::dims`] (an unbound one is an error naming
//!    the dim and the input); inputs listed in
//!    [`ImportOptions::input_values`] become constants (specialization);
//! 4. order the nodes topologically (cycles and undefined values are
//!    errors naming the nodes and values);
//! 5. convert each node with its registry entry, in topological order.
//!
//! Shapes are static, so `Shape`/`Size` become constants right away, and an
//! operand that must be known at compile time (a `Reshape` shape, `Slice`
//! bounds, axes given as inputs, ...) is computed by evaluating its constant
//! subgraph with the reference interpreter (memoized; the graph itself is
//! left for the fold pass to clean up). Opset-dependent forms (axes as
//! attribute or input, Softmax before and after opset 13, Slice's attributes
//! before opset 10, Clip's before 11) are all accepted: each converter reads
//! whichever form the node carries.
//!
//! Names: the node producing an ONNX node's first output is named after the
//! ONNX node (or, for unnamed nodes, after its first output); other nodes
//! created while expanding it are `{name}.{part}`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use onnx_protobuf::{Message as _, ModelProto};

use crate::graph::{Graph, NodeId};
use crate::provenance::{OnnxNode, Origins};
use crate::tensor::{Tensor, TensorError};

mod ctx;
mod error;
mod expert_loop;
mod inputs;
pub mod ops;
mod order;
mod signature;
#[cfg(test)]
pub(crate) mod testutil;

pub use ctx::ConvertError;
use ctx::{ConstCache, Ctx};
pub use error::ImportError;
pub use expert_loop::ExpertRole;
use inputs::{check_declared_dtype, input_type};
use order::{node_names, topological_order};
pub use signature::{signature, signature_of_file, Dim, Port, Signature};

/// How to import a model.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Values of symbolic dimensions (`--dim NAME=N`).
    pub dims: BTreeMap<String, usize>,
    /// Graph inputs whose values are fixed at compile time: they become
    /// constants and are no longer graph inputs. Tessera compiles for static
    /// shapes, so an input that determines a shape (e.g. a `Reshape` target
    /// fed as an input) must be specialized this way.
    pub input_values: BTreeMap<String, Tensor>,
}

/// Reads and imports an ONNX file. External data is resolved relative to
/// the file's directory.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Graph, ImportError> {
    import_file_traced(path, options).map(|(graph, _)| graph)
}

/// Runs `import` with `options`, and while it fails because an operand
/// must be known at compile time but depends on a graph input
/// ([`ImportError::NotConstant`]) whose value is in `known` (by name),
/// fixes that input to its value ([`ImportOptions::input_values`]) and
/// tries again. Returns the result and the inputs fixed, in order. This
/// is `check --const-inputs-from-data`, and how the conformance runners
/// specialize node tests.
pub fn import_specializing<T>(
    options: &ImportOptions,
    known: &[(String, Tensor)],
    mut import: impl FnMut(&ImportOptions) -> Result<T, ImportError>,
) -> Result<(T, Vec<String>), ImportError> {
    let mut options = options.clone();
    let mut fixed = Vec::new();
    loop {
        let error = match import(&options) {
            Ok(result) => return Ok((result, fixed)),
            Err(error) => error,
        };
        let ImportError::NotConstant {
            input: Some(name), ..
        } = &error
        else {
            return Err(error);
        };
        match known.iter().find(|(n, _)| n == name) {
            Some((_, value)) if !options.input_values.contains_key(name) => {
                options.input_values.insert(name.clone(), value.clone());
                fixed.push(name.clone());
            }
            _ => return Err(error),
        }
    }
}

/// Imports a model file and records which ONNX node each Graph IR node
/// comes from (see [`crate::provenance`]).
pub fn import_file_traced(
    path: &Path,
    options: &ImportOptions,
) -> Result<(Graph, Origins), ImportError> {
    import_model_traced(&read_model(path)?, path.parent(), options)
}

/// Reads and parses an ONNX file.
pub fn read_model(path: &Path) -> Result<ModelProto, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    ModelProto::parse_from_bytes(&bytes).map_err(|e| ImportError::Parse(e.to_string()))
}

/// Imports a serialized ONNX model.
pub fn import_bytes(
    bytes: &[u8],
    base_dir: Option<&Path>,
    options: &ImportOptions,
) -> Result<Graph, ImportError> {
    let model =
        ModelProto::parse_from_bytes(bytes).map_err(|e| ImportError::Parse(e.to_string()))?;
    import_model(&model, base_dir, options)
}

/// The default-domain opset a model imports.
pub fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
}

/// What a value name currently stands for during import.
#[derive(Clone, Copy)]
enum Value {
    Node(NodeId),
    /// An initializer not yet materialized as a constant node.
    Initializer(usize),
}

/// Imports a parsed ONNX model.
pub fn import_model(
    model: &ModelProto,
    base_dir: Option<&Path>,
    options: &ImportOptions,
) -> Result<Graph, ImportError> {
    import_model_traced(model, base_dir, options).map(|(graph, _)| graph)
}

/// [`import_model`], also recording which ONNX node each Graph IR node
/// comes from and which ONNX value it computes.
pub fn import_model_traced(
    model: &ModelProto,
    base_dir: Option<&Path>,
    options: &ImportOptions,
) -> Result<(Graph, Origins), ImportError> {
    let onnx = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("the model has no graph".into()))?;
    let opset = default_opset(model)
        .ok_or_else(|| ImportError::Model("the model imports no default-domain opset".into()))?;
    let names = node_names(&onnx.node);

    // Every node must have a registry entry; collect all that do not.
    let mut unsupported = Vec::new();
    for (node, name) in onnx.node.iter().zip(&names) {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        if !default_domain || ops::lookup(&node.op_type).is_none() {
            let op = if default_domain {
                node.op_type.clone()
            } else {
                format!("{}::{}", node.domain, node.op_type)
            };
            unsupported.push((name.clone(), op));
        }
    }
    if !unsupported.is_empty() {
        return Err(ImportError::UnsupportedOps(unsupported));
    }
    if !onnx.sparse_initializer.is_empty() {
        return Err(ImportError::Model(
            "sparse initializers are not supported".into(),
        ));
    }

    let mut graph = Graph::new(if onnx.name.is_empty() {
        "main"
    } else {
        onnx.name.as_str()
    });
    let mut values: HashMap<String, Value> = HashMap::new();
    let mut initializers = Vec::with_capacity(onnx.initializer.len());
    for (i, init) in onnx.initializer.iter().enumerate() {
        let tensor = Tensor::from_proto(init, base_dir).map_err(|e| match e {
            TensorError::UnsupportedDtype { name, dtype } => ImportError::UnsupportedDtype {
                what: format!("initializer `{name}`"),
                dtype,
            },
            other => ImportError::Tensor(other),
        })?;
        initializers.push(Arc::new(tensor));
        values.insert(init.name.clone(), Value::Initializer(i));
    }
    for input in &onnx.input {
        if values.contains_key(&input.name) {
            // An initializer listed as an input (IR < 4 style): a constant.
            continue;
        }
        let ty = input_type(input, &options.dims)?;
        let id = match options.input_values.get(&input.name) {
            Some(value) => {
                if value.dtype() != ty.dtype || value.shape().len() != ty.rank() {
                    return Err(ImportError::Model(format!(
                        "input `{}`: the specialized value is {}{:?}, the model declares {ty}",
                        input.name,
                        value.dtype(),
                        value.shape()
                    )));
                }
                graph.add_constant(&input.name, Arc::new(value.clone()))
            }
            None => graph.add_input(&input.name, ty),
        }
        .map_err(|e| ImportError::Model(e.to_string()))?;
        values.insert(input.name.clone(), Value::Node(id));
    }

    if let Some(unknown) = options
        .input_values
        .keys()
        .find(|name| !onnx.input.iter().any(|i| &i.name == *name))
    {
        let inputs: Vec<&str> = onnx.input.iter().map(|i| i.name.as_str()).collect();
        return Err(ImportError::Model(format!(
            "a value is given for `{unknown}`, which is not a graph input (inputs: {})",
            inputs.join(", ")
        )));
    }
    let order = topological_order(&onnx.node, &names, &values)?;
    let mut origins = Origins {
        nodes: onnx
            .node
            .iter()
            .zip(&names)
            .map(|(node, name)| OnnxNode {
                name: name.clone(),
                op_type: node.op_type.clone(),
                outputs: node
                    .output
                    .iter()
                    .filter(|o| !o.is_empty())
                    .cloned()
                    .collect(),
            })
            .collect(),
        ..Origins::default()
    };
    let mut cache = ConstCache::default();
    let loops = expert_loop::find(&onnx.node);
    // Each enumerated inner NonZero's operand (its mask), by node index.
    let mut masks: HashMap<usize, NodeId> = HashMap::new();
    for index in order {
        let node = &onnx.node[index];
        let name = &names[index];
        let mut inputs = Vec::with_capacity(node.input.len());
        for value in &node.input {
            inputs.push(if value.is_empty() {
                None
            } else {
                Some(resolve(
                    &mut graph,
                    &mut values,
                    &initializers,
                    &onnx.initializer,
                    value,
                )?)
            });
        }
        let entry = ops::lookup(&node.op_type).ok_or_else(|| {
            ImportError::UnsupportedOps(vec![(name.clone(), node.op_type.clone())])
        })?;
        let role = match (loops.expand.get(&index), loops.masked.get(&index)) {
            (Some(&pieces), _) => {
                if let Some(Some(mask)) = inputs.first() {
                    masks.insert(index, *mask);
                }
                let experts = loops.routed.get(&index).and_then(|(x, axis)| {
                    let Some(Value::Node(id)) = values.get(x) else {
                        return None;
                    };
                    let shape = &graph.node(*id).ty.shape;
                    let axis = usize::try_from(axis.rem_euclid(shape.len().max(1) as i64)).ok()?;
                    shape.get(axis).copied()
                });
                Some(ExpertRole::Enumerate { pieces, experts })
            }
            (None, Some(nz)) => masks.get(nz).copied().map(ExpertRole::MaskedScatter),
            (None, None) => None,
        };
        let mut ctx = Ctx::new(&mut graph, &mut cache, node, name, inputs, opset, base_dir);
        ctx.expert = role;
        let outputs = (entry.convert)(&mut ctx).map_err(|e| ctx.import_error(e))?;
        ctx.finish(&outputs).map_err(|e| ctx.import_error(e))?;
        let created = ctx.created().to_vec();
        for id in created {
            origins
                .created_by
                .insert(graph.node(id).name.clone(), index);
        }
        for (i, output) in node.output.iter().enumerate() {
            if output.is_empty() {
                continue;
            }
            match outputs.get(i).copied().flatten() {
                Some(id) => {
                    values.insert(output.clone(), Value::Node(id));
                    let node_name = graph.node(id).name.clone();
                    origins.value_of.entry(node_name).or_insert(output.clone());
                }
                None => {
                    return Err(ImportError::Node {
                        node: name.clone(),
                        op_type: node.op_type.clone(),
                        message: format!("output {i} (`{output}`) is not supported"),
                    })
                }
            }
        }
    }
    for output in &onnx.output {
        check_declared_dtype(output)?;
        if !values.contains_key(&output.name) {
            return Err(ImportError::UndefinedOutput(output.name.clone()));
        }
        let id = resolve(
            &mut graph,
            &mut values,
            &initializers,
            &onnx.initializer,
            &output.name,
        )?;
        graph.add_output(&output.name, id);
    }
    Ok((graph, origins))
}

/// The IR node of a value, materializing initializers on first use.
fn resolve(
    graph: &mut Graph,
    values: &mut HashMap<String, Value>,
    initializers: &[Arc<Tensor>],
    protos: &[onnx_protobuf::TensorProto],
    name: &str,
) -> Result<NodeId, ImportError> {
    match values.get(name).copied() {
        Some(Value::Node(id)) => Ok(id),
        Some(Value::Initializer(i)) => {
            let mut const_name = protos[i].name.clone();
            let mut n = 2;
            while graph.find(&const_name).is_some() {
                const_name = format!("{}~{n}", protos[i].name);
                n += 1;
            }
            let id = graph
                .add_constant(const_name, Arc::clone(&initializers[i]))
                .map_err(|e| ImportError::Model(e.to_string()))?;
            values.insert(name.to_string(), Value::Node(id));
            Ok(id)
        }
        None => Err(ImportError::Model(format!("value `{name}` is not defined"))),
    }
}
