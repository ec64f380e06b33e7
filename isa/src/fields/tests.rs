//! Round trips and range checks of every field type.

use super::*;

fn pctx() -> ParseCtx<'static> {
    ParseCtx {
        pc: 10,
        resolve: &|name| (name == "top").then_some(4),
    }
}

fn text_of<F: Field>(f: F) -> String {
    let mut out = String::new();
    f.write_asm(
        &mut out,
        &WriteCtx {
            pc: 10,
            label: None,
        },
    );
    out
}

#[test]
fn integers_parse_in_decimal_and_hex() {
    assert_eq!(parse_int("42"), Ok(42));
    assert_eq!(parse_int("-0x10"), Ok(-16));
    assert_eq!(parse_int("1_000"), Ok(1000));
    assert!(parse_int("12a").is_err());
    assert!(parse_int("").is_err());
}

#[test]
fn memory_operands_round_trip_in_text() {
    let a = SpmAddr::new(Mem::Spm, Reg(3), -16).expect("spm");
    assert_eq!(text_of(a), "spm[r3-16]");
    assert_eq!(SpmAddr::parse_asm("spm[r3-16]", &pctx()), Ok(a));
    let d = DmaAddr::new(Mem::Dram, Reg(0), 0x12345).expect("dram");
    assert_eq!(text_of(d), "dram[0x12345]");
    assert_eq!(DmaAddr::parse_asm("dram[0x12345]", &pctx()), Ok(d));
    assert!(SpmAddr::parse_asm("acc[r1]", &pctx()).is_err());
    assert!(SpmAddr::parse_asm("spm[r1+0x80000]", &pctx()).is_err());
}

#[test]
fn vals_and_targets_parse() {
    let v = Val::parse_asm("r4+16", &pctx()).expect("val");
    assert_eq!(
        v,
        Val {
            reg: Reg(4),
            imm: 16
        }
    );
    assert_eq!(text_of(v), "r4+16");
    assert_eq!(text_of(Val::imm(7)), "7");
    assert_eq!(Target::parse_asm("top", &pctx()), Ok(Target(-6)));
    assert_eq!(Target::parse_asm(".-6", &pctx()), Ok(Target(-6)));
    assert!(Target::parse_asm("nowhere", &pctx()).is_err());
    assert_eq!(text_of(Target(-6)), ".-6");
}

#[test]
fn enum_codes_outside_the_table_are_errors() {
    assert!(DmaDim::from_bits(0).is_err());
    assert!(DType::from_bits(10).is_err());
    assert!(MxuType::from_bits(11).is_err());
    assert_eq!(UnFunc::from_bits(12), Ok(UnFunc::Gelu));
}
