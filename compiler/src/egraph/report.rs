//! What the e-graph pass did, for `tessera compile --report`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use tessera_isa::MxuType;

/// One e-graph run (one distinct segment).
#[derive(Clone, Debug, PartialEq)]
pub struct RunStats {
    /// The segment's first node.
    pub segment: String,
    /// Operations in the segment.
    pub nodes: usize,
    /// Segments with this structure (the run's result is used for all).
    pub instances: usize,
    /// Iterations run.
    pub iterations: usize,
    /// E-nodes at the end.
    pub egraph_nodes: usize,
    /// E-classes at the end.
    pub egraph_classes: usize,
    /// Why the runner stopped.
    pub stop: String,
    /// Whether a rewritten program was extracted (else the segment was
    /// kept as it was: no rule fired).
    pub extracted: bool,
}

/// The report of the e-graph pass.
#[derive(Clone, Debug)]
pub struct EgraphReport {
    /// Target name.
    pub target: String,
    /// MXU input type the costs assume.
    pub mxu: MxuType,
    /// Segments the graph was split into.
    pub segments: usize,
    /// One entry per e-graph run.
    pub runs: Vec<RunStats>,
    /// Per rule: (fires in the e-graph runs, fires counting every segment
    /// the result was replayed on).
    pub fired: BTreeMap<String, (usize, usize)>,
    /// `--egraph-rule-limit`.
    pub rule_limit: Option<usize>,
    /// The last rewrite that fired: (rule, segment).
    pub last_rewrite: Option<(String, String)>,
    /// Estimated cycles before.
    pub cost_before: f64,
    /// Estimated cycles after.
    pub cost_after: f64,
    /// Graph nodes before.
    pub nodes_before: usize,
    /// Graph nodes after.
    pub nodes_after: usize,
    /// Constant subgraphs folded after extraction.
    pub folded: usize,
    /// Time in the e-graph runs (build, saturate, extract).
    pub egraph_time: Duration,
    /// Time of the whole pass.
    pub time: Duration,
}

impl EgraphReport {
    /// Rewrites that fired in the e-graph runs.
    pub fn rewrites(&self) -> usize {
        self.fired.values().map(|(raw, _)| raw).sum()
    }

    /// The report as text; `with_time: false` leaves out the wall-clock
    /// times (for snapshots).
    pub fn render(&self, with_time: bool) -> String {
        let mut out = String::new();
        let precision = match self.mxu {
            MxuType::F32 => "fp32",
            other => other.name(),
        };
        let _ = writeln!(out, "e-graph: target {}, MXU {precision}", self.target);
        let reused: usize = self.runs.iter().map(|r| r.instances - 1).sum();
        let _ = writeln!(
            out,
            "  segments: {} ({} e-graph runs, {reused} reused)",
            self.segments,
            self.runs.len()
        );
        let change = if self.cost_before > 0.0 {
            100.0 * (self.cost_after - self.cost_before) / self.cost_before
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "  cost: {:.0} -> {:.0} cycles ({change:+.1}%)",
            self.cost_before, self.cost_after
        );
        let _ = writeln!(
            out,
            "  nodes: {} -> {} ({} constants folded)",
            self.nodes_before, self.nodes_after, self.folded
        );
        let largest = self.runs.iter().max_by_key(|r| r.egraph_nodes);
        if let Some(r) = largest {
            let _ = writeln!(
                out,
                "  largest e-graph: {} e-nodes, {} e-classes (segment at `{}`, {} nodes)",
                r.egraph_nodes, r.egraph_classes, r.segment, r.nodes
            );
        }
        let mut stops: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.runs {
            *stops.entry(r.stop.as_str()).or_default() += 1;
        }
        let stops: Vec<String> = stops.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        let _ = writeln!(out, "  stop reasons: {}", stops.join(", "));
        match (self.rule_limit, &self.last_rewrite) {
            (Some(limit), Some((rule, segment))) => {
                let _ = writeln!(
                    out,
                    "  rule limit: {limit} ({} fired; last: `{rule}` in the segment at `{segment}`)",
                    self.rewrites()
                );
            }
            (Some(limit), None) => {
                let _ = writeln!(out, "  rule limit: {limit} (none fired)");
            }
            _ => {}
        }
        let _ = writeln!(out, "  rules fired (in e-graph runs / counting reuse):");
        let width = self.fired.keys().map(String::len).max().unwrap_or(0);
        for (rule, (raw, total)) in &self.fired {
            let _ = writeln!(out, "    {rule:<width$}  {raw:>4}  {total:>5}");
        }
        let _ = writeln!(out, "  runs:");
        for r in &self.runs {
            let _ = writeln!(
                out,
                "    `{}`: {} nodes x{}, {} iterations, {} e-nodes, {}{}",
                r.segment,
                r.nodes,
                r.instances,
                r.iterations,
                r.egraph_nodes,
                r.stop,
                if r.extracted { "" } else { ", kept" }
            );
        }
        if with_time {
            let _ = writeln!(
                out,
                "  time: {:.1} ms ({:.1} ms in e-graph runs)",
                self.time.as_secs_f64() * 1e3,
                self.egraph_time.as_secs_f64() * 1e3
            );
        }
        out
    }
}
