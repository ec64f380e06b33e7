//! The debug-information directives (`.onnx`, `.tensor`, `.loc … from`) and
//! the loadable fields they fill: mutated sources and payloads are refused
//! with an error, never a panic, and what assembles round-trips.

use proptest::prelude::*;
use tessera_isa::{assemble, disassemble, DisasmOptions, Loadable};

const SOURCE: &str = r#".target tiny
.input "x" f32 [2, 4] @ 0x0
.output "y" f32 [2, 4] @ 0x100
.onnx "/mm" MatMul
.onnx "/add" Add
.tensor "t" f32 [2, 4] @ 0x40 ready=2 value "/mm_output_0"
.tensor "y" f32 [2, 4] @ 0x100 ready=3
.loc "t" macs=64 roofline=9 from "/mm" "/add"
nop
nop
.loc "y" from "/add"
nop
halt
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mutated_debug_directives_never_panic(at in 0usize..SOURCE.len(), byte in any::<u8>(), cut: bool) {
        let mut bytes = SOURCE.as_bytes().to_vec();
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] = byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(l) = assemble(&text, "fuzz.s", None) {
            let again = disassemble(&l, DisasmOptions::default()).expect("disassemble");
            let back = assemble(&again, "again.s", None).expect("reassemble");
            prop_assert_eq!(back.to_bytes(), l.to_bytes());
        }
    }

    #[test]
    fn mutated_payloads_never_panic(at in 24usize..400, byte in any::<u8>()) {
        let l = assemble(SOURCE, "t.s", None).expect("assemble");
        let mut bytes = l.to_bytes();
        let at = at.min(bytes.len() - 1);
        bytes[at] = byte;
        // Fix the checksum so the mutated payload is decoded and validated.
        let crc = tessera_isa::loadable::crc32(&bytes[24..]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        let _ = Loadable::from_bytes(&bytes);
    }
}
