//! `tessera compare A_DIR B_DIR`: compare two tensor dumps (from `run
//! --dump-tensors`, `check --dump-tensors`, or any directory of `.npy`
//! files named by value) with the metrics of `check --compare-all`.
//!
//! Tensors are matched by name (the index's `name`, else the file stem);
//! `B` is the reference (`expected`). Tensors in only one dump are listed,
//! not compared. Exit 0 when every matched tensor is within tolerance, 1
//! otherwise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use tessera_compiler::compare::{compare, Metrics, Tolerance};
use tessera_compiler::layerwise::push_csv;

use super::output::outln;
use super::tensors::read_dump;

/// How matched tensors must agree.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareTolerance {
    /// `max_abs <= 1e-4 · max(1, max|expected|)` (fp32 programs).
    Fp32,
    /// cosine ≥ 0.999 and relative L2 ≤ 0.05 (bf16 programs, half types).
    Bf16,
    /// Bit for bit.
    Exact,
}

/// Arguments of `tessera compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The dump to check.
    actual: PathBuf,
    /// The reference dump.
    expected: PathBuf,
    /// The tolerance matched tensors must meet.
    #[arg(long, value_enum, default_value_t = CompareTolerance::Fp32)]
    tolerance: CompareTolerance,
    /// Also write every row to FILE as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

/// A tolerance that only exact equality meets.
const EXACT: Tolerance = Tolerance::Elementwise {
    rtol: 0.0,
    atol: 0.0,
};

pub fn compare_dumps(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let actual = read_dump(&args.actual)?;
    let expected = read_dump(&args.expected)?;
    let tolerance = match args.tolerance {
        CompareTolerance::Fp32 => Tolerance::MODEL_FP32,
        CompareTolerance::Bf16 => Tolerance::MODEL_BF16,
        CompareTolerance::Exact => EXACT,
    };
    let reference: HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut csv = String::from("index,value,dtype,shape,cosine,sqnr_db,max_abs,rel_l2,status\n");
    outln!(
        "{:>4}  {:<6} {:>10} {:>8} {:>10} {:>10}  {:<18} value",
        "#",
        "status",
        "cosine",
        "SQNR dB",
        "max_abs",
        "rel_l2",
        "type"
    )?;
    let (mut compared, mut failed, mut first_failure) = (0, 0, None);
    for (i, a) in actual.iter().enumerate() {
        let ty = format!("{}{:?}", a.tensor.dtype().name(), a.tensor.shape());
        let Some(&j) = reference.get(a.name.as_str()) else {
            outln!(
                "{:>4}  {:<6} {:>52}  {:<18} {}",
                i + 1,
                "only A",
                "",
                ty,
                a.name
            )?;
            push_csv(&mut csv, &row(i, &a.name, &ty, None, "only_a"));
            continue;
        };
        let e = &expected[j].tensor;
        let result = compare(&a.tensor, e, tolerance);
        compared += 1;
        let (status, metrics, note) = match &result {
            Ok(c) if c.pass => ("ok", Some(c.metrics), String::new()),
            Ok(c) => ("FAIL", Some(c.metrics), String::new()),
            Err(m) => ("FAIL", None, format!("  ({m})")),
        };
        if status == "FAIL" {
            failed += 1;
            first_failure.get_or_insert_with(|| a.name.clone());
        }
        let cells = match &metrics {
            Some(m) => format!(
                "{:>10} {:>8} {:>10} {:>10}",
                format!("{:.6}", m.cosine),
                db(m.sqnr_db),
                format!("{:.3e}", m.max_abs),
                format!("{:.3e}", m.rel_l2)
            ),
            None => format!("{:>10} {:>8} {:>10} {:>10}", "-", "-", "-", "-"),
        };
        outln!(
            "{:>4}  {status:<6} {cells}  {ty:<18} {}{note}",
            i + 1,
            a.name
        )?;
        let csv_status = if status == "ok" { "pass" } else { "fail" };
        push_csv(&mut csv, &row(i, &a.name, &ty, metrics, csv_status));
    }
    let in_a: HashMap<&str, ()> = actual.iter().map(|a| (a.name.as_str(), ())).collect();
    let only_b: Vec<&str> = expected
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !in_a.contains_key(n))
        .collect();
    for name in &only_b {
        outln!("      only B: {name}")?;
        push_csv(&mut csv, &row(usize::MAX, name, "", None, "only_b"));
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, csv).with_context(|| path.display().to_string())?;
    }
    outln!(
        "{} of {compared} matched tensors within tolerance ({tolerance}); {} only in {}, {} only in {}",
        compared - failed,
        actual.len() - compared,
        args.actual.display(),
        only_b.len(),
        args.expected.display()
    )?;
    if compared == 0 {
        bail!(
            "no tensor of {} has a namesake in {}",
            args.actual.display(),
            args.expected.display()
        );
    }
    if let Some(name) = first_failure {
        bail!("tensor `{name}` is out of tolerance ({failed} of {compared} differ)");
    }
    Ok(ExitCode::SUCCESS)
}

/// One CSV record.
fn row(i: usize, name: &str, ty: &str, m: Option<Metrics>, status: &str) -> Vec<String> {
    let (dtype, shape) = match ty.split_once('[') {
        Some((d, s)) => (d.to_string(), s.trim_end_matches(']').replace(", ", "x")),
        None => (String::new(), String::new()),
    };
    let index = if i == usize::MAX {
        String::new()
    } else {
        (i + 1).to_string()
    };
    let metrics = match m {
        Some(m) => [m.cosine, m.sqnr_db, m.max_abs, m.rel_l2].map(|x| x.to_string()),
        None => Default::default(),
    };
    let mut v = vec![index, name.to_string(), dtype, shape];
    v.extend(metrics);
    v.push(status.to_string());
    v
}

/// SQNR for the table: `inf` when exact.
fn db(x: f64) -> String {
    if x == f64::INFINITY {
        "inf".into()
    } else {
        format!("{x:.1}")
    }
}
