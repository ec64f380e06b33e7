//! The program disassembler: a loadable back to assembly that assembles to
//! the same bytes.

use super::*;

/// Options for `disassemble`.
#[derive(Debug, Clone, Copy)]
pub struct DisasmOptions {
    /// Print segment contents (needed to re-assemble an identical loadable).
    pub data: bool,
    /// Append `; pc` comments to instructions.
    pub pc_comments: bool,
}

impl Default for DisasmOptions {
    fn default() -> Self {
        DisasmOptions {
            data: true,
            pc_comments: true,
        }
    }
}

/// Disassembles a loadable into source that `assemble` turns back into the
/// identical loadable (with `data: true`). Branch targets become `L<pc>`
/// labels.
pub fn disassemble(
    loadable: &Loadable,
    options: DisasmOptions,
) -> Result<String, crate::instr::DecodeError> {
    let code = loadable.instructions()?;
    let mut out = String::new();
    let target = loadable.target();
    let _ = writeln!(
        out,
        "; Tessera NPU ISA v{} program: {} instructions, {} segments",
        loadable.isa_version,
        code.len(),
        loadable.segments.len()
    );
    write_target(&mut out, &target);
    for (kind, list) in [(".input", &loadable.inputs), (".output", &loadable.outputs)] {
        for t in list {
            let _ = writeln!(out, "{kind} {}", tensor_text(t));
        }
    }
    for node in &loadable.onnx_nodes {
        let _ = writeln!(out, ".onnx {} {}", quote(&node.name), node.op_type);
    }
    for t in &loadable.tensors {
        let _ = write!(
            out,
            ".tensor {} ready={}",
            tensor_text(&t.desc()),
            t.ready_pc
        );
        if !t.value.is_empty() {
            let _ = write!(out, " value {}", quote(&t.value));
        }
        out.push('\n');
    }
    for seg in &loadable.segments {
        let _ = writeln!(out, ".segment {} @ {:#x}", quote(&seg.name), seg.dram_addr);
        if options.data {
            for chunk in seg.data.chunks(32) {
                out.push_str(".bytes ");
                for (i, b) in chunk.iter().enumerate() {
                    if i > 0 && i % 4 == 0 {
                        out.push(' ');
                    }
                    let _ = write!(out, "{b:02x}");
                }
                out.push('\n');
            }
        } else {
            let _ = writeln!(out, "; {} bytes of data omitted", seg.data.len());
        }
    }
    let mut targets: Vec<u32> = code
        .iter()
        .enumerate()
        .filter_map(|(pc, i)| i.branch_target(pc as u32))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut map = loadable.source_map.iter().peekable();
    let mut open_end: Option<u32> = None;
    for (pc, instr) in code.iter().enumerate() {
        let pc = pc as u32;
        if open_end == Some(pc) {
            open_end = None;
            if map.peek().is_none_or(|r| r.start != pc) {
                out.push_str(".loc\n");
            }
        }
        if let Some(r) = map.next_if(|r| r.start == pc) {
            let _ = write!(out, ".loc {}", quote(&r.node));
            if r.macs > 0 {
                let _ = write!(out, " macs={}", r.macs);
            }
            if r.roofline_cycles > 0 {
                let _ = write!(out, " roofline={}", r.roofline_cycles);
            }
            if !r.sources.is_empty() {
                out.push_str(" from");
                for source in &r.sources {
                    let _ = write!(out, " {}", quote(source));
                }
            }
            out.push('\n');
            open_end = Some(r.end);
        }
        if targets.binary_search(&pc).is_ok() {
            let _ = writeln!(out, "L{pc}:");
        }
        let text = instr.to_asm_at(pc);
        if options.pc_comments {
            let _ = writeln!(out, "    {text:<56} ; {pc}");
        } else {
            let _ = writeln!(out, "    {text}");
        }
    }
    Ok(out)
}

/// `"name" DTYPE [dims] @ ADDR`, as `.input`, `.output` and `.tensor` write it.
fn tensor_text(t: &TensorDesc) -> String {
    let dims: Vec<String> = t.shape.iter().map(u64::to_string).collect();
    format!(
        "{} {} [{}] @ {:#x}",
        quote(&t.name),
        t.dtype(),
        dims.join(", "),
        t.dram_addr
    )
}

fn write_target(out: &mut String, target: &Target) {
    let base = Target::preset(&target.name).unwrap_or_else(|_| Target::tiny());
    let _ = writeln!(out, ".target {}", base.name);
    let (Ok(want), Ok(have)) = (toml::Table::try_from(target), toml::Table::try_from(&base)) else {
        return;
    };
    for (key, value) in &want {
        if have.get(key) != Some(value) {
            match value {
                toml::Value::String(s) => {
                    let _ = writeln!(out, ".param {key} {}", quote(s));
                }
                other => {
                    let _ = writeln!(out, ".param {key} {other}");
                }
            }
        }
    }
}
