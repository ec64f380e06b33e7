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

mod directives;
mod disasm;
#[cfg(test)]
mod tests;

use directives::directive;
pub use disasm::{disassemble, DisasmOptions};

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
