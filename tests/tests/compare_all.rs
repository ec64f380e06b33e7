//! `check --compare-all` names the kernel that went wrong: one kernel of a
//! model is broken on purpose (its Kernel IR changed before codegen, a
//! test-only edit no user can make), and the per-tensor comparison must
//! report that kernel's output as the first failure, with everything
//! before it still matching.

use tessera_compiler::codegen::generate;
use tessera_compiler::driver::package;
use tessera_compiler::kernel::{Stmt, VpuOp, VpuStmt};
use tessera_compiler::lower::lower;
use tessera_compiler::precision::Precision;
use tessera_isa::{BinFunc, Target};
use tessera_tests::models::{layer_report, prepare, simulate};

/// Adds 1 to the scalar of the first `vpu.adds` in `body` (a layer norm's
/// epsilon); false if there is none.
fn break_first_add_scalar(body: &mut [Stmt]) -> bool {
    body.iter_mut().any(|stmt| match stmt {
        Stmt::Vpu(VpuStmt {
            op:
                VpuOp::BinS {
                    func: BinFunc::Add,
                    scalar,
                    ..
                },
            ..
        }) => {
            *scalar += 1.0;
            true
        }
        Stmt::For { body, .. } | Stmt::If { body, .. } => break_first_add_scalar(body),
        _ => false,
    })
}

#[test]
fn a_broken_kernel_is_the_first_failing_tensor() {
    let target = Target::tiny();
    let precision = Precision::Fp32;
    let p = prepare("gpt2_ts", &target, precision);
    let broken_node = "/m/transformer/h.1/ln_1/LayerNormalization";
    let mut lowered = lower(&p.graph, &target, precision).expect("lower");
    let kernel = lowered
        .program
        .kernels
        .iter_mut()
        .find(|k| k.node == broken_node)
        .expect("the layer norm's kernel");
    assert!(
        break_first_add_scalar(&mut kernel.body),
        "no vpu.adds to break"
    );
    let code = generate(&lowered.program, &target).expect("codegen");
    let compiled = package(&p.graph, &target, lowered, code, Some(&p.provenance));
    let run = simulate(&p, &compiled.loadable).expect("simulate");
    let report = layer_report(&p, &compiled.loadable, &run.tensors, precision);
    let (index, first) = report.first_failure().expect("a failure");
    assert_eq!(first.kernel, broken_node, "{}", report.table());
    assert_eq!(
        first.value,
        "/m/transformer/h.1/ln_1/LayerNormalization_output_0"
    );
    assert_eq!(
        first.sources,
        vec![(broken_node.to_string(), "LayerNormalization".to_string())]
    );
    assert!(index > 0, "earlier tensors exist");
    assert!(report.rows[..index].iter().all(|r| r.pass));
    let table = report.table();
    assert!(
        table.contains(
            "first failing tensor: #12 `/m/transformer/h.1/ln_1/LayerNormalization_output_0`"
        ),
        "{table}"
    );
    assert!(
        table
            .lines()
            .filter(|l| l.contains("<<< first failure"))
            .count()
            == 1
    );
}

#[test]
fn the_unbroken_program_has_no_failing_tensor() {
    let target = Target::tiny();
    let p = prepare("gpt2_ts", &target, Precision::Fp32);
    let lowered = lower(&p.graph, &target, Precision::Fp32).expect("lower");
    let code = generate(&lowered.program, &target).expect("codegen");
    let compiled = package(&p.graph, &target, lowered, code, Some(&p.provenance));
    let run = simulate(&p, &compiled.loadable).expect("simulate");
    let report = layer_report(&p, &compiled.loadable, &run.tensors, Precision::Fp32);
    assert_eq!(report.first_failure(), None, "{}", report.table());
    assert_eq!(report.rows.len(), 21);
}
