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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use onnx_protobuf::{Message as _, ModelProto, NodeProto, ValueInfoProto};

use crate::graph::{Graph, NodeId, TensorType};
use crate::provenance::{OnnxNode, Origins};
use crate::tensor::{DType, Tensor, TensorError};

mod ctx;
pub mod ops;
#[cfg(test)]
pub(crate) mod testutil;

pub use ctx::ConvertError;
use ctx::{ConstCache, Ctx};

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

/// An import failure. Every variant names the file, node, input or value.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (the path is not repeated in the message:
    /// callers prefix it, as they do for every other error).
    #[error("cannot read: {message}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        message: String,
    },
    /// Not a protobuf `ModelProto` (or truncated).
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    /// The model is structurally unusable (no graph, no opset, ...).
    #[error("{0}")]
    Model(String),
    /// Ops without a registry entry (all of them).
    #[error("{} unsupported op{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list_ops(.0))]
    UnsupportedOps(Vec<(String, String)>),
    /// A tensor, input or output has a dtype Tessera does not support.
    #[error("{what}: unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// What has it (`input `x``, `initializer `w``, ...).
        what: String,
        /// ONNX name of the type.
        dtype: String,
    },
    /// A symbolic dimension without a value.
    #[error("input `{input}`: symbolic dimension `{dim}` is not bound (use --dim {dim}=N)")]
    UnboundDim {
        /// Dimension name.
        dim: String,
        /// Graph input it belongs to.
        input: String,
    },
    /// A node reads a value nothing defines.
    #[error("node `{node}`: input `{value}` is not defined (not a graph input, initializer or node output)")]
    UndefinedValue {
        /// Node name.
        node: String,
        /// Value name.
        value: String,
    },
    /// A graph output nothing defines.
    #[error("graph output `{0}` is not defined by any node, input or initializer")]
    UndefinedOutput(String),
    /// The nodes do not form a DAG.
    #[error("graph has a cycle through {}", list_names(.0))]
    Cycle(Vec<String>),
    /// A node's operand must be known at compile time but is not.
    #[error(
        "node `{node}` ({op_type}): input `{value}` must be known at compile time{}",
        .input.as_ref().map(|i| format!(" but depends on graph input `{i}`")).unwrap_or_default()
    )]
    NotConstant {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// The operand's value name.
        value: String,
        /// A graph input it depends on, if any.
        input: Option<String>,
    },
    /// A size computation overflows.
    #[error("node `{node}` ({op_type}): {message}")]
    Overflow {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Which size.
        message: String,
    },
    /// A node cannot be converted (bad attributes, types, shapes).
    #[error("node `{node}` ({op_type}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What is wrong.
        message: String,
    },
    /// An initializer or constant tensor is malformed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

fn list_ops(ops: &[(String, String)]) -> String {
    ops.iter()
        .map(|(node, op)| format!("`{node}` ({op})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_names(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
    let more = if names.len() > 8 {
        format!(" and {} more", names.len() - 8)
    } else {
        String::new()
    };
    format!(
        "node{} {}{more}",
        if names.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
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
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let model =
        ModelProto::parse_from_bytes(&bytes).map_err(|e| ImportError::Parse(e.to_string()))?;
    import_model_traced(&model, path.parent(), options)
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
        let mut ctx = Ctx::new(&mut graph, &mut cache, node, name, inputs, opset, base_dir);
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

/// The IR name of each ONNX node: its name, else its first output's name,
/// else `{op_type}_{index}`; made unique.
fn node_names(nodes: &[NodeProto]) -> Vec<String> {
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

fn check_declared_dtype(info: &ValueInfoProto) -> Result<(), ImportError> {
    if let Some(tp) = info.type_.as_ref() {
        if tp.has_tensor_type() {
            let code = tp.tensor_type().elem_type;
            if code != 0 {
                DType::from_onnx(code).map_err(|dtype| ImportError::UnsupportedDtype {
                    what: format!("output `{}`", info.name),
                    dtype,
                })?;
            }
        } else {
            return Err(ImportError::UnsupportedDtype {
                what: format!("output `{}`", info.name),
                dtype: "non-tensor type".into(),
            });
        }
    }
    Ok(())
}

/// The static type of a graph input, binding symbolic dimensions.
fn input_type(
    input: &ValueInfoProto,
    dims: &BTreeMap<String, usize>,
) -> Result<TensorType, ImportError> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    let name = &input.name;
    let tp = input
        .type_
        .as_ref()
        .ok_or_else(|| ImportError::Model(format!("input `{name}` has no type")))?;
    if !tp.has_tensor_type() {
        return Err(ImportError::UnsupportedDtype {
            what: format!("input `{name}`"),
            dtype: "non-tensor type (sequence, map or optional)".into(),
        });
    }
    let tensor = tp.tensor_type();
    let dtype =
        DType::from_onnx(tensor.elem_type).map_err(|dtype| ImportError::UnsupportedDtype {
            what: format!("input `{name}`"),
            dtype,
        })?;
    let shape_proto = tensor
        .shape
        .as_ref()
        .ok_or_else(|| ImportError::Model(format!("input `{name}` has no shape (unknown rank)")))?;
    let mut shape = Vec::with_capacity(shape_proto.dim.len());
    for (i, dim) in shape_proto.dim.iter().enumerate() {
        let size = match &dim.value {
            Some(Dim::DimValue(v)) => usize::try_from(*v)
                .map_err(|_| ImportError::Model(format!("input `{name}`: dimension {i} is {v}")))?,
            Some(Dim::DimParam(param)) => {
                *dims.get(param).ok_or_else(|| ImportError::UnboundDim {
                    dim: param.clone(),
                    input: name.clone(),
                })?
            }
            _ => {
                return Err(ImportError::UnboundDim {
                    dim: format!("#{i} (unnamed)"),
                    input: name.clone(),
                })
            }
        };
        shape.push(size);
    }
    let ty = TensorType::new(dtype, shape);
    if ty
        .checked_numel()
        .and_then(|n| n.checked_mul(dtype.size()))
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(ImportError::Model(format!(
            "input `{name}`: shape {:?} has too many elements",
            ty.shape
        )));
    }
    Ok(ty)
}

/// Kahn's algorithm over value names, stable in file order. Reports the
/// first undefined value, or the nodes left on a cycle.
fn topological_order(
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
