//! Rule validation: every rule, on small graphs matching its left-hand side
//! (random shapes and values satisfying its conditions), must fire, and
//! the interpreter must find both sides of every application equal on
//! random inputs. Then the whole optimizer runs on the same graph and must
//! not change its outputs. Plus one-line "this rewrites to that" tests.

use std::collections::HashMap;
use std::sync::Arc;

use egg::{Id, Language, RecExpr, Runner, SimpleScheduler};
use tessera_isa::{MxuType, Target};

use crate::egraph::analysis::{Application, ParamInfo, TensorAnalysis, EG};
use crate::egraph::cost::CostModel;
use crate::egraph::lang::{to_sexp, ENode};
use crate::egraph::{add_segment, extract, node_cost, optimize, segment, EgraphOptions};
use crate::graph::{Graph, NodeId, Op, TensorType, UnaryOp};
use crate::interp::run;
use crate::tensor::{DType, Tensor};

use super::{all_rules, rewrites};

mod cases;

use cases::{case, Builder, Rng};

/// Random inputs for a graph's inputs (f32 in [-2, 2), bools), keyed so
/// that the same parameter gets the same value in every graph.
fn inputs(types: &[TensorType], seed: u64) -> Vec<Tensor> {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let mut rng = Rng((seed + 1).wrapping_mul(0x9e37_79b9) ^ (i as u64 + 7) << 32);
            let n = ty.numel();
            match ty.dtype {
                DType::Bool => Tensor::new(
                    ty.shape.clone(),
                    crate::tensor::TensorData::Bool((0..n).map(|_| rng.next() % 2 == 0).collect()),
                )
                .expect("bool tensor"),
                _ => Tensor::from_f32(&ty.shape, rng.floats(n, -2.0, 2.0)),
            }
        })
        .collect()
}

/// The graph of one side of an application: parameters become inputs
/// (`$k` → input `p{k}`) or their constant values.
fn side_graph(expr: &RecExpr<ENode>, params: &[(ParamInfo, Option<Arc<Tensor>>)]) -> Graph {
    let mut g = Graph::new("side");
    let mut ids: Vec<Option<NodeId>> = vec![None; expr.as_ref().len()];
    let mut inputs: Vec<(usize, NodeId)> = Vec::new();
    // Inputs first, in parameter order, so positions are comparable.
    let mut used: Vec<usize> = expr
        .as_ref()
        .iter()
        .filter_map(|n| match n {
            ENode::Param(k) => Some(*k as usize),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    for &k in &used {
        let (info, value) = &params[k];
        let id = match value {
            Some(t) => g.add_constant(format!("p{k}"), Arc::clone(t)),
            None => g.add_input(format!("p{k}"), info.ty.clone()),
        }
        .expect("param");
        inputs.push((k, id));
    }
    for (i, node) in expr.as_ref().iter().enumerate() {
        let id = match node {
            ENode::Param(k) => inputs
                .iter()
                .find(|(p, _)| p == &(*k as usize))
                .map(|p| p.1),
            ENode::Literal(bits) => Some(
                g.add_constant(
                    format!("l{i}"),
                    Arc::new(Tensor::from_f32(&[], vec![f32::from_bits(*bits)])),
                )
                .expect("literal"),
            ),
            ENode::Attrs(_) => None,
            ENode::Op(kind, children) => {
                let (attrs, operands) = match children.first().map(|&c| &expr[c]) {
                    Some(ENode::Attrs(leaf)) => (leaf.list().to_vec(), &children[1..]),
                    _ => (vec![], &children[..]),
                };
                let op = Op::from_parts(kind, &attrs).expect("op");
                let operands: Vec<NodeId> = operands
                    .iter()
                    .map(|&c| ids[usize::from(c)].expect("operand"))
                    .collect();
                Some(
                    g.add_node(format!("v{i}"), op, &operands)
                        .unwrap_or_else(|e| panic!("{e}: {}", to_sexp(expr))),
                )
            }
        };
        ids[i] = id;
    }
    let root = ids.last().copied().flatten().expect("root");
    g.add_output("out", root);
    g
}

/// Interprets a graph on inputs chosen by parameter name (`p{k}`) or by
/// input node id.
fn eval(g: &Graph, values: &HashMap<String, Tensor>) -> Tensor {
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&id| values[&g.node(id).name].clone())
        .collect();
    run(g, &inputs)
        .unwrap_or_else(|e| panic!("interpreting: {e}"))
        .remove(0)
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let (x, y) = (a.to_f32_vec(), b.to_f32_vec());
    let scale = x
        .iter()
        .fold(1f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = p == q || (p - q).abs() <= 2e-5 * scale + 1e-5 * p.abs().max(q.abs());
        assert!(ok, "{what}: element {i}: {p} vs {q}");
    }
}

/// Runs one rule on a case graph, validates every application, then runs
/// the whole optimizer on it.
fn validate(rule: &'static str, seed: u64) -> Vec<Application> {
    let mut b = Builder::new(seed);
    let out = case(rule, &mut b);
    let graph = b.finish(out);
    crate::graph::verify::verify(&graph).expect("case graph verifies");
    // One segment of everything, every constant visible.
    let nodes: Vec<NodeId> = graph
        .canonical_order()
        .expect("acyclic")
        .into_iter()
        .filter(|&id| !matches!(graph.node(id).op, Op::Input | Op::Constant(_)))
        .collect();
    let mut params = Vec::new();
    for &id in &nodes {
        for o in graph.operands(id) {
            if !nodes.contains(&o) && !params.contains(&o) {
                params.push(o);
            }
        }
    }
    let root_index = nodes.iter().position(|&n| n == out).expect("root");
    let seg = segment::Segment {
        nodes,
        params,
        outputs: vec![root_index],
    };
    let infos: Vec<(ParamInfo, Option<Arc<Tensor>>)> = seg
        .params
        .iter()
        .map(|&p| {
            let node = graph.node(p);
            let value = match &node.op {
                Op::Constant(t) => Some(Arc::clone(t)),
                _ => None,
            };
            (
                ParamInfo {
                    ty: node.ty.clone(),
                    constant: value.is_some(),
                    value: value.clone(),
                },
                value,
            )
        })
        .collect();
    let mut analysis = TensorAnalysis::new(infos.iter().map(|(i, _)| i.clone()).collect(), None);
    analysis.record_applications = true;
    let mut egraph = EG::new(analysis);
    add_segment(&mut egraph, &graph, &seg);
    egraph.rebuild();
    let only = rewrites(|r| r.name == rule).expect("patterns parse");
    let runner = Runner::<ENode, TensorAnalysis, ()>::new(TensorAnalysis::default())
        .with_egraph(egraph)
        .with_iter_limit(8)
        .with_scheduler(SimpleScheduler)
        .run(&only);
    let analysis = &runner.egraph.analysis;
    assert!(
        analysis.conflicts.is_empty(),
        "{rule}: {:?}",
        analysis.conflicts
    );
    let applications = analysis.applications.clone();
    assert!(
        !applications.is_empty(),
        "{rule} (seed {seed}) did not fire"
    );
    // Both sides of every application compute the same values.
    let mut values: HashMap<String, Tensor> = HashMap::new();
    let param_types: Vec<TensorType> = infos.iter().map(|(i, _)| i.ty.clone()).collect();
    for (k, t) in inputs(&param_types, seed).into_iter().enumerate() {
        values.insert(format!("p{k}"), t);
    }
    for app in &applications {
        let lhs = side_graph(&app.lhs, &infos);
        let rhs = side_graph(&app.rhs, &infos);
        let what = format!(
            "{rule} (seed {seed}): {} => {}",
            to_sexp(&app.lhs),
            to_sexp(&app.rhs)
        );
        assert_close(&eval(&lhs, &values), &eval(&rhs, &values), &what);
    }
    // And the whole optimizer leaves the case's value unchanged.
    let mut optimized = graph.clone();
    let options = EgraphOptions::new(Target::base(), MxuType::Bf16);
    optimize(&mut optimized, &options).unwrap_or_else(|e| panic!("{rule}: {e}"));
    crate::graph::verify::verify(&optimized).expect("optimized graph verifies");
    let types: Vec<TensorType> = graph
        .inputs()
        .iter()
        .map(|&i| graph.node(i).ty.clone())
        .collect();
    let given = inputs(&types, seed);
    let by_name = |g: &Graph| -> HashMap<String, Tensor> {
        g.inputs()
            .iter()
            .zip(&given)
            .map(|(&id, t)| (g.node(id).name.clone(), t.clone()))
            .collect()
    };
    assert_close(
        &eval(&graph, &by_name(&graph)),
        &eval(&optimized, &by_name(&optimized)),
        &format!("{rule} (seed {seed}): whole optimizer"),
    );
    applications
}

#[test]
fn every_rule_is_sound_on_random_inputs() {
    for (_, rule) in all_rules() {
        for seed in 1..=4 {
            validate(rule.name, seed);
        }
    }
}

#[test]
fn rule_names_are_unique_kebab_case_and_patterns_parse() {
    let rules = all_rules();
    let mut names: Vec<&str> = rules.iter().map(|(_, r)| r.name).collect();
    for name in &names {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate rule names");
    assert_eq!(rewrites(|_| true).expect("parse").len(), n);
}

/// Runs every rule on `input` (parameters of the given types) and returns
/// the cheapest term, as an s-expression.
fn optimized(types: &[TensorType], input: &str) -> String {
    let expr: RecExpr<ENode> = input.parse().expect("input parses");
    let params = types
        .iter()
        .map(|ty| ParamInfo {
            ty: ty.clone(),
            constant: false,
            value: None,
        })
        .collect();
    let mut egraph = EG::new(TensorAnalysis::new(params, None));
    let root = egraph.add_expr(&expr);
    egraph.rebuild();
    let runner = Runner::<ENode, TensorAnalysis, ()>::new(TensorAnalysis::default())
        .with_egraph(egraph)
        .with_iter_limit(20)
        .with_scheduler(SimpleScheduler)
        .run(&rewrites(|_| true).expect("parse"));
    let egraph = runner.egraph;
    assert!(
        egraph.analysis.conflicts.is_empty(),
        "{:?}",
        egraph.analysis.conflicts
    );
    let model = CostModel::new(Target::base(), MxuType::Bf16);
    let root = egraph.find(root);
    let selection = extract::extract(&egraph, &[root], |n, c| node_cost(&egraph, &model, n, c))
        .expect("extracts");
    let mut out = RecExpr::default();
    fn build(
        class: Id,
        selection: &extract::Selection,
        out: &mut RecExpr<ENode>,
        memo: &mut HashMap<Id, Id>,
    ) -> Id {
        if let Some(&id) = memo.get(&class) {
            return id;
        }
        let node = selection.choice[&class]
            .clone()
            .map_children(|c| build(c, selection, out, memo));
        let id = out.add(node);
        memo.insert(class, id);
        id
    }
    build(root, &selection, &mut out, &mut HashMap::new());
    to_sexp(&out)
}

fn f32s(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

#[test]
fn silu_from_x_times_sigmoid() {
    let t = [f32s(&[4, 8])];
    assert_eq!(optimized(&t, "(mul $0 (sigmoid $0))"), "(silu $0)");
    assert_eq!(optimized(&t, "(mul (sigmoid $0) $0)"), "(silu $0)");
}

#[test]
fn transposes_compose_and_cancel() {
    let t = [f32s(&[2, 3, 4])];
    assert_eq!(
        optimized(
            &t,
            "(transpose {perm=[1,0,2]} (transpose {perm=[1,0,2]} $0))"
        ),
        "$0"
    );
    assert_eq!(
        optimized(
            &t,
            "(transpose {perm=[0,2,1]} (transpose {perm=[1,0,2]} $0))"
        ),
        "(transpose {perm=[1,2,0]} $0)"
    );
}

#[test]
fn erf_gelu_lifts_whichever_factor_comes_first() {
    let t = [f32s(&[4, 8])];
    let gelu = "(gelu {approximate=none} $0)";
    assert_eq!(
        optimized(&t, "(mul (mul $0 (add (erf (div $0 1.4142135)) 1.0)) 0.5)"),
        gelu
    );
    assert_eq!(
        optimized(&t, "(mul $0 (mul 0.5 (add (erf (div $0 1.4142135)) 1.0)))"),
        gelu
    );
    assert_eq!(
        optimized(&t, "(mul (mul 0.5 $0) (add 1.0 (erf (mul $0 0.70710677))))"),
        gelu
    );
}

#[test]
fn bias_and_activation_fold_into_the_gemm() {
    let t = [f32s(&[8, 32]), f32s(&[32, 64]), f32s(&[64])];
    assert_eq!(
        optimized(&t, "(relu (add (matmul $0 $1) $2))"),
        "(gemm {trans_b=false,act=relu} $0 $1 $2)"
    );
}

#[test]
fn scaled_attention_fuses_with_a_canonical_key_split() {
    // q: [1, 2, 8, 16]; k from [1, 8, 2, 16] transposed straight to kᵀ.
    let t = [
        f32s(&[1, 2, 8, 16]),
        f32s(&[1, 8, 2, 16]),
        f32s(&[1, 2, 8, 16]),
    ];
    assert_eq!(
        optimized(
            &t,
            "(matmul (softmax {axis=3} (div (matmul $0 (transpose {perm=[0,2,3,1]} $1)) 4.0)) $2)"
        ),
        "(attention {scale=0.25,causal=false} $0 (transpose {perm=[0,2,1,3]} $1) $2)"
    );
}

#[test]
fn rms_norm_lifts_from_the_llama_decomposition() {
    let t = [f32s(&[1, 8, 64])];
    assert_eq!(
        optimized(
            &t,
            "(mul $0 (div 1.0 (sqrt (add (reduce_mean {axes=[2],keep_dims=true} (pow $0 2.0)) 1e-6))))"
        ),
        "(rms_norm {axis=2,epsilon=1e-6} $0 (expand {shape=[64]} 1.0))"
    );
}

#[test]
fn a_rule_that_unites_different_types_is_reported() {
    // Unite a [4, 8] class with a [8, 4] one behind the rules' back: the
    // analysis must notice.
    let params = vec![
        ParamInfo {
            ty: f32s(&[4, 8]),
            constant: false,
            value: None,
        },
        ParamInfo {
            ty: f32s(&[8, 4]),
            constant: false,
            value: None,
        },
    ];
    let mut egraph = EG::new(TensorAnalysis::new(params, None));
    let (a, b) = (egraph.add(ENode::Param(0)), egraph.add(ENode::Param(1)));
    egraph.union(a, b);
    egraph.rebuild();
    assert_eq!(
        egraph.analysis.conflicts,
        vec!["merged classes of types f32[4, 8] and f32[8, 4]".to_string()]
    );
}

#[test]
fn the_rule_budget_stops_rewriting() {
    let mut b = Builder::new(3);
    let out = case("gelu-erf", &mut b);
    let graph = b.finish(out);
    for limit in [0, 1, 2] {
        let mut g = graph.clone();
        let mut options = EgraphOptions::new(Target::base(), MxuType::Bf16);
        options.rule_limit = Some(limit);
        let report = optimize(&mut g, &options).expect("optimizes");
        assert!(report.rewrites() <= limit, "{limit}: {}", report.rewrites());
        if limit == 0 {
            assert!(g == graph, "no rewrite: the graph is unchanged");
        }
    }
    let gelu_unary = Op::Unary(UnaryOp::Erf);
    assert!(graph
        .node_ids()
        .iter()
        .any(|&id| graph.node(id).op == gelu_unary));
}
