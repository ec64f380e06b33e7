//! `tessera-compiler`: compiles ONNX transformer models for the Tessera NPU.
//!
//! The pipeline (see README.md): ONNX frontend → Graph IR → e-graph optimizer
//! → lowering to Kernel IR → codegen to ISA → `.tnpu` loadable. This library
//! depends on `tessera-isa` only, never on the simulator.
//!
//! Modules so far:
//! - [`tensor`]: tensors and their file formats (`.pb`, `.npy`);
//! - [`frontend`]: ONNX import into [`graph`] (Graph IR);
//! - [`interp`]: the reference interpreter over Graph IR;
//! - [`fold`]: constant folding and dead-node elimination;
//! - [`egraph`]: the e-graph optimizer (fusion into NPU-native ops);
//! - [`passes`]: the named pass list with the verifier after each pass;
//! - [`compare`]: error metrics and tolerances for checking results.

pub mod codegen;
pub mod compare;
pub mod driver;
pub mod egraph;
pub mod fold;
pub mod frontend;
pub mod fuse;
pub mod graph;
pub mod interp;
pub mod kernel;
pub mod layerwise;
pub mod lower;
pub mod passes;
pub mod precision;
pub mod provenance;
pub mod runtime_io;
pub mod tensor;
pub mod widen;
