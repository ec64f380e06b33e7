//! The frontend fixtures in `models/fixtures/`: each runnable fixture
//! matches onnxruntime's outputs, plus what each one is about (typed-field
//! initializers, external data, Constant forms, shape chains, opset forms,
//! Softmax before opset 13).

mod common;

use std::path::PathBuf;

use tessera_compiler::frontend::{import_file, ImportError, ImportOptions};
use tessera_compiler::graph::Op;
use tessera_compiler::tensor::DType;

fn fixture(name: &str) -> PathBuf {
    common::repo().join("models/fixtures").join(name)
}

fn ops_of(graph: &tessera_compiler::graph::Graph) -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = graph
        .node_ids()
        .into_iter()
        .map(|id| graph.node(id).op.mnemonic())
        .filter(|m| !matches!(*m, "input" | "const"))
        .collect();
    ops.sort_unstable();
    ops
}

#[test]
fn every_runnable_fixture_matches_onnxruntime() {
    let dirs = common::fixture_dirs();
    assert!(dirs.len() >= 9, "fixtures missing: {dirs:?}");
    for dir in dirs {
        let graph = common::import_and_fold(&dir);
        let (checks, _) = common::check_on_test_data(&graph, &dir);
        for c in checks {
            assert!(c.comparison.pass, "{}: {}", dir.display(), c.line());
        }
    }
}

#[test]
fn typed_field_initializers_include_float16_bit_patterns() {
    let graph = common::import_and_fold(&fixture("initializer_typed_fields"));
    // Cast<float>(h16) of a constant is folded; the f16 source is gone.
    assert!(graph
        .node_ids()
        .into_iter()
        .all(|id| graph.node(id).ty.dtype != DType::F16));
    assert_eq!(ops_of(&graph), vec!["add", "add", "matmul", "reshape"]);
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = fixture("external_data");
    let graph = common::import_and_fold(&dir);
    let w = graph.find("W").expect("initializer W");
    match &graph.node(w).op {
        Op::Constant(t) => assert_eq!(t.shape(), &[4, 8]),
        other => panic!("{other:?}"),
    }
    // A copy of the model without its weights file fails, naming the file.
    let tmp = std::env::temp_dir().join(format!("tessera-extdata-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    std::fs::copy(dir.join("model.onnx"), tmp.join("model.onnx")).expect("copy");
    let err = import_file(&tmp.join("model.onnx"), &ImportOptions::default())
        .expect_err("no weights.bin");
    assert!(err.to_string().contains("weights.bin"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}

/// External data that a symbolic link leads out of the model's directory
/// (the file itself, or a linked directory on the way) is refused, not
/// read; so is a location that is not a regular file.
#[cfg(unix)]
#[test]
fn external_data_cannot_escape_the_model_directory_through_links() {
    use std::os::unix::fs::symlink;
    let dir = fixture("external_data");
    let root = std::env::temp_dir().join(format!("tessera-extlink-{}", std::process::id()));
    let (model_dir, outside) = (root.join("model"), root.join("outside"));
    std::fs::create_dir_all(&model_dir).expect("model dir");
    std::fs::create_dir_all(&outside).expect("outside dir");
    std::fs::copy(dir.join("weights.bin"), outside.join("weights.bin")).expect("copy");
    std::fs::copy(dir.join("model.onnx"), model_dir.join("model.onnx")).expect("copy");
    let import = || import_file(&model_dir.join("model.onnx"), &ImportOptions::default());
    // The weights file is a link to a file outside.
    symlink(outside.join("weights.bin"), model_dir.join("weights.bin")).expect("link");
    let err = import().expect_err("link out of the directory");
    assert!(
        err.to_string().contains("outside the model's directory"),
        "{err}"
    );
    // A link inside the directory is fine.
    std::fs::remove_file(model_dir.join("weights.bin")).expect("unlink");
    std::fs::copy(dir.join("weights.bin"), model_dir.join("real.bin")).expect("copy");
    symlink(model_dir.join("real.bin"), model_dir.join("weights.bin")).expect("link");
    import().expect("a link inside the model's directory");
    // Not a regular file: a directory named like the weights.
    std::fs::remove_file(model_dir.join("weights.bin")).expect("unlink");
    std::fs::create_dir(model_dir.join("weights.bin")).expect("dir");
    let err = import().expect_err("a directory");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn constant_forms_produce_int_and_float_outputs() {
    let dir = fixture("constant_forms");
    let graph = common::import_and_fold(&dir);
    let (checks, outputs) = common::check_on_test_data(&graph, &dir);
    assert!(checks.iter().all(|c| c.comparison.pass));
    let by_name = |n: &str| {
        outputs
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, t)| t.clone())
            .expect(n)
    };
    assert_eq!(by_name("c_ints").to_i64_vec(), vec![3, 2]);
    assert_eq!(by_name("c_int").to_i64_vec(), vec![3]);
    assert_eq!(by_name("c_int").shape(), &[] as &[usize]);
}

#[test]
fn shape_chain_folds_to_one_reshape_and_needs_its_dim() {
    let dir = fixture("shape_chain");
    let graph = common::import_and_fold(&dir);
    assert_eq!(ops_of(&graph), vec!["matmul", "reshape"]);
    let err =
        import_file(&dir.join("model.onnx"), &ImportOptions::default()).expect_err("seq unbound");
    assert!(
        matches!(&err, ImportError::UnboundDim { dim, input } if dim == "seq" && input == "x"),
        "{err}"
    );
}

#[test]
fn opset_11_attribute_forms_and_opset_13_input_forms() {
    for name in [
        "opset11_style",
        "opset13_split_squeeze",
        "opset17_reduce_attr",
        "opset18_reduce_inputs",
    ] {
        let dir = fixture(name);
        let graph = common::import_and_fold(&dir);
        let (checks, _) = common::check_on_test_data(&graph, &dir);
        assert!(checks.iter().all(|c| c.comparison.pass), "{name}");
        // Squeeze/Unsqueeze/Split became reshapes and slices.
        assert!(
            ops_of(&graph).iter().all(|op| !op.contains("squeeze")),
            "{name}"
        );
    }
}

#[test]
fn softmax_before_opset_13_normalizes_the_coerced_rows() {
    let dir = fixture("softmax_opset11");
    let graph = common::import_and_fold(&dir);
    let (checks, outputs) = common::check_on_test_data(&graph, &dir);
    assert!(checks.iter().all(|c| c.comparison.pass));
    let y = outputs
        .iter()
        .find(|(n, _)| n == "y_axis1")
        .expect("y_axis1")
        .1
        .to_f32_vec();
    // Each batch's 3x4 = 12 elements sum to 1.
    for batch in y.chunks(12) {
        assert!((batch.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
