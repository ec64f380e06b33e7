//! The text form of Kernel IR (`tessera compile --emit kernels`).

use std::fmt::{self, Write as _};

use super::{
    Addr, Affine, Ext, Kernel, KernelProgram, Mode, Opnd, Stmt, VpuOp, VpuStmt, WeightQuant,
};

fn hex_or_dec(v: i64) -> String {
    if v.unsigned_abs() >= 4096 {
        if v < 0 {
            format!("-{:#x}", v.unsigned_abs())
        } else {
            format!("{v:#x}")
        }
    } else {
        v.to_string()
    }
}

impl fmt::Display for Affine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.constant != 0 || self.terms.is_empty() {
            out.push_str(&hex_or_dec(self.constant));
        }
        for &(v, k) in &self.terms {
            if !out.is_empty() {
                out.push_str(if k < 0 { " - " } else { " + " });
            } else if k < 0 {
                out.push('-');
            }
            if k.unsigned_abs() == 1 {
                let _ = write!(out, "v{}", v.0);
            } else {
                let _ = write!(out, "{}*v{}", k.unsigned_abs(), v.0);
            }
        }
        f.write_str(&out)
    }
}

impl fmt::Display for Ext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ext::Const(n) => write!(f, "{n}"),
            Ext::Tail { tile, limit, start } => write!(f, "min({tile}, {limit} - ({start}))"),
            Ext::Scaled(e, k) => write!(f, "{e}*{k}"),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.mem, self.at)
    }
}

fn opnd(o: &Opnd) -> String {
    format!("{}:{}/{}", o.addr, o.bcast, o.stride)
}

fn mode(m: &Mode) -> String {
    match m {
        Mode::Fixed(m) => m.to_string(),
        Mode::AccAfterFirst(v) => format!("set-then-acc(v{})", v.0),
    }
}

fn stmt(s: &Stmt, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let _ = match s {
        Stmt::For { var, count, body } => {
            let _ = writeln!(out, "{pad}for v{} in 0..{count} {{", var.0);
            for b in body {
                stmt(b, depth + 1, out);
            }
            writeln!(out, "{pad}}}")
        }
        Stmt::Copy { dst, src, run, dims } => {
            let dims: Vec<String> = dims
                .iter()
                .map(|d| format!("{} x ({}, {})", d.count, d.sstride, d.dstride))
                .collect();
            writeln!(out, "{pad}dma.copy {dst} <- {src} run {run} dims [{}]", dims.join(", "))
        }
        Stmt::Gather { dst, table, idx, rows, bytes, limit, itype } => writeln!(
            out,
            "{pad}dma.gather spm[{dst}] <- dram[{table}] rows spm[{idx}]:{itype} x {rows} of {bytes} B (table {limit} rows)"
        ),
        Stmt::Scatter { table, src, idx, rows, bytes, limit, itype } => writeln!(
            out,
            "{pad}dma.scatter dram[{table}] <- spm[{src}] rows spm[{idx}]:{itype} x {rows} of {bytes} B (table {limit} rows)"
        ),
        Stmt::LoadW { src, k, n, stride, dtype, trans, quant } => {
            let zp = match quant {
                Some(WeightQuant::ZeroPoints(a, w)) => format!(" azp={a} wzp={w}"),
                Some(WeightQuant::Scales { at, a_stride }) => format!(" scales=spm[{at}] sstride={a_stride}"),
                None => String::new(),
            };
            writeln!(out, "{pad}mxu.ldw spm[{src}] {k}x{n} {dtype} stride {stride} trans={trans}{zp}")
        }
        Stmt::Matmul { dst, a, m, astride, dstride, mode: md, ascales } => writeln!(
            out,
            "{pad}mxu.mm acc[{dst}]/{dstride} {} spm[{a}]/{astride} x {m} rows{}",
            if matches!(md, Mode::Fixed(tessera_isa::AccMode::Set)) { "=" } else { "+=" }.to_string()
                + &match md {
                    Mode::AccAfterFirst(_) => format!(" ({})", mode(md)),
                    _ => String::new(),
                },
            ascales.as_ref().map(|s| format!(" ascales=spm[{s}]")).unwrap_or_default()
        ),
        Stmt::Vpu(v) => writeln!(out, "{pad}{}", vpu(v)),
        Stmt::Signal(c, n) => writeln!(out, "{pad}{}.signal {c} {n}", c.producer()),
        Stmt::Wait(c, n) => writeln!(out, "{pad}{}.wait {c} {n}", c.consumer()),
        Stmt::If {
            lhs,
            cmp,
            value,
            body,
        } => {
            let op = match cmp {
                super::Cmp::Eq => "==",
                super::Cmp::Ne => "!=",
                super::Cmp::Lt => "<",
                super::Cmp::Ge => ">=",
            };
            let _ = writeln!(out, "{pad}if {lhs} {op} {value} {{");
            for b in body {
                stmt(b, depth + 1, out);
            }
            writeln!(out, "{pad}}}")
        }
        Stmt::Advance(v) => writeln!(out, "{pad}advance v{}", v.0),
        Stmt::Note(text) => writeln!(out, "{pad}# {text}"),
    };
}

fn vpu(v: &VpuStmt) -> String {
    let VpuStmt {
        op,
        dst,
        dstride,
        rows,
        cols,
    } = v;
    let block = format!("[{rows} x {cols}]");
    match op {
        VpuOp::Bin { func, a, b } => {
            format!(
                "vpu.{func} {dst}/{dstride} <- {}, {} {block}",
                opnd(a),
                opnd(b)
            )
        }
        VpuOp::BinS {
            func,
            a,
            scalar,
            order,
        } => format!(
            "vpu.{func}s {dst}/{dstride} <- {}, {scalar:?} ({order}) {block}",
            opnd(a)
        ),
        VpuOp::Un { func, a } => format!("vpu.{func} {dst}/{dstride} <- {} {block}", opnd(a)),
        VpuOp::Red { func, a, mode: md } => format!(
            "vpu.red.{func} {dst}/{dstride} <- {} {block} {}",
            opnd(a),
            mode(md)
        ),
        VpuOp::Cvt {
            dtype,
            a,
            atype,
            astride,
        } => format!("vpu.cvt {dst}:{dtype}/{dstride} <- {a}:{atype}/{astride} {block}"),
        VpuOp::Fill { bits } => format!(
            "vpu.fill {dst}/{dstride} <- {:?} {block}",
            f32::from_bits(*bits)
        ),
        VpuOp::Trans { a, astride, dtype } => {
            format!("vpu.trans {dst}/{dstride} <- {a}/{astride} {dtype} {block}")
        }
        VpuOp::Dequant { a, s, atype } => format!(
            "vpu.dequant {dst}/{dstride} <- {}:{atype} x {} {block}",
            opnd(a),
            opnd(s)
        ),
        VpuOp::Quant {
            a,
            s,
            dtype,
            by,
            zp,
        } => format!(
            "vpu.quant {dst}/{dstride}:{dtype} <- {} {} {}{} {block}",
            opnd(a),
            if *by == tessera_isa::ScaleOp::Mul {
                "*"
            } else {
                "/"
            },
            opnd(s),
            if *zp == 0 {
                String::new()
            } else {
                format!(" + {zp}")
            }
        ),
    }
}

/// Writes one kernel.
pub fn kernel(k: &Kernel, index: usize, out: &mut String) {
    let _ = writeln!(out, "kernel {index} \"{}\": {}", k.node, k.summary);
    let _ = writeln!(
        out,
        "  # {} MACs, {} compulsory DRAM bytes",
        k.macs, k.compulsory_dram_bytes
    );
    for (v, m) in &k.rotators {
        let _ = writeln!(out, "  rotating v{} mod {m}", v.0);
    }
    for b in &k.buffers {
        let _ = writeln!(
            out,
            "  buffer {} {} {:#x}..{:#x} ({} x {} B)",
            b.name,
            b.mem,
            b.offset,
            b.end(),
            b.slots,
            b.bytes
        );
    }
    for s in &k.body {
        stmt(s, 1, out);
    }
}

/// Writes a whole program.
pub fn program(p: &KernelProgram, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut out = String::new();
    let _ = writeln!(out, "# DRAM plan: peak {} bytes", p.dram_peak);
    for t in &p.dram {
        let _ = writeln!(
            out,
            "dram {:?} \"{}\" {:#x}..{:#x}",
            t.kind,
            t.name,
            t.addr,
            t.addr + t.bytes
        );
    }
    for (i, k) in p.kernels.iter().enumerate() {
        out.push('\n');
        kernel(k, i, &mut out);
    }
    f.write_str(&out)
}
