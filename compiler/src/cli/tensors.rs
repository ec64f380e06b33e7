//! Every tensor a program computes: captured from the simulator as each
//! becomes final (the loadable's debug tensors), written as a dump
//! directory of `.npy` files with an index, and read back.
//!
//! A dump directory holds one `NAME.npy` per tensor, NAME being the ONNX
//! value's name with every character outside `[A-Za-z0-9._-]` replaced by
//! `_` (and `~2`, `~3`, ... appended when two names sanitize alike), and
//! `index.json`:
//!
//! ```json
//! {"tensors": [{"name": "/h.0/attn/Softmax_output_0", "file": "_h.0_attn_Softmax_output_0.npy",
//!               "node": "/h.0/attn/MatMul_1", "op": "attention", "onnx_nodes": ["..."],
//!               "dtype": "f32", "shape": [1, 2, 8, 8]}]}
//! ```
//!
//! listing the tensors in execution (graph) order. `tessera compare` reads
//! two such directories; a directory without `index.json` (another tool's
//! dump) is read as every `.npy` file in it, named by its file stem.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use tessera_compiler::tensor::{read_npy, write_npy, Tensor};
use tessera_isa::Loadable;

/// The index file of a dump directory.
pub const INDEX: &str = "index.json";

/// One tensor of a dump.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The ONNX value name (else the compiler's name).
    pub name: String,
    /// The Graph IR node (empty when unknown).
    pub node: String,
    /// Its op (empty when unknown).
    pub op: String,
    /// The ONNX nodes that computed it.
    pub onnx_nodes: Vec<String>,
    /// The value.
    pub tensor: Tensor,
}

/// The dump entries of a simulated run: every debug tensor with the ONNX
/// nodes of the range that wrote it.
pub fn entries(
    loadable: &Loadable,
    tensors: Vec<Tensor>,
    op_of: impl Fn(&str) -> String,
) -> Vec<Entry> {
    loadable
        .tensors
        .iter()
        .zip(tensors)
        .map(|(t, tensor)| {
            let node = t.desc().name;
            let onnx_nodes = loadable
                .source_map
                .iter()
                .find(|r| r.end == t.ready_pc)
                .map(|r| r.sources.clone())
                .unwrap_or_default();
            Entry {
                name: t.display_name().to_string(),
                op: op_of(&node),
                node,
                onnx_nodes,
                tensor,
            }
        })
        .collect()
}

/// `name` with every character outside `[A-Za-z0-9._-]` replaced by `_`.
pub fn sanitize(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    }
}

/// Writes a dump directory (created if needed).
pub fn write_dump(dir: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut used = HashSet::new();
    let mut index = Vec::new();
    for e in entries {
        let base = sanitize(&e.name);
        let mut file = format!("{base}.npy");
        let mut n = 2;
        while !used.insert(file.to_ascii_lowercase()) {
            file = format!("{base}~{n}.npy");
            n += 1;
        }
        write_npy(&e.tensor, &dir.join(&file))?;
        index.push(json!({
            "name": e.name,
            "file": file,
            "node": e.node,
            "op": e.op,
            "onnx_nodes": e.onnx_nodes,
            "dtype": e.tensor.dtype().name(),
            "shape": e.tensor.shape(),
        }));
    }
    let path = dir.join(INDEX);
    let text = serde_json::to_string_pretty(&json!({ "tensors": index }))?;
    std::fs::write(&path, text + "\n").with_context(|| path.display().to_string())?;
    Ok(())
}

/// Reads a dump directory: with `index.json`, its tensors in its order;
/// without, every `.npy` file sorted by name. Errors name the file.
pub fn read_dump(dir: &Path) -> anyhow::Result<Vec<Entry>> {
    let index_path = dir.join(INDEX);
    if index_path.is_file() {
        let text = std::fs::read_to_string(&index_path)
            .with_context(|| index_path.display().to_string())?;
        let index: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: not a tensor index: {e}", index_path.display()))?;
        let list = index
            .get("tensors")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{}: no `tensors` list", index_path.display()))?;
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let field = |key: &str| item.get(key).and_then(Value::as_str);
            let (Some(name), Some(file)) = (field("name"), field("file")) else {
                bail!(
                    "{}: entry {i} needs string fields `name` and `file`",
                    index_path.display()
                );
            };
            let path = safe_join(dir, file).ok_or_else(|| {
                anyhow!(
                    "{}: entry {i}: `{file}` is not a file name in the dump",
                    index_path.display()
                )
            })?;
            let onnx_nodes = item
                .get("onnx_nodes")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push(Entry {
                name: name.to_string(),
                node: field("node").unwrap_or_default().to_string(),
                op: field("op").unwrap_or_default().to_string(),
                onnx_nodes,
                tensor: read_npy(&path)?,
            });
        }
        return Ok(out);
    }
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let listing = std::fs::read_dir(dir).with_context(|| dir.display().to_string())?;
    for item in listing {
        let path = item.with_context(|| dir.display().to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("npy") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                files.insert(stem.to_string(), path.clone());
            }
        }
    }
    if files.is_empty() {
        bail!("{}: no {INDEX} and no .npy files", dir.display());
    }
    files
        .into_iter()
        .map(|(name, path)| {
            Ok(Entry {
                name,
                node: String::new(),
                op: String::new(),
                onnx_nodes: Vec::new(),
                tensor: read_npy(&path)?,
            })
        })
        .collect()
}

/// `dir/file` when `file` is a plain file name (no directories, no `..`).
fn safe_join(dir: &Path, file: &str) -> Option<PathBuf> {
    let plain = !file.is_empty() && !file.contains(['/', '\\']) && file != "." && file != "..";
    plain.then(|| dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sanitize_to_plain_file_names() {
        assert_eq!(
            sanitize("/h.0/attn/Softmax_output_0"),
            "_h.0_attn_Softmax_output_0"
        );
        assert_eq!(sanitize("onnx::MatMul_12"), "onnx__MatMul_12");
        assert_eq!(sanitize(".."), "_..");
        assert_eq!(sanitize(""), "_");
    }

    #[test]
    fn index_file_names_must_stay_in_the_dump() {
        let dir = Path::new("d");
        assert!(safe_join(dir, "x.npy").is_some());
        assert!(safe_join(dir, "../x.npy").is_none());
        assert!(safe_join(dir, "/etc/passwd").is_none());
        assert!(safe_join(dir, "..").is_none());
    }
}
