//! The assembler and the program disassembler.
//!
//! Source format (SPEC.md, "Assembly"): one instruction, label or directive
//! per line; `;` or `#` starts a comment; `name:` defines a label. Directives
//! describe everything else a loadable holds, so that `disassemble` output
//! assembles back to a byte-identical loadable:
//!
//! ```text
//! .target tiny                      ; preset, then optional overrides:
//! .param dram_latency_cycles 40
//! .equ ROW_BYTES, 48                ; a named integer, usable in any operand
//! .input "x" f32 [4, 8] @ 0x0       ; DRAM tensors the caller provides
//! .output "y" f32 [4, 8] @ 0x80
//! .segment "w" @ 0x100              ; initialized DRAM, filled by:
//! .bytes 0000803f 00000040          ; hex bytes
//! .f32 1.0, 2.0                     ; little-endian f32 values
//! .loc "node" macs=64 roofline=12   ; source map: following code implements node
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::fields::{parse_int, DType, Field, ParseCtx};
use crate::instr::{Instr, Operand};
use crate::loadable::{
    DebugTensor, Loadable, OnnxNode, Segment, SourceRange, TensorDesc, ISA_VERSION,
};
use crate::target::Target;

/// An assembly error at a position in a source file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct AsmError {
    /// Source file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What went wrong and what was expected.
    pub message: String,
}

/// A line with comments removed, and the column of its first character.
struct Line<'a> {
    number: usize,
    text: &'a str,
    /// 1-based column of `text`'s first character in the original line.
    column: usize,
}

/// Removes a `;` or `#` comment (outside double quotes) and surrounding space.
fn strip_comment(raw: &str) -> (&str, usize) {
    let mut in_quotes = false;
    let mut end = raw.len();
    let mut prev = '\0';
    for (i, c) in raw.char_indices() {
        match c {
            '"' if prev != '\\' => in_quotes = !in_quotes,
            ';' | '#' if !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
        prev = c;
    }
    let body = &raw[..end];
    let trimmed = body.trim_start();
    let column = body.len() - trimmed.len() + 1;
    (trimmed.trim_end(), column)
}

struct Assembler<'s> {
    file: &'s str,
    target: Option<Target>,
    target_line: usize,
    loadable: Loadable,
    code: Vec<Instr>,
    /// The `.loc` range being assembled (its `end` is set when it closes).
    open_loc: Option<SourceRange>,
    labels: HashMap<String, u32>,
    /// `.equ` symbols and their values.
    symbols: HashMap<String, String>,
}

impl<'s> Assembler<'s> {
    fn err(&self, line: &Line, column_in_text: usize, message: impl Into<String>) -> AsmError {
        AsmError {
            file: self.file.to_string(),
            line: line.number,
            column: line.column + column_in_text.saturating_sub(1),
            message: message.into(),
        }
    }
}

/// Assembles source text. `default_target` is used when the source has no
/// `.target` directive; if both are given they must agree.
pub fn assemble(
    source: &str,
    file: &str,
    default_target: Option<&Target>,
) -> Result<Loadable, AsmError> {
    let lines: Vec<Line> = source
        .lines()
        .enumerate()
        .map(|(i, raw)| {
            let (text, column) = strip_comment(raw);
            Line {
                number: i + 1,
                text,
                column,
            }
        })
        .collect();
    let mut asm = Assembler {
        file,
        target: None,
        target_line: 0,
        loadable: Loadable {
            isa_version: ISA_VERSION,
            ..Default::default()
        },
        code: Vec::new(),
        open_loc: None,
        labels: HashMap::new(),
        symbols: HashMap::new(),
    };

    // Pass 1: label addresses.
    let mut pc: u32 = 0;
    for line in &lines {
        let rest = take_label(&mut asm, line, pc, true)?;
        if word(rest).0 == ".equ" {
            define_symbol(&mut asm, line, rest)?;
        } else if !rest.is_empty() && !rest.starts_with('.') {
            pc += 1;
        }
    }
    if let Some(name) = asm.symbols.keys().find(|n| asm.labels.contains_key(*n)) {
        return Err(AsmError {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: format!("`{name}` is both a label and an `.equ` symbol"),
        });
    }

    // Pass 2: directives and instructions.
    for line in &lines {
        let pc = asm.code.len() as u32;
        let rest = take_label(&mut asm, line, pc, false)?;
        if rest.is_empty() {
            continue;
        }
        let offset = rest.as_ptr() as usize - line.text.as_ptr() as usize;
        if word(rest).0 == ".equ" {
            continue;
        }
        if rest.starts_with('.') {
            let substituted = substitute(&asm.symbols, rest);
            directive(&mut asm, line, &substituted, offset + 1)?;
        } else {
            instruction(&mut asm, line, rest, offset + 1)?;
        }
    }

    if let Some(range) = asm.open_loc.take() {
        push_loc(&mut asm.loadable, range, asm.code.len() as u32);
    }
    let target = match (asm.target.take(), default_target) {
        (Some(t), Some(d)) if &t != d => {
            return Err(AsmError {
                file: file.to_string(),
                line: asm.target_line,
                column: 1,
                message: if t.name == d.name {
                    let list: Vec<String> = t
                        .differences(d)
                        .iter()
                        .map(|(field, source, requested)| {
                            format!("{field} {source} vs {requested}")
                        })
                        .collect();
                    format!(
                        "the source's target `{}` has other parameters than the requested one ({})",
                        t.name,
                        list.join(", ")
                    )
                } else {
                    format!(
                        "the source says `.target {}` but target `{}` was requested",
                        t.name, d.name
                    )
                },
            })
        }
        (Some(t), _) => t,
        (None, Some(d)) => d.clone(),
        (None, None) => Target::tiny(),
    };
    target.validate().map_err(|e| AsmError {
        file: file.to_string(),
        line: asm.target_line,
        column: 1,
        message: e.to_string(),
    })?;
    asm.loadable.target = Some(target);
    asm.loadable.code = crate::instr::encode_program(&asm.code);
    asm.loadable.validate().map_err(|e| AsmError {
        file: file.to_string(),
        line: lines.len().max(1),
        column: 1,
        message: e.to_string(),
    })?;
    Ok(asm.loadable)
}

/// Strips a leading `label:` from the line; in pass 1 records it.
fn take_label<'l>(
    asm: &mut Assembler,
    line: &Line<'l>,
    pc: u32,
    record: bool,
) -> Result<&'l str, AsmError> {
    let text = line.text;
    let first_token_end = text.find(char::is_whitespace).unwrap_or(text.len());
    let token = &text[..first_token_end];
    let Some(name) = token.strip_suffix(':') else {
        return Ok(text);
    };
    if !crate::fields::is_identifier(name) {
        return Err(asm.err(line, 1, format!("`{name}` is not a valid label name")));
    }
    if record && asm.labels.insert(name.to_string(), pc).is_some() {
        return Err(asm.err(line, 1, format!("label `{name}` defined twice")));
    }
    Ok(text[first_token_end..].trim_start())
}

/// Closes a `.loc` range at `end`; empty ranges are dropped.
fn push_loc(loadable: &mut Loadable, mut range: SourceRange, end: u32) {
    if end > range.start {
        range.end = end;
        loadable.source_map.push(range);
    }
}

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

fn instruction(asm: &mut Assembler, line: &Line, text: &str, col: usize) -> Result<(), AsmError> {
    let mnemonic_end = text.find(char::is_whitespace).unwrap_or(text.len());
    let mnemonic = &text[..mnemonic_end];
    let mut operands = Vec::new();
    let mut start = mnemonic_end;
    let body = &text[mnemonic_end..];
    if !body.trim().is_empty() {
        let mut depth = 0i32;
        let mut piece_start = 0;
        let mut pieces = Vec::new();
        for (i, c) in body.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => {
                    pieces.push((piece_start, &body[piece_start..i]));
                    piece_start = i + 1;
                }
                _ => {}
            }
        }
        pieces.push((piece_start, &body[piece_start..]));
        for (at, piece) in pieces {
            let lead = piece.len() - piece.trim_start().len();
            let trimmed = piece.trim();
            let column = col + start + at + lead;
            if trimmed.is_empty() {
                return Err(asm.err(line, column, "empty operand"));
            }
            let (key, value, value_column) = match trimmed.split_once('=') {
                Some((k, v)) if !k.contains('[') => {
                    let v_lead = v.len() - v.trim_start().len();
                    (Some(k.trim()), v.trim(), column + k.len() + 1 + v_lead)
                }
                _ => (None, trimmed, column),
            };
            operands.push(Operand {
                key,
                value,
                value_column,
            });
        }
        start = 0;
    }
    let _ = start;
    let values: Vec<String> = operands
        .iter()
        .map(|o| substitute(&asm.symbols, o.value))
        .collect();
    let operands: Vec<Operand> = operands
        .iter()
        .zip(&values)
        .map(|(o, v)| Operand {
            key: o.key,
            value: v.as_str(),
            value_column: o.value_column,
        })
        .collect();
    let labels = &asm.labels;
    let resolve = |name: &str| labels.get(name).copied();
    let pc = asm.code.len() as u32;
    let ctx = ParseCtx {
        pc,
        resolve: &resolve,
    };
    let instr = Instr::parse_operands(mnemonic, &operands, &ctx).map_err(|e| {
        let column = if e.column == 0 { col } else { e.column };
        asm.err(line, column, e.message)
    })?;
    asm.code.push(instr);
    Ok(())
}

/// Records `.equ NAME, VALUE` (pass 1).
fn define_symbol(asm: &mut Assembler, line: &Line, text: &str) -> Result<(), AsmError> {
    let (_, rest) = word(text);
    let (name, value) = match rest.split_once(',') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => {
            let (n, v) = word(rest);
            (n, v.trim())
        }
    };
    if !crate::fields::is_identifier(name) || name.starts_with('.') {
        return Err(asm.err(
            line,
            1,
            format!(".equ: `{name}` is not a valid symbol name"),
        ));
    }
    let value = substitute(&asm.symbols, value);
    let number = parse_int(&value).map_err(|m| asm.err(line, 1, format!(".equ {name}: {m}")))?;
    if asm
        .symbols
        .insert(name.to_string(), number.to_string())
        .is_some()
    {
        return Err(asm.err(line, 1, format!(".equ: symbol `{name}` defined twice")));
    }
    Ok(())
}

/// Replaces `.equ` symbols in `text` (outside quotes) by their values.
fn substitute(symbols: &HashMap<String, String>, text: &str) -> String {
    if symbols.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut in_quotes = false;
    let mut prev = ' ';
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        let starts_word = (c.is_ascii_alphabetic() || c == '_')
            && !(prev.is_ascii_alphanumeric() || prev == '_' || prev == '.');
        if !in_quotes && starts_word {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let token = &text[i..end];
            match symbols.get(token) {
                Some(v) => out.push_str(v),
                None => out.push_str(token),
            }
            prev = token.chars().last().unwrap_or(c);
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Splits off the first whitespace-separated word.
fn word(text: &str) -> (&str, &str) {
    let t = text.trim_start();
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    (&t[..end], t[end..].trim_start())
}

/// Parses a `"quoted"` string with `\"` and `\\` escapes; returns it and the
/// rest of the text.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let t = text.trim_start();
    let body = t
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a \"quoted name\", found `{t}`"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                _ => return Err("bad escape in quoted name (only \\\" and \\\\)".into()),
            },
            '"' => return Ok((out, &body[i + 1..])),
            _ => out.push(c),
        }
    }
    Err("unterminated quoted name".into())
}

/// Writes a name as a `"quoted"` string.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

fn directive(asm: &mut Assembler, line: &Line, text: &str, col: usize) -> Result<(), AsmError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        .target tiny
        .input "x" f32 [2, 4] @ 0x0
        .output "y" f32 [2, 4] @ 0x100
        .segment "w" @ 0x200
        .f32 1.0, 2.0
        .loc "node/a"
        li r1, 3          ; loop count
    top:
        addi r2, r2, 1
        loop r1, top
        .loc
        dma.copy spm[r0+64], dram[0x200], bytes=8
        halt
    "#;

    #[test]
    fn assembles_labels_directives_and_source_map() {
        let l = assemble(SAMPLE, "t.s", None).expect("assemble");
        let code = l.instructions().expect("decode");
        assert_eq!(code.len(), 5);
        assert_eq!(code[2].branch_target(2), Some(1));
        assert_eq!(l.source_map, vec![SourceRange::new(0, 3, "node/a")]);
        assert_eq!(l.segments[0].data.len(), 8);
        assert_eq!(l.inputs[0].shape, vec![2, 4]);
    }

    const DEBUG_SAMPLE: &str = r#"
        .target tiny
        .input "x" f32 [2, 4] @ 0x0
        .output "y" f32 [2, 4] @ 0x100
        .onnx "/mm" MatMul
        .onnx "/add \"b\"" Add
        .tensor "t" f32 [2, 4] @ 0x40 ready=2 value "/mm_output_0"
        .tensor "y" f32 [2, 4] @ 0x100 ready=3
        .loc "t" macs=64 roofline=9 from "/mm" "/add \"b\""
        nop
        nop
        .loc "y" from "/add \"b\""
        nop
        halt
    "#;

    #[test]
    fn debug_directives_record_onnx_nodes_tensors_and_sources() {
        let l = assemble(DEBUG_SAMPLE, "t.s", None).expect("assemble");
        assert_eq!(l.onnx_nodes.len(), 2);
        assert_eq!(l.onnx_nodes[1].name, "/add \"b\"");
        assert_eq!(l.onnx_nodes[1].op_type, "Add");
        assert_eq!(l.source_map[0].sources, vec!["/mm", "/add \"b\""]);
        assert_eq!(
            (l.source_map[0].macs, l.source_map[0].roofline_cycles),
            (64, 9)
        );
        assert_eq!(l.source_map[1].sources, vec!["/add \"b\""]);
        assert_eq!(l.tensors[0].value, "/mm_output_0");
        assert_eq!(l.tensors[0].ready_pc, 2);
        assert_eq!(l.tensors[0].desc().dram_addr, 0x40);
        assert_eq!(l.tensors[1].display_name(), "y");
        let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
        let again = assemble(&text, "d.s", None).expect("reassemble");
        assert_eq!(again.to_bytes(), l.to_bytes(), "{text}");
    }

    #[test]
    fn a_source_that_is_not_a_listed_onnx_node_is_refused() {
        let src = DEBUG_SAMPLE.replace(".onnx \"/mm\" MatMul", "");
        let err = assemble(&src, "t.s", None).expect_err("unlisted source");
        assert!(err.message.contains("names ONNX node `/mm`"), "{err}");
    }

    #[test]
    fn a_debug_tensor_ready_past_the_code_is_refused() {
        let src = DEBUG_SAMPLE.replace("ready=3", "ready=99");
        let err = assemble(&src, "t.s", None).expect_err("ready past the code");
        assert!(err.message.contains("ready at instruction 99"), "{err}");
    }

    #[test]
    fn disassembly_reassembles_identically() {
        let l = assemble(SAMPLE, "t.s", None).expect("assemble");
        let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
        let again = assemble(&text, "d.s", None).expect("reassemble");
        assert_eq!(again.to_bytes(), l.to_bytes(), "{text}");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = assemble("nop\n  frob r1, r2\n", "e.s", None).expect_err("unknown");
        assert_eq!((err.line, err.column), (2, 3));
        assert!(err.message.contains("unknown mnemonic `frob`"), "{err}");
        let err = assemble("addi r1, r2, 99999999999\n", "e.s", None).expect_err("range");
        assert_eq!((err.line, err.column), (1, 14));
        let err = assemble("jmp nowhere\n", "e.s", None).expect_err("label");
        assert!(err.message.contains("undefined label `nowhere`"), "{err}");
        let err = assemble("add r1, r2\n", "e.s", None).expect_err("count");
        assert!(err.message.contains("expected 3"), "{err}");
        let err = assemble("dma.copy spm[0], dram[0]\n", "e.s", None).expect_err("kw");
        assert!(err.message.contains("bytes="), "{err}");
        let src = ".output \"y\" f32 [1] @ 0\n.output \"y\" f32 [1] @ 64\nhalt\n";
        let err = assemble(src, "e.s", None).expect_err("twice");
        assert_eq!(err.line, 2);
        assert_eq!(err.message, ".output: `y` is declared twice");
    }

    #[test]
    fn equ_symbols_substitute_in_operands_and_directives() {
        let src = ".equ ROW, 48\n.equ BASE 0x100\n.input \"x\" f32 [ROW] @ BASE\nli r1, ROW\naddi r2, r1, BASE\ndma.copy spm[r1+ROW], dram[BASE], bytes=r2+ROW\nhalt\n";
        let l = assemble(src, "e.s", None).expect("assemble");
        let code = l.instructions().expect("decode");
        assert_eq!(code[0].to_string(), "li r1, 48");
        assert_eq!(code[1].to_string(), "addi r2, r1, 256");
        assert_eq!(
            code[2].to_string(),
            "dma.copy spm[r1+48], dram[256], bytes=r2+48"
        );
        assert_eq!(l.inputs[0].shape, vec![48]);
        assert_eq!(l.inputs[0].dram_addr, 0x100);
        let err = assemble(".equ X, 1\nX: nop\n", "e.s", None).expect_err("clash");
        assert!(err.message.contains("both a label"), "{err}");
    }

    #[test]
    fn custom_targets_round_trip_through_params() {
        let src = ".target base\n.param name \"mine\"\n.param dram_latency_cycles 7\nhalt\n";
        let l = assemble(src, "p.s", None).expect("assemble");
        assert_eq!(l.target().dram_latency_cycles, 7);
        let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
        assert_eq!(assemble(&text, "d.s", None).expect("again"), l);
    }
}
