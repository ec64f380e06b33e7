//! `tessera-compiler`: compiles ONNX transformer models for the Tessera NPU.
//!
//! The pipeline (see README.md): ONNX frontend → Graph IR → e-graph optimizer
//! → lowering to Kernel IR → codegen to ISA → `.tnpu` loadable. This library
//! depends on `tessera-isa` only, never on the simulator.
//!
//! Modules, in pipeline order (ARCHITECTURE.md has the file that owns
//! each stage and checklists for extending them):
//! - [`tensor`]: tensors and their file formats (`.pb`, `.npy`);
//! - [`frontend`]: ONNX import into [`graph`] (Graph IR), with
//!   [`provenance`] recording which ONNX node made each Graph IR node;
//! - [`interp`]: the reference interpreter over Graph IR;
//! - [`fold`]: constant folding and dead-node elimination;
//! - [`egraph`]: the e-graph optimizer (fusion into NPU-native ops);
//! - [`fuse`]: single-use elementwise chains into one node each;
//! - [`passes`]: the named pass list with the verifier after each pass;
//! - [`widen`]: fp16/bf16 graphs widened to f32 for the NPU's vector unit;
//! - [`precision`]: the arithmetic precision of a compiled program;
//! - [`lower`]: Graph IR to [`kernel`] (Kernel IR) through the kernel
//!   templates;
//! - [`codegen`]: Kernel IR to ISA instructions;
//! - [`driver`]: lowering, codegen and packaging in one call;
//! - [`runtime_io`]: tensors in and out of a loadable's DRAM layout;
//! - [`compare`]: error metrics and tolerances for checking results;
//! - [`layerwise`]: the per-tensor comparison of `check --compare-all`.

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
