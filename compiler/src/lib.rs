//! `tessera-compiler`: compiles ONNX transformer models for the Tessera NPU.
//!
//! The pipeline (see DESIGN.md): ONNX frontend → Graph IR → e-graph optimizer
//! → lowering to Kernel IR → codegen to ISA → `.tnpu` loadable. This library
//! depends on `tessera-isa` only, never on the simulator.
