//! The conversion context handed to each op converter: typed access to the
//! ONNX node's attributes and operands, compile-time values of operands,
//! and helpers that add IR nodes named after the ONNX node.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use onnx_protobuf::{AttributeProto, NodeProto};

use crate::fold::FOLD_LIMIT;
use crate::graph::op::TOO_MANY_ELEMENTS;
use crate::graph::{Graph, GraphError, NodeId, Op, TensorType};
use crate::interp::eval_op;
use crate::tensor::{DType, Tensor, TensorError};

use super::ImportError;

/// Why a converter failed; the importer adds the node's name and op type.
#[derive(Debug)]
pub enum ConvertError {
    /// Bad attributes, types or shapes.
    Message(String),
    /// Operand `usize` must be known at compile time.
    NotConstant(usize),
    /// A size overflows.
    Overflow(String),
    /// A dtype Tessera does not support.
    UnsupportedDtype {
        /// What has it.
        what: String,
        /// ONNX type name.
        dtype: String,
    },
}

impl From<String> for ConvertError {
    fn from(message: String) -> Self {
        ConvertError::Message(message)
    }
}

impl From<&str> for ConvertError {
    fn from(message: &str) -> Self {
        ConvertError::Message(message.to_string())
    }
}

/// Result of a converter.
pub type ConvertResult<T> = Result<T, ConvertError>;

/// Compile-time values of IR nodes, computed on demand by evaluating their
/// constant subgraphs (memoized across the whole import).
#[derive(Default)]
pub struct ConstCache {
    memo: HashMap<NodeId, Option<Arc<Tensor>>>,
}

impl ConstCache {
    /// The value of `root` if it depends on constants only (and no result
    /// on the way is larger than the fold limit).
    fn value_of(&mut self, graph: &Graph, root: NodeId) -> Result<Option<Arc<Tensor>>, String> {
        let mut stack = vec![(root, false)];
        while let Some((id, operands_done)) = stack.pop() {
            if self.memo.contains_key(&id) {
                continue;
            }
            let node = graph.node(id);
            let known = match &node.op {
                Op::Constant(t) => Some(Some(Arc::clone(t))),
                Op::Input => Some(None),
                _ if node.ty.numel() > FOLD_LIMIT => Some(None),
                _ => None,
            };
            if let Some(value) = known {
                self.memo.insert(id, value);
                continue;
            }
            let operands = graph.operands(id);
            if !operands_done {
                stack.push((id, true));
                stack.extend(
                    operands
                        .into_iter()
                        .filter(|o| !self.memo.contains_key(o))
                        .map(|o| (o, false)),
                );
                continue;
            }
            let values: Option<Vec<Arc<Tensor>>> = operands
                .iter()
                .map(|o| self.memo.get(o).cloned().flatten())
                .collect();
            let value = match values {
                Some(values) => {
                    let refs: Vec<&Tensor> = values.iter().map(|v| v.as_ref()).collect();
                    let value = eval_op(&node.op, &refs, &node.ty)
                        .map_err(|m| format!("evaluating `{}` at compile time: {m}", node.name))?;
                    Some(Arc::new(value))
                }
                None => None,
            };
            self.memo.insert(id, value);
        }
        Ok(self.memo.get(&root).cloned().flatten())
    }
}

/// A graph input that `id` depends on, if any (breadth-first, nearest).
fn input_dependency(graph: &Graph, id: NodeId) -> Option<String> {
    let mut queue = VecDeque::from([id]);
    let mut seen = HashSet::from([id]);
    while let Some(n) = queue.pop_front() {
        if matches!(graph.node(n).op, Op::Input) {
            return Some(graph.node(n).name.clone());
        }
        for o in graph.operands(n) {
            if seen.insert(o) {
                queue.push_back(o);
            }
        }
    }
    None
}

/// The context of one ONNX node's conversion.
pub struct Ctx<'a> {
    graph: &'a mut Graph,
    cache: &'a mut ConstCache,
    node: &'a NodeProto,
    name: &'a str,
    inputs: Vec<Option<NodeId>>,
    /// The model's default-domain opset.
    pub opset: i64,
    base_dir: Option<&'a Path>,
    created: Vec<NodeId>,
    /// Keep the part name on the node of output 0 (set by converters whose
    /// outputs are all parts, like Split).
    pub keep_part_names: bool,
    /// The node's part in a mixture-of-experts loop made static
    /// (`expert_loop.rs`), if any.
    pub expert: Option<super::ExpertRole>,
}

impl<'a> Ctx<'a> {
    /// A context for `node`, whose IR name is `name`.
    pub fn new(
        graph: &'a mut Graph,
        cache: &'a mut ConstCache,
        node: &'a NodeProto,
        name: &'a str,
        inputs: Vec<Option<NodeId>>,
        opset: i64,
        base_dir: Option<&'a Path>,
    ) -> Ctx<'a> {
        Ctx {
            graph,
            cache,
            node,
            name,
            inputs,
            opset,
            base_dir,
            created: Vec::new(),
            keep_part_names: false,
            expert: None,
        }
    }

    /// Adds the node's name and op type to a converter error.
    pub fn import_error(&self, error: ConvertError) -> ImportError {
        let node = self.name.to_string();
        let op_type = self.node.op_type.clone();
        match error {
            ConvertError::Message(message) => ImportError::Node {
                node,
                op_type,
                message,
            },
            ConvertError::Overflow(message) => ImportError::Overflow {
                node,
                op_type,
                message,
            },
            ConvertError::UnsupportedDtype { what, dtype } => ImportError::UnsupportedDtype {
                what: format!("node `{node}` ({op_type}): {what}"),
                dtype,
            },
            ConvertError::NotConstant(i) => ImportError::NotConstant {
                value: self.node.input.get(i).cloned().unwrap_or_default(),
                input: self
                    .inputs
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|id| input_dependency(self.graph, id)),
                node,
                op_type,
            },
        }
    }

    /// Names the node of output 0 after the ONNX node, when this
    /// conversion created it.
    pub fn finish(&mut self, outputs: &[Option<NodeId>]) -> ConvertResult<()> {
        if self.keep_part_names {
            return Ok(());
        }
        if let Some(Some(id)) = outputs.first() {
            if self.created.contains(id) && self.graph.find(self.name).is_none() {
                self.graph
                    .rename(*id, self.name)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// The nodes this conversion created so far.
    pub fn created(&self) -> &[NodeId] {
        &self.created
    }

    /// The ONNX op type.
    pub fn op_type(&self) -> &str {
        &self.node.op_type
    }

    /// The name of ONNX output `i`, if the node has it and it is not empty.
    pub fn output_name(&self, i: usize) -> Option<&'a str> {
        self.node
            .output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The number of ONNX outputs (including empty optional ones).
    pub fn output_count(&self) -> usize {
        self.node.output.len()
    }

    /// The number of ONNX inputs (including empty optional ones).
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// Operand `i` (required).
    pub fn input(&self, i: usize) -> ConvertResult<NodeId> {
        self.opt_input(i)
            .ok_or_else(|| ConvertError::Message(format!("input {i} is required")))
    }

    /// Operand `i`, if present and non-empty.
    pub fn opt_input(&self, i: usize) -> Option<NodeId> {
        self.inputs.get(i).copied().flatten()
    }

    /// The type of an IR node.
    pub fn ty(&self, id: NodeId) -> TensorType {
        self.graph.node(id).ty.clone()
    }

    /// The type of operand `i`.
    pub fn input_ty(&self, i: usize) -> ConvertResult<TensorType> {
        Ok(self.ty(self.input(i)?))
    }

    /// The compile-time value of an IR node, if it has one.
    pub fn node_value(&mut self, id: NodeId) -> ConvertResult<Option<Arc<Tensor>>> {
        Ok(self.cache.value_of(self.graph, id)?)
    }

    /// The compile-time value of operand `i` (required).
    pub fn value(&mut self, i: usize) -> ConvertResult<Arc<Tensor>> {
        self.opt_value(i)?.ok_or(ConvertError::NotConstant(i))
    }

    /// The compile-time value of operand `i`, or `None` if the operand is
    /// absent; an error if it is present but not computable.
    pub fn opt_value(&mut self, i: usize) -> ConvertResult<Option<Arc<Tensor>>> {
        match self.opt_input(i) {
            None => Ok(None),
            Some(id) => match self.node_value(id)? {
                Some(v) => Ok(Some(v)),
                None => Err(ConvertError::NotConstant(i)),
            },
        }
    }

    /// Operand `i` as compile-time integers (`None` if absent).
    pub fn opt_ints_input(&mut self, i: usize) -> ConvertResult<Option<Vec<i64>>> {
        match self.opt_value(i)? {
            None => Ok(None),
            Some(v) if v.dtype().is_int() => Ok(Some(v.to_i64_vec())),
            Some(v) => {
                Err(format!("input {i} must be an integer tensor, not {}", v.dtype()).into())
            }
        }
    }

    /// An attribute by name.
    pub fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn typed_attr(
        &self,
        name: &str,
        code: i32,
        kind: &str,
    ) -> ConvertResult<Option<&'a AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.type_.value() == code || a.type_.value() == 0 => Ok(Some(a)),
            Some(_) => Err(format!("attribute `{name}` must be {kind}").into()),
        }
    }

    /// An int attribute.
    pub fn attr_int(&self, name: &str) -> ConvertResult<Option<i64>> {
        Ok(self.typed_attr(name, 2, "an int")?.map(|a| a.i))
    }

    /// A float attribute.
    pub fn attr_float(&self, name: &str) -> ConvertResult<Option<f32>> {
        Ok(self.typed_attr(name, 1, "a float")?.map(|a| a.f))
    }

    /// An ints attribute.
    pub fn attr_ints(&self, name: &str) -> ConvertResult<Option<Vec<i64>>> {
        Ok(self
            .typed_attr(name, 7, "a list of ints")?
            .map(|a| a.ints.clone()))
    }

    /// A floats attribute.
    pub fn attr_floats(&self, name: &str) -> ConvertResult<Option<Vec<f32>>> {
        Ok(self
            .typed_attr(name, 6, "a list of floats")?
            .map(|a| a.floats.clone()))
    }

    /// A string attribute.
    pub fn attr_string(&self, name: &str) -> ConvertResult<Option<String>> {
        Ok(self
            .typed_attr(name, 3, "a string")?
            .map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    /// A tensor attribute, converted.
    pub fn attr_tensor(&self, name: &str) -> ConvertResult<Option<Tensor>> {
        let Some(a) = self.typed_attr(name, 4, "a tensor")? else {
            return Ok(None);
        };
        let proto =
            a.t.as_ref()
                .ok_or_else(|| format!("attribute `{name}` has no tensor"))?;
        Tensor::from_proto(proto, self.base_dir)
            .map(Some)
            .map_err(|e| match e {
                TensorError::UnsupportedDtype { dtype, .. } => ConvertError::UnsupportedDtype {
                    what: format!("attribute `{name}`"),
                    dtype,
                },
                other => ConvertError::Message(other.to_string()),
            })
    }

    /// Resolves a possibly negative axis against a rank.
    pub fn axis(&self, axis: i64, rank: usize) -> ConvertResult<usize> {
        let resolved = if axis < 0 { axis + rank as i64 } else { axis };
        if resolved < 0 || resolved >= rank as i64 {
            return Err(format!("axis {axis} is out of range for rank {rank}").into());
        }
        Ok(resolved as usize)
    }

    fn part_name(&self, part: &str) -> String {
        let base = format!("{}.{part}", self.name);
        let mut name = base.clone();
        let mut n = 2;
        while self.graph.find(&name).is_some() {
            name = format!("{base}~{n}");
            n += 1;
        }
        name
    }

    /// Adds an IR node named `{onnx_name}.{part}`; its type is inferred.
    pub fn add(&mut self, part: &str, op: Op, operands: &[NodeId]) -> ConvertResult<NodeId> {
        let name = self.part_name(part);
        let id = self
            .graph
            .add_node(name, op, operands)
            .map_err(|e| match e {
                GraphError::Type { message, .. } if message.contains(TOO_MANY_ELEMENTS) => {
                    ConvertError::Overflow(message)
                }
                GraphError::Type { message, .. } => ConvertError::Message(message),
                other => ConvertError::Message(other.to_string()),
            })?;
        self.created.push(id);
        Ok(id)
    }

    /// Adds a constant named `{onnx_name}.{part}`.
    pub fn constant(&mut self, part: &str, value: Tensor) -> ConvertResult<NodeId> {
        let name = self.part_name(part);
        let id = self
            .graph
            .add_constant(name, Arc::new(value))
            .map_err(|e| e.to_string())?;
        self.created.push(id);
        Ok(id)
    }

    /// A scalar constant of `dtype` holding `value`.
    pub fn scalar(&mut self, part: &str, dtype: DType, value: f64) -> ConvertResult<NodeId> {
        let tensor = if dtype.is_float() {
            Tensor::from_f32_as(dtype, vec![], vec![value as f32])
        } else if dtype.is_int() {
            Tensor::from_i64_as(dtype, vec![], vec![value as i64])
        } else {
            Tensor::new(vec![], crate::tensor::TensorData::Bool(vec![value != 0.0]))
        }
        .ok_or("cannot build a scalar")?;
        self.constant(part, tensor)
    }

    /// Reshapes `x` to `shape` (no node when the shape is unchanged).
    pub fn reshape(&mut self, part: &str, x: NodeId, shape: Vec<usize>) -> ConvertResult<NodeId> {
        if self.graph.node(x).ty.shape == shape {
            return Ok(x);
        }
        self.add(part, Op::Reshape { shape }, &[x])
    }

    /// Sums `x` over `axes`.
    pub fn sum(
        &mut self,
        part: &str,
        x: NodeId,
        axes: Vec<usize>,
        keep_dims: bool,
    ) -> ConvertResult<NodeId> {
        let op = Op::Reduce {
            kind: crate::graph::ReduceKind::Sum,
            axes,
            keep_dims,
        };
        self.add(part, op, &[x])
    }
}

/// Converts ONNX dims (from a shape tensor) to sizes, rejecting negative
/// ones and overflowing products.
pub fn static_shape(dims: &[i64]) -> ConvertResult<Vec<usize>> {
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        shape.push(
            usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative dimension"))?,
        );
    }
    check_size(&shape)?;
    Ok(shape)
}

/// The element count of a constant the importer builds from a shape
/// (positions, window counts, masks, unit scales), refused past
/// [`FOLD_LIMIT`] elements like every value computed at compile time: a
/// declared shape alone must not make the compiler allocate past what the
/// model's bytes justify.
pub fn built_constant(what: &str, shape: &[usize]) -> ConvertResult<usize> {
    crate::tensor::checked_numel(shape)
        .filter(|&n| n <= FOLD_LIMIT)
        .ok_or_else(|| {
            format!("{what}: a compile-time constant of shape {shape:?} is over the limit of {FOLD_LIMIT} elements").into()
        })
}

/// Fails with [`ConvertError::Overflow`] if a shape's byte size (at 8 bytes
/// per element) does not fit in memory addressing.
pub fn check_size(shape: &[usize]) -> ConvertResult<()> {
    let fits = crate::tensor::checked_numel(shape)
        .and_then(|n| n.checked_mul(8))
        .is_some_and(|b| b <= isize::MAX as usize);
    if fits {
        Ok(())
    } else {
        Err(ConvertError::Overflow(format!(
            "shape {shape:?} {TOO_MANY_ELEMENTS}"
        )))
    }
}
