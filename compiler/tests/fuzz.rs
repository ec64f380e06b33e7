//! Mutated model files: the importer (and the passes, when import succeeds)
//! returns Ok or Err, never panics.

use proptest::prelude::*;
use tessera_compiler::frontend::{import_bytes, ImportOptions};
use tessera_compiler::passes::run_graph_passes;

fn model_bytes(relative: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `original` with each `(offset, byte)` edit applied (offsets wrapped to
/// the length), then cut to `cut` bytes (wrapped too) if given.
fn mutated(original: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for &(at, value) in edits {
        let at = at % bytes.len();
        bytes[at] = value;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

fn import_mutated(original: &[u8], edits: &[(usize, u8)], cut: Option<usize>) {
    let bytes = mutated(original, edits, cut);
    let mut options = ImportOptions::default();
    options.dims.insert("seq".into(), 3);
    if let Ok(mut graph) = import_bytes(&bytes, None, &options) {
        let _ = run_graph_passes(&mut graph, |_, _, _| {});
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_small_models_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let file = ["models/fixtures/constant_forms/model.onnx", "models/fixtures/shape_chain/model.onnx", "models/fixtures/opset13_split_squeeze/model.onnx"][which];
        import_mutated(&model_bytes(file), &edits, cut);
    }

    #[test]
    fn mutated_transformer_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        import_mutated(&model_bytes("models/attention_block/model.onnx"), &edits, None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The expert-loop analysis (a traced MoE loop made static) and the
    /// model signature `generate` reads see mutated graphs too.
    #[test]
    fn mutated_expert_loop_and_cache_models_never_panic(
        which in 0usize..2,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let file = ["models/mixtral_moe/model.onnx", "models/llama_kv/model.onnx"][which];
        let bytes = mutated(&model_bytes(file), &edits, None);
        if let Ok(model) = <onnx_protobuf::ModelProto as onnx_protobuf::Message>::parse_from_bytes(&bytes) {
            let _ = tessera_compiler::frontend::signature(&model);
        }
        let dims = if which == 1 { &[("seq", 1), ("past", 3)][..] } else { &[][..] };
        let options = ImportOptions {
            dims: dims.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            ..ImportOptions::default()
        };
        let _ = import_bytes(&bytes, None, &options);
    }
}
