//! Errors a run can end with: faults, races, deadlocks and bad inputs.
//! Each prints as one line with the instruction(s) involved.

use tessera_isa::{Engine, Mem};

use crate::exec::FaultKind;

/// One instruction named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrRef {
    /// Executing unit.
    pub engine: Engine,
    /// Instruction index.
    pub pc: u32,
    /// Disassembly.
    pub text: String,
    /// Source-map node, if any.
    pub node: Option<String>,
}

impl std::fmt::Display for InstrRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pc {} `{}`", self.engine, self.pc, self.text)?;
        if let Some(node) = &self.node {
            write!(f, " (node {node})")?;
        }
        Ok(())
    }
}

/// A fault (SPEC.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Kind.
    pub kind: FaultKind,
    /// The faulting instruction.
    pub at: InstrRef,
    /// Memory, range or value involved.
    pub detail: String,
}

/// A data race (SPEC.md §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceReport {
    /// The earlier access.
    pub first: InstrRef,
    /// Whether the earlier access wrote.
    pub first_writes: bool,
    /// The later access.
    pub second: InstrRef,
    /// Whether the later access wrote.
    pub second_writes: bool,
    /// Memory.
    pub mem: Mem,
    /// First conflicting byte range.
    pub range: (u64, u64),
}

/// A deadlock (SPEC.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    /// Each blocked engine's head instruction and what it waits for.
    pub blocked: Vec<(InstrRef, String)>,
    /// Cycle at which progress stopped.
    pub cycle: u64,
}

/// Why a run did not produce results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// An instruction faulted.
    #[error("fault: {} at {}: {}", .0.kind.name(), .0.at, .0.detail)]
    Fault(Box<Fault>),
    /// Two engines accessed the same bytes without synchronization.
    #[error(
        "data race on {} bytes {:#x}..{:#x}: {} {} and {} {} are not ordered by semaphores",
        .0.mem, .0.range.0, .0.range.1,
        .0.first, if .0.first_writes { "writes" } else { "reads" },
        .0.second, if .0.second_writes { "writes" } else { "reads" }
    )]
    Race(Box<RaceReport>),
    /// No unit can make progress.
    #[error("deadlock at cycle {}: {}", .0.cycle, deadlock_text(.0))]
    Deadlock(Box<Deadlock>),
    /// The loadable or an input is not usable.
    #[error("{0}")]
    Input(String),
}

fn deadlock_text(d: &Deadlock) -> String {
    d.blocked
        .iter()
        .map(|(at, why)| format!("{at} {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
