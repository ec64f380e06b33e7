//! The same-precision reference of `tessera check`: the interpreter
//! computing what a program compiled at a given precision computes, and the
//! report that judges a reduced-precision program against it.
//!
//! A bf16 program differs from onnxruntime's fp32 outputs by what the
//! number format costs plus whatever the compiler got wrong. The reference
//! (`interp::EvalOptions`: MXU operands rounded where the program rounds
//! them, the target's attention kernels and vector arithmetic, everything
//! else f32) separates the two: the program must match it tightly
//! ([`Tolerance::SAME_PRECISION`]); the distance to the expected outputs is
//! reported, and when it exceeds the usual bf16 tolerance a note says that
//! the format, not the compiler, costs this much.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use tessera_compiler::compare::{check_outputs, OutputCheck, Tolerance};
use tessera_compiler::graph::Graph;
use tessera_compiler::interp::{bind_inputs, evaluate_with, EvalOptions, Keep};
use tessera_compiler::tensor::Tensor;
use tessera_compiler::widen::widen_half;

use tessera_compiler::precision::Precision;
use tessera_isa::Target;

use super::super::compile::CompileOptions;
use super::super::output::outln;

/// Named tensors.
pub type Named = Vec<(String, Tensor)>;

/// The interpreter's options for the program compiled with `options` for
/// `target`.
pub fn eval_options(options: &CompileOptions, target: &Target) -> EvalOptions {
    EvalOptions {
        mxu: options.precision.mxu(),
        target: Some(target.clone()),
    }
}

/// Interprets `graph` on the test inputs. With `program` (the
/// [`eval_options`] of a compiled program), as that program computes: the graph the back end compiles
/// (fp16/bf16 models widened to f32 between their edges), rounding where
/// that program rounds (its precision's MXU operands, its target's
/// attention kernels and vector arithmetic). Without, the graph as it is,
/// in exact f32 (ONNX semantics).
pub fn interpret(
    graph: &Graph,
    inputs: &[(String, Tensor)],
    program: Option<&EvalOptions>,
    model: &Path,
    data: &Path,
) -> anyhow::Result<Named> {
    let (widened, options) = match program {
        Some(program) => (
            widen_half(graph).map_err(|e| anyhow!("internal: widening to f32: {e}"))?,
            program,
        ),
        None => (None, &EvalOptions::FP32),
    };
    let graph = widened.as_ref().unwrap_or(graph);
    let bound = bind_inputs(graph, inputs).with_context(|| data.display().to_string())?;
    let evaluation = evaluate_with(graph, &bound, Keep::Outputs, options)
        .with_context(|| model.display().to_string())?;
    Ok(evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), Tensor::clone(t)))
        .collect())
}

/// Why a check failed, for the one-line error.
pub fn out_of_tolerance(check: &OutputCheck, tolerance: Tolerance) -> String {
    let m = &check.comparison.metrics;
    match tolerance {
        _ if m.special_mismatches > 0 => format!("{} NaN/inf values differ", m.special_mismatches),
        Tolerance::Scaled { .. } => match tolerance.allowed_abs(m) {
            Some(allowed) => format!("max_abs {:.3e} > {allowed:.3e}", m.max_abs),
            None => format!("{} elements differ", check.comparison.mismatches),
        },
        Tolerance::Elementwise { .. } => {
            format!("{} elements differ", check.comparison.mismatches)
        }
        Tolerance::Cosine { min, max_rel_l2 } if m.cosine >= min && m.rel_l2 <= max_rel_l2 => {
            format!(
                "{} elements of an integer output differ",
                check.comparison.mismatches
            )
        }
        Tolerance::Cosine { min, max_rel_l2 } => format!(
            "cosine {:.6}, relative L2 error {:.3e} (need >= {min} and <= {max_rel_l2})",
            m.cosine, m.rel_l2
        ),
    }
}

/// `name vs WHAT: shape [..] max_abs ..` — an output's report line with
/// what it was compared with, and its verdict replaced by `verdict`.
fn labelled(check: &OutputCheck, what: &str, verdict: &str) -> String {
    let line = check.line();
    let body = line
        .strip_prefix(check.name.as_str())
        .unwrap_or(&line)
        .trim_start_matches(':');
    let body = body
        .strip_suffix(" PASS")
        .or_else(|| body.strip_suffix(" FAIL"))
        .unwrap_or(body);
    format!("{} vs {what}:{body} {verdict}", check.name)
}

/// Judges an 8-bit program's outputs (`--precision int8|fp8-*`): passes
/// when every output is within the precision's documented threshold
/// ([`Tolerance::for_precision`]) of the `expected` outputs (onnxruntime's,
/// of the fp32 model); prints cosine and SQNR per output.
pub fn judge_8bit(
    actual: &[(String, Tensor)],
    expected: &[(String, Tensor)],
    precision: Precision,
) -> anyhow::Result<ExitCode> {
    let name = precision.name();
    let actual: Vec<(String, &Tensor)> = actual.iter().map(|(n, t)| (n.clone(), t)).collect();
    let tolerance = Tolerance::for_precision(precision);
    let checks = check_outputs(&actual, expected, tolerance).map_err(|m| anyhow!(m))?;
    for c in &checks {
        let verdict = if c.comparison.pass { "PASS" } else { "FAIL" };
        outln!("{}", labelled(c, "expected", verdict))?;
    }
    let failed = checks.iter().filter(|c| !c.comparison.pass).count();
    outln!(
        "{} of {} outputs within the {name} threshold ({tolerance})",
        checks.len() - failed,
        checks.len()
    )?;
    if let Some(first) = checks.iter().find(|c| !c.comparison.pass) {
        bail!(
            "output `{}` is outside the {name} threshold: {} (`--keep-high NODE` keeps a \
             layer in bf16; `check --compare-all` finds the layer that loses it)",
            first.name,
            out_of_tolerance(first, tolerance)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Judges a reduced-precision program's outputs: passes when every output
/// matches the same-precision `reference` within
/// [`Tolerance::SAME_PRECISION`]; prints, per output, the distance to the
/// reference and to the `expected` outputs, and a note for each output
/// whose distance to the expected outputs exceeds the usual tolerance of
/// `precision`.
pub fn judge(
    actual: &[(String, Tensor)],
    reference: &[(String, Tensor)],
    expected: &[(String, Tensor)],
    precision: Precision,
) -> anyhow::Result<ExitCode> {
    let name = precision.name();
    let actual: Vec<(String, &Tensor)> = actual.iter().map(|(n, t)| (n.clone(), t)).collect();
    let tight = Tolerance::SAME_PRECISION;
    let to_reference = check_outputs(&actual, reference, tight)
        .map_err(|m| anyhow!("the {name} reference: {m}"))?;
    let usual = Tolerance::for_model(true, expected);
    let to_expected = check_outputs(&actual, expected, usual).map_err(|m| anyhow!(m))?;
    let mut costly = Vec::new();
    for r in &to_reference {
        let verdict = if r.comparison.pass { "PASS" } else { "FAIL" };
        outln!("{}", labelled(r, &format!("{name} reference"), verdict))?;
        // Both checks name the program's outputs.
        let Some(e) = to_expected.iter().find(|e| e.name == r.name) else {
            continue;
        };
        let verdict = if e.comparison.pass {
            format!("(within {usual})")
        } else {
            costly.push(e);
            format!("(outside {usual})")
        };
        outln!("{}", labelled(e, "expected", &verdict))?;
    }
    let failed = to_reference.iter().filter(|c| !c.comparison.pass).count();
    outln!(
        "{} of {} outputs within tolerance of the {name} reference ({tight})",
        to_reference.len() - failed,
        to_reference.len()
    )?;
    if let Some(first) = to_reference.iter().find(|c| !c.comparison.pass) {
        bail!(
            "output `{}` is out of tolerance: {} against the {name} reference",
            first.name,
            out_of_tolerance(first, tight)
        );
    }
    for e in costly {
        outln!(
            "note: `{}` matches the {name} reference but not the expected outputs: \
             this is what {name} MXU operands cost on this model, not a compiler error \
             (`check --interpret --precision {name}` shows the reference alone)",
            e.name
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
