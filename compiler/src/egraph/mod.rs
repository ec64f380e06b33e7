//! The e-graph optimizer: finds attention blocks, GEMMs with bias and
//! activation, layer/RMS norms, softmaxes, SiLU/GELU and rotary
//! embeddings in whatever form an exporter wrote them, and rewrites the
//! graph into the NPU-native ops the cost model prefers.
//!
//! The pass ([`optimize`]):
//!
//! 1. splits the graph into segments at the residual stream and groups
//!    identical segments ([`segment`]);
//! 2. for each distinct segment, builds an e-graph of it ([`lang`],
//!    [`analysis`]), runs the rules ([`rules`]) under limits
//!    (iterations, e-nodes, time; the stop reason is reported) and a
//!    rewrite budget (`--egraph-rule-limit`), and extracts the cheapest
//!    program ([`extract`], costs from [`cost`]) as a [`template`];
//! 3. rebuilds the graph, stamping each segment's template out with that
//!    segment's own parameters and names; a segment in which no rule
//!    fired is copied unchanged;
//! 4. folds the constant subgraphs rewrites left behind (1/c, s · w, ...).
//!
//! Everything is deterministic (egg's `deterministic` feature, ordered
//! maps, extraction ties broken by class id), so dumps and loadables are
//! byte-identical run to run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use egg::{Id, Runner, SimpleScheduler, StopReason};
use tessera_isa::{MxuType, Target};

use crate::fold::fold;
use crate::graph::{Graph, GraphError, NodeId, Op, TensorType};

pub mod analysis;
pub mod cost;
pub mod extract;
pub mod lang;
mod report;
pub mod rules;
pub mod segment;
pub mod template;

pub use report::{EgraphReport, RunStats};

use analysis::{node_op, TensorAnalysis, EG};
use cost::CostModel;
use lang::{AttrLeaf, ENode};
use segment::Segment;
use template::Template;

/// Options of the e-graph pass.
#[derive(Clone, Debug)]
pub struct EgraphOptions {
    /// The target whose costs decide extraction.
    pub target: Target,
    /// The MXU input type of the compiled program.
    pub mxu: MxuType,
    /// At most this many rewrites fire in the whole pass
    /// (`--egraph-rule-limit`, to bisect a bad rewrite).
    pub rule_limit: Option<usize>,
    /// Runner limit: iterations per e-graph.
    pub iter_limit: usize,
    /// Runner limit: e-nodes per e-graph.
    pub node_limit: usize,
    /// Runner limit: time per e-graph. Off by default, because a limit in
    /// wall time makes the output depend on the machine's load; the
    /// iteration and e-node limits bound the work deterministically.
    pub time_limit: Duration,
    /// Optimize identical segments once (off: every segment gets its own
    /// e-graph; for measuring and testing the reuse).
    pub reuse: bool,
}

impl EgraphOptions {
    /// Defaults for a target: 30 iterations, 20 000 e-nodes, no time limit,
    /// no rule limit, reuse on. `TESSERA_EGRAPH_ITER_LIMIT`,
    /// `TESSERA_EGRAPH_NODE_LIMIT` and `TESSERA_EGRAPH_TIME_LIMIT` (seconds)
    /// override the limits.
    pub fn new(target: Target, mxu: MxuType) -> EgraphOptions {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        EgraphOptions {
            target,
            mxu,
            rule_limit: None,
            iter_limit: env("TESSERA_EGRAPH_ITER_LIMIT").map_or(30, |v| v as usize),
            node_limit: env("TESSERA_EGRAPH_NODE_LIMIT").map_or(20_000, |v| v as usize),
            time_limit: env("TESSERA_EGRAPH_TIME_LIMIT").map_or(Duration::MAX, Duration::from_secs),
            reuse: true,
        }
    }
}

/// Why the pass failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EgraphError {
    /// A rule is malformed (a compiler bug).
    #[error("internal: {0}")]
    Rules(String),
    /// The e-graph became inconsistent (a rule united values of different
    /// types): a compiler bug, reported with the segment and the last rule.
    #[error("internal: e-graph of the segment at `{segment}` is inconsistent after rule `{rule}`: {message}")]
    Inconsistent {
        /// First node of the segment.
        segment: String,
        /// The last rule that fired.
        rule: String,
        /// What is inconsistent.
        message: String,
    },
    /// Rebuilding the graph failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Folding the result failed.
    #[error("folding the optimized graph: {0}")]
    Fold(String),
}

/// The outcome of one e-graph run.
struct Run {
    template: Option<Template>,
    stats: RunStats,
    fired: BTreeMap<&'static str, usize>,
    last_fired: Option<&'static str>,
}

/// Runs the optimizer on a graph, replacing it with the optimized graph.
pub fn optimize(graph: &mut Graph, options: &EgraphOptions) -> Result<EgraphReport, EgraphError> {
    let start = Instant::now();
    let model = CostModel::new(options.target.clone(), options.mxu);
    let rewrites = rules::rewrites(|_| true).map_err(EgraphError::Rules)?;
    let cost_before = model.graph_cost(graph);
    let nodes_before = graph.node_count();
    let segments = segment::split(graph)?;
    let shared = segment::shared_constants(graph, &segments);
    // Group identical segments; the first of each group is optimized.
    let mut representative: HashMap<String, usize> = HashMap::new();
    let mut run_of_segment = Vec::with_capacity(segments.len());
    let mut runs: Vec<Run> = Vec::new();
    let mut budget = options.rule_limit;
    let egraph_start = Instant::now();
    for (i, seg) in segments.iter().enumerate() {
        let key = if options.reuse {
            segment::signature(graph, seg, &shared)
        } else {
            i.to_string()
        };
        if let Some(&r) = representative.get(&key) {
            run_of_segment.push(r);
            runs[r].stats.instances += 1;
            continue;
        }
        let run = run_segment(graph, seg, &shared, &rewrites, &model, options, &mut budget)?;
        representative.insert(key, runs.len());
        run_of_segment.push(runs.len());
        runs.push(run);
    }
    let egraph_time = egraph_start.elapsed();
    // Rebuild: inputs, then every segment's template instance.
    let mut out = Graph::new(graph.name.clone());
    let mut values: HashMap<NodeId, NodeId> = HashMap::new();
    for &input in graph.inputs() {
        let node = graph.node(input);
        values.insert(input, out.add_input(node.name.clone(), node.ty.clone())?);
    }
    let reserved: HashSet<String> = graph
        .node_ids()
        .into_iter()
        .map(|id| graph.node(id).name.clone())
        .collect();
    for (seg, &r) in segments.iter().zip(&run_of_segment) {
        match &runs[r].template {
            Some(t) => t.instantiate(graph, seg, &mut out, &mut values, &reserved)?,
            None => Template::identity(graph, seg).instantiate(
                graph,
                seg,
                &mut out,
                &mut values,
                &reserved,
            )?,
        }
    }
    for (name, id) in graph.outputs() {
        let placed = template::place_constant(graph, *id, &mut out, &mut values)?;
        out.add_output(name.clone(), placed);
    }
    let folded = fold(&mut out).map_err(|e| EgraphError::Fold(e.to_string()))?;
    *graph = out;
    let mut fired: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for run in &runs {
        for (rule, &n) in &run.fired {
            let entry = fired.entry(rule.to_string()).or_default();
            entry.0 += n;
            entry.1 += n * run.stats.instances;
        }
    }
    let last_rewrite = runs.iter().rev().find_map(|r| {
        r.last_fired
            .map(|rule| (rule.to_string(), r.stats.segment.clone()))
    });
    Ok(EgraphReport {
        target: options.target.name.clone(),
        mxu: options.mxu,
        segments: segments.len(),
        runs: runs.into_iter().map(|r| r.stats).collect(),
        fired,
        rule_limit: options.rule_limit,
        last_rewrite,
        cost_before,
        cost_after: model.graph_cost(graph),
        nodes_before,
        nodes_after: graph.node_count(),
        folded: folded.folded,
        egraph_time,
        time: start.elapsed(),
    })
}

/// Builds, runs and extracts the e-graph of one segment.
fn run_segment(
    graph: &Graph,
    seg: &Segment,
    shared: &HashSet<NodeId>,
    rewrites: &[egg::Rewrite<ENode, TensorAnalysis>],
    model: &CostModel,
    options: &EgraphOptions,
    budget: &mut Option<usize>,
) -> Result<Run, EgraphError> {
    let first = seg
        .nodes
        .first()
        .map(|&id| graph.node(id).name.clone())
        .unwrap_or_default();
    let params = segment::param_infos(graph, seg, shared);
    let mut egraph = EG::new(TensorAnalysis::new(params, *budget));
    let classes = add_segment(&mut egraph, graph, seg);
    egraph.rebuild();
    let runner = Runner::<ENode, TensorAnalysis, ()>::new(TensorAnalysis::default())
        .with_egraph(egraph)
        .with_iter_limit(options.iter_limit)
        .with_node_limit(options.node_limit)
        .with_time_limit(options.time_limit)
        .with_scheduler(SimpleScheduler)
        .run(rewrites);
    let stop = runner.stop_reason.clone();
    let iterations = runner.iterations.len();
    let egraph = runner.egraph;
    let analysis = &egraph.analysis;
    *budget = analysis.budget;
    if let Some(message) = analysis.conflicts.first() {
        return Err(EgraphError::Inconsistent {
            segment: first,
            rule: analysis.last_fired.unwrap_or("none").to_string(),
            message: message.clone(),
        });
    }
    let mut stats = RunStats {
        segment: first,
        nodes: seg.nodes.len(),
        instances: 1,
        iterations,
        egraph_nodes: egraph.total_number_of_nodes(),
        egraph_classes: egraph.number_of_classes(),
        stop: stop_text(stop.as_ref()),
        extracted: false,
    };
    let fired = analysis.fired.clone();
    let last_fired = analysis.last_fired;
    let mut template = None;
    if !fired.is_empty() {
        let roots: Vec<Id> = seg
            .outputs
            .iter()
            .map(|&i| egraph.find(classes[i]))
            .collect();
        let mut origin: BTreeMap<Id, usize> = BTreeMap::new();
        for (i, &c) in classes.iter().enumerate() {
            origin.entry(egraph.find(c)).or_insert(i);
        }
        let cost = |node: &ENode, class: Id| node_cost(&egraph, model, node, class);
        template = extract::extract(&egraph, &roots, cost)
            .and_then(|selection| Template::from_selection(&egraph, &selection, &roots, &origin));
        stats.extracted = template.is_some();
    }
    Ok(Run {
        template,
        stats,
        fired,
        last_fired,
    })
}

/// Adds a segment's operations to an e-graph; returns each node's class.
pub fn add_segment(egraph: &mut EG, graph: &Graph, seg: &Segment) -> Vec<Id> {
    let index: HashMap<NodeId, usize> = seg
        .nodes
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let param: HashMap<NodeId, u32> = seg
        .params
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let mut classes: Vec<Id> = Vec::with_capacity(seg.nodes.len());
    for &id in &seg.nodes {
        let node = graph.node(id);
        let operands: Vec<Id> = graph
            .operands(id)
            .iter()
            .map(|o| match index.get(o) {
                Some(&i) => classes[i],
                None => egraph.add(ENode::Param(param[o])),
            })
            .collect();
        classes.push(add_op(egraph, &node.op, &operands));
    }
    classes
}

/// Adds an op over operand classes (with its attribute leaf).
pub fn add_op(egraph: &mut EG, op: &Op, operands: &[Id]) -> Id {
    let attrs = (!op.attrs().is_empty()).then(|| egraph.add(ENode::Attrs(AttrLeaf::of(op))));
    egraph.add(ENode::op(op, attrs, operands))
}

/// The extraction cost of an e-node: free for leaves and constant
/// classes, the cost model's estimate otherwise.
pub fn node_cost(egraph: &EG, model: &CostModel, node: &ENode, class: Id) -> f64 {
    let Some(info) = egraph[class].data.tensor() else {
        return 0.0;
    };
    if info.constant {
        return 0.0;
    }
    let Some((op, operands)) = node_op(egraph, node) else {
        return 0.0;
    };
    let types: Option<Vec<&TensorType>> = operands
        .iter()
        .map(|&o| egraph[o].data.tensor().map(|t| &t.ty))
        .collect();
    match types {
        Some(types) => model.op_cost(&op, &types, &info.ty),
        None => cost::UNSUPPORTED,
    }
}

fn stop_text(stop: Option<&StopReason>) -> String {
    match stop {
        None => "none".into(),
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
        Some(StopReason::Other(why)) => format!("other: {why}"),
    }
}
