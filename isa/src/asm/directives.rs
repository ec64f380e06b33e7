//! Assembler directives: `.target`, `.param`, `.equ`, `.input`/`.output`,
//! `.segment` with its `.bytes`/`.f32` data, and the source map's `.loc`
//! and `.tensor`.

use super::*;

/// Parses the operands of `.loc`: `"node" [macs=N] [roofline=N] [from "a" "b" ...]`.
fn loc_directive(text: &str, pc: u32) -> Result<SourceRange, String> {
    let (node, mut rest) = quoted(text)?;
    let mut range = SourceRange::new(pc, pc, &node);
    loop {
        let (item, after) = word(rest);
        if item.is_empty() {
            return Ok(range);
        }
        if item == "from" {
            let mut names = after.trim_start();
            while !names.is_empty() {
                let (name, next) = quoted(names)?;
                range.sources.push(name);
                names = next.trim_start();
            }
            return Ok(range);
        }
        let (key, value) = item.split_once('=').ok_or_else(|| {
            format!("expected macs=N, roofline=N or from \"node\" ..., found `{item}`")
        })?;
        let v = u64::try_from(parse_int(value)?).map_err(|_| format!("negative `{item}`"))?;
        match key {
            "macs" => range.macs = v,
            "roofline" => range.roofline_cycles = v,
            other => return Err(format!("unknown .loc annotation `{other}`")),
        }
        rest = after;
    }
}

/// Parses the operands of `.tensor`: `"name" DTYPE [dims] @ ADDR ready=PC [value "onnx_value"]`.
fn debug_tensor_directive(text: &str) -> Result<DebugTensor, String> {
    let (desc, rest) = tensor_prefix(text)?;
    let (item, rest) = word(rest);
    let ready = item
        .strip_prefix("ready=")
        .ok_or_else(|| format!("expected ready=PC after the address, found `{item}`"))?;
    let ready_pc =
        u32::try_from(parse_int(ready)?).map_err(|_| format!("`{item}` is out of range"))?;
    let (item, rest) = word(rest);
    let value = match item {
        "" => String::new(),
        "value" => {
            let (value, rest) = quoted(rest)?;
            if !rest.trim().is_empty() {
                return Err(format!("unexpected `{}` after the value name", rest.trim()));
            }
            value
        }
        other => {
            return Err(format!(
                "expected `value \"name\"` or the end of the line, found `{other}`"
            ))
        }
    };
    Ok(DebugTensor {
        desc: Some(desc),
        value,
        ready_pc,
    })
}

pub(super) fn directive(
    asm: &mut Assembler,
    line: &Line,
    text: &str,
    col: usize,
) -> Result<(), AsmError> {
    let (name, rest) = word(text);
    let fail = |asm: &Assembler, m: String| Err(asm.err(line, col, format!("{name}: {m}")));
    match name {
        ".target" => {
            if asm.target.is_some() {
                return fail(asm, "target given twice".into());
            }
            match Target::preset(rest.trim()) {
                Ok(t) => {
                    asm.target = Some(t);
                    asm.target_line = line.number;
                }
                Err(e) => return fail(asm, e.to_string()),
            }
        }
        ".param" => {
            let (field, value) = word(rest);
            let Some(target) = asm.target.clone() else {
                return fail(asm, "`.param` needs a `.target` before it".into());
            };
            match set_param(&target, field, value) {
                Ok(t) => asm.target = Some(t),
                Err(m) => return fail(asm, m),
            }
        }
        ".input" | ".output" => match tensor_directive(rest) {
            Ok(desc) => {
                let list = if name == ".input" {
                    &mut asm.loadable.inputs
                } else {
                    &mut asm.loadable.outputs
                };
                if list.iter().any(|t| t.name == desc.name) {
                    let m = format!("`{}` is declared twice", desc.name);
                    return fail(asm, m);
                }
                list.push(desc);
            }
            Err(m) => return fail(asm, m),
        },
        ".segment" => {
            let parsed = quoted(rest).and_then(|(seg_name, after)| {
                let addr = after
                    .trim()
                    .strip_prefix('@')
                    .ok_or_else(|| "expected `@ address` after the name".to_string())?;
                let addr = u64::try_from(parse_int(addr)?).map_err(|_| "negative address".to_string())?;
                Ok((seg_name, addr))
            });
            match parsed {
                Ok((seg_name, dram_addr)) => asm.loadable.segments.push(Segment {
                    name: seg_name,
                    dram_addr,
                    data: Vec::new(),
                }),
                Err(m) => return fail(asm, m),
            }
        }
        ".bytes" | ".f32" => {
            let data = if name == ".bytes" {
                parse_hex(rest)
            } else {
                parse_f32s(rest)
            };
            let data = match data {
                Ok(d) => d,
                Err(m) => return fail(asm, m),
            };
            match asm.loadable.segments.last_mut() {
                Some(seg) => seg.data.extend_from_slice(&data),
                None => return fail(asm, "data before any `.segment`".into()),
            }
        }
        ".loc" => {
            let pc = asm.code.len() as u32;
            if let Some(range) = asm.open_loc.take() {
                push_loc(&mut asm.loadable, range, pc);
            }
            if !rest.trim().is_empty() {
                match loc_directive(rest, pc) {
                    Ok(range) => asm.open_loc = Some(range),
                    Err(m) => return fail(asm, m),
                }
            }
        }
        ".onnx" => {
            let parsed = quoted(rest).and_then(|(node, after)| match word(after) {
                (op, "") if !op.is_empty() => Ok((node, op.to_string())),
                _ => Err("expected `.onnx \"node\" OpType`".to_string()),
            });
            match parsed {
                Ok((name, op_type)) => asm.loadable.onnx_nodes.push(OnnxNode { name, op_type }),
                Err(m) => return fail(asm, m),
            }
        }
        ".tensor" => match debug_tensor_directive(rest) {
            Ok(t) => asm.loadable.tensors.push(t),
            Err(m) => return fail(asm, m),
        },
        _ => {
            return Err(asm.err(
                line,
                col,
                format!(
                    "unknown directive `{name}` (expected .target, .param, .equ, .input, .output, .segment, .bytes, .f32, .loc, .onnx or .tensor; labels end with `:`)"
                ),
            ))
        }
    }
    Ok(())
}

fn set_param(target: &Target, field: &str, value: &str) -> Result<Target, String> {
    let mut table = toml::Table::try_from(target).map_err(|e| e.to_string())?;
    if !table.contains_key(field) {
        return Err(format!("unknown target parameter `{field}`"));
    }
    let parsed = if field == "name" {
        toml::Value::String(quoted(value)?.0)
    } else if table[field].is_bool() {
        match value {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            other => {
                return Err(format!(
                    "parameter `{field}` is `true` or `false`, not `{other}`"
                ))
            }
        }
    } else {
        let v = parse_int(value)?;
        toml::Value::Integer(i64::try_from(v).map_err(|_| format!("value `{value}` too large"))?)
    };
    table.insert(field.to_string(), parsed);
    Target::deserialize_table(table).map_err(|e| format!("parameter `{field}`: {e}"))
}

impl Target {
    fn deserialize_table(table: toml::Table) -> Result<Target, String> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }
}

fn tensor_directive(text: &str) -> Result<TensorDesc, String> {
    let (desc, rest) = tensor_prefix(text)?;
    if !rest.trim().is_empty() {
        return Err(format!("unexpected `{}` after the address", rest.trim()));
    }
    Ok(desc)
}

/// Parses `"name" DTYPE [dims] @ ADDR` and returns the rest of the text.
fn tensor_prefix(text: &str) -> Result<(TensorDesc, &str), String> {
    let (name, rest) = quoted(text)?;
    let (dtype_text, rest) = word(rest);
    let dtype = DType::from_name(dtype_text)
        .ok_or_else(|| format!("expected a dtype ({}), found `{dtype_text}`", DType::SYNTAX))?;
    let rest = rest.trim_start();
    let inner_end = rest.find(']').ok_or("expected a shape like [2, 3]")?;
    let shape_text = rest
        .strip_prefix('[')
        .ok_or("expected a shape like [2, 3]")?;
    let shape_text = &shape_text[..inner_end - 1];
    let mut shape = Vec::new();
    for d in shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        shape.push(u64::try_from(parse_int(d)?).map_err(|_| format!("negative dimension `{d}`"))?);
    }
    let addr = rest[inner_end + 1..]
        .trim()
        .strip_prefix('@')
        .ok_or("expected `@ address` after the shape")?;
    let (addr, rest) = word(addr);
    let addr = u64::try_from(parse_int(addr)?).map_err(|_| "negative address".to_string())?;
    Ok((TensorDesc::new(&name, dtype, &shape, addr), rest))
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.split_whitespace().collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("bad hex byte `{}`", &digits[i..i + 2]))
        })
        .collect()
}

fn parse_f32s(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for v in text.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let x: f32 = v.parse().map_err(|_| format!("bad f32 value `{v}`"))?;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}
