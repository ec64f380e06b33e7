//! Happens-before tracking and race detection (SPEC.md §6.2).
//!
//! Each engine has a vector clock over the three engines. An engine's own
//! component counts its instructions; a `wait` joins the clocks carried by
//! the semaphore tokens it consumes, which carry their signaler's clock.
//! Access `x` (engine e, own clock c) happens before the current access of
//! engine f iff `vc_f[e] ≥ c`. Each engine keeps the accesses the others
//! have not yet caught up with; every new access is checked against the
//! other engines' lists, which the pruning keeps short in pipelined code.

use std::collections::VecDeque;

use crate::exec::Access;

/// Number of engines with queues.
pub const ENGINES: usize = 3;

/// A vector clock over the DMA, MXU and VPU.
pub type Vc = [u64; ENGINES];

/// Joins `other` into `vc`.
pub fn join(vc: &mut Vc, other: &Vc) {
    for (a, b) in vc.iter_mut().zip(other) {
        *a = (*a).max(*b);
    }
}

/// The accesses of one executed instruction.
#[derive(Debug, Clone)]
struct Record {
    clock: u64,
    pc: u32,
    accesses: Vec<Access>,
}

/// One side of a race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceSide {
    /// Engine index (0 DMA, 1 MXU, 2 VPU).
    pub engine: usize,
    /// Instruction index.
    pub pc: u32,
    /// Whether this side wrote.
    pub write: bool,
}

/// Two unordered conflicting accesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Race {
    /// The access that happened first in the simulated run.
    pub first: RaceSide,
    /// The access that happened second.
    pub second: RaceSide,
    /// Memory.
    pub mem: tessera_isa::Mem,
    /// First overlapping byte range.
    pub range: (u64, u64),
}

/// The race detector's state.
#[derive(Debug, Default)]
pub struct Detector {
    lists: [VecDeque<Record>; ENGINES],
    /// Most records kept at once, for statistics.
    pub peak_records: usize,
}

impl Detector {
    /// Checks the accesses of instruction `pc` on `engine` (whose clock is
    /// `vc`) against every unordered access of the other engines, then
    /// records them.
    pub fn check_and_record(
        &mut self,
        engine: usize,
        vc: &Vc,
        pc: u32,
        accesses: Vec<Access>,
    ) -> Result<(), Race> {
        for (other, list) in self.lists.iter().enumerate() {
            if other == engine {
                continue;
            }
            // Records are in clock order: the unordered ones are at the back.
            let first_unordered = list.partition_point(|r| r.clock <= vc[other]);
            for record in list.iter().skip(first_unordered) {
                for old in &record.accesses {
                    for new in &accesses {
                        if !(old.write || new.write) {
                            continue;
                        }
                        if let Some(range) = old.pattern.overlap(&new.pattern) {
                            return Err(Race {
                                first: RaceSide {
                                    engine: other,
                                    pc: record.pc,
                                    write: old.write,
                                },
                                second: RaceSide {
                                    engine,
                                    pc,
                                    write: new.write,
                                },
                                mem: new.pattern.mem,
                                range,
                            });
                        }
                    }
                }
            }
        }
        if !accesses.is_empty() {
            self.lists[engine].push_back(Record {
                clock: vc[engine],
                pc,
                accesses,
            });
        }
        Ok(())
    }

    /// Forgets accesses every other engine is already ordered after.
    pub fn prune(&mut self, clocks: &[Vc; ENGINES]) {
        let mut total = 0;
        for (engine, list) in self.lists.iter_mut().enumerate() {
            let horizon = (0..ENGINES)
                .filter(|&f| f != engine)
                .map(|f| clocks[f][engine])
                .min()
                .unwrap_or(u64::MAX);
            while list.front().is_some_and(|r| r.clock <= horizon) {
                list.pop_front();
            }
            total += list.len();
        }
        self.peak_records = self.peak_records.max(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Pattern;
    use tessera_isa::Mem;

    fn write(lo: u64, len: u64) -> Access {
        Access {
            pattern: Pattern::contiguous(Mem::Spm, lo, len),
            write: true,
        }
    }

    #[test]
    fn unordered_overlapping_writes_race() {
        let mut d = Detector::default();
        d.check_and_record(0, &[1, 0, 0], 3, vec![write(0, 16)])
            .expect("first");
        let race = d
            .check_and_record(2, &[0, 0, 1], 9, vec![write(8, 16)])
            .expect_err("race");
        assert_eq!(race.range, (8, 16));
        assert_eq!((race.first.pc, race.second.pc), (3, 9));
    }

    #[test]
    fn ordered_accesses_do_not_race() {
        let mut d = Detector::default();
        d.check_and_record(0, &[1, 0, 0], 3, vec![write(0, 16)])
            .expect("first");
        // The VPU has joined the DMA's clock 1 (it waited on a DMA signal).
        d.check_and_record(2, &[1, 0, 1], 9, vec![write(8, 16)])
            .expect("ordered");
        d.prune(&[[1, 0, 0], [1, 0, 0], [1, 0, 1]]);
        assert!(d.lists[0].is_empty());
    }
}
