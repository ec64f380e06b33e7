//! `tessera-sim`: executes Tessera NPU programs exactly as `isa/SPEC.md`
//! says, times them, and proves every run well-synchronized.
