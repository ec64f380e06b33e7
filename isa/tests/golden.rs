//! Golden table: for every opcode, one instruction with its encoding and
//! text, snapshotted so any change to the table shows up in review.

use std::fmt::Write as _;

use tessera_isa::{Instr, INSTRUCTIONS};

#[test]
fn golden_encodings() {
    // A fixed, varied stream of field values.
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 11
    };
    let mut out = String::new();
    for (i, info) in INSTRUCTIONS.iter().enumerate() {
        let instr = Instr::random(i, &mut next);
        let _ = writeln!(
            out,
            "{:#04x} {:<12} {:032x}  {}",
            info.opcode,
            info.mnemonic,
            instr.encode(),
            instr
        );
    }
    insta::assert_snapshot!(out);
}

#[test]
fn field_layout_table() {
    let mut out = String::new();
    for info in INSTRUCTIONS {
        let fields: Vec<String> = info
            .field_offsets()
            .iter()
            .map(|(at, f)| {
                format!(
                    "{}{}@{}:{}",
                    if f.keyword { "=" } else { "" },
                    f.name,
                    at,
                    f.bits
                )
            })
            .collect();
        let used: u32 = 8 + info.fields.iter().map(|f| f.bits).sum::<u32>();
        let _ = writeln!(
            out,
            "{:<12} {:<4} {:>3} bits  {}",
            info.mnemonic,
            info.engine,
            used,
            fields.join(" ")
        );
    }
    insta::assert_snapshot!(out);
}

/// The low-precision instructions as a user writes them: every 8-bit MXU
/// type, zero points, block scales, quantize/dequantize, `amax` and FP8
/// conversions, with the accumulator parameters. Disassembled (omitted
/// `OptReg` operands stay omitted) and re-assembled to the same words.
#[test]
fn low_precision_assembly() {
    let source = "\
.target base
.param mxu_acc_mantissa_bits 14
.param mxu_promote_interval 128
.param mxu_scale_e8m0 true
.param mxu_acc_truncate true
        li r1, 128
        li r2, 3
        li r3, 0x4000
        li r4, 4
        mxu.ldw spm[0], k=128, n=128, stride=128, dtype=u8i8, trans=n, azp=r2
        mxu.mm acc[0], spm[0x8000], m=64, astride=128, dstride=512, mode=set
        mxu.ldw spm[0x10000], k=128, n=64, stride=128, dtype=e4m3, trans=t, scales=r3, sstride=r4
        mxu.mm acc[0x8000], spm[0x20000], m=r1, astride=128, dstride=256, mode=acc, ascales=r3
        mxu.ldw spm[0], k=64, n=64, stride=64, dtype=e5m2e4m3, trans=n, scales=r3, sstride=r4
        mxu.ldw spm[0], k=64, n=64, stride=64, dtype=i8, trans=n, wzp=r2, azp=r2
        mxu.ldw spm[0], k=64, n=64, stride=64, dtype=u8, trans=n, wzp=r4, azp=r3, azsrc=spm, wzsrc=spm
        vpu.red amax, spm[0x30000], spm[0x20000], rows=r1, cols=r1, dstride=r4, astride=r1, mode=set
        vpu.quant spm[0x31000], spm[0x20000], spm[0x30000], dtype=e4m3, rows=r1, cols=r1, dstride=r1, astride=r1, sbcast=col
        vpu.quant spm[0x32000], spm[0x20000], spm[0x30000], dtype=u8, rows=r1, cols=r1, dstride=r1, astride=r1, sbcast=scalar, zp=r2
        vpu.quant spm[0x32000], spm[0x20000], spm[0x30000], dtype=e4m3, rows=r1, cols=r1, dstride=r1, astride=r1, sbcast=col, sop=mul
        vpu.dequant spm[0x33000], acc[0], spm[0x30000], atype=i32, rows=r1, cols=r1, dstride=r1, astride=r1, sbcast=row
        vpu.cvt spm[0x34000], spm[0x31000], dtype=f32, atype=e4m3, rows=r1, cols=r1, dstride=r1, astride=r1
        halt
";
    let loadable = tessera_isa::assemble(source, "lowp.s", None).expect("assembles");
    let text =
        tessera_isa::disassemble(&loadable, tessera_isa::DisasmOptions::default()).expect("disasm");
    let again = tessera_isa::assemble(&text, "lowp-again.s", None).expect("re-assembles");
    assert_eq!(
        again.code, loadable.code,
        "disassembly re-assembles to the same words"
    );
    assert_eq!(again.target(), loadable.target());
    insta::assert_snapshot!(text);
}
