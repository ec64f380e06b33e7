//! A static check that a kernel's synchronization is balanced: on every
//! channel, the tokens signaled (times loop trip counts) equal the tokens
//! waited for. Unbalanced kernels would leave tokens behind that a later
//! kernel's wait could wrongly consume.

use std::collections::{BTreeMap, HashMap};

use crate::kernel::{Chan, Cmp, Kernel, Stmt, Var};

fn count(
    body: &[Stmt],
    times: u64,
    trips: &mut HashMap<Var, u64>,
    totals: &mut BTreeMap<Chan, (u64, u64)>,
) -> Result<(), String> {
    for s in body {
        match s {
            Stmt::For {
                var,
                count: n,
                body,
            } => {
                trips.insert(*var, *n);
                count(body, times * n, trips, totals)?;
                trips.remove(var);
            }
            Stmt::If {
                lhs,
                cmp,
                value,
                body,
            } => {
                let var = match lhs.terms.as_slice() {
                    [(v, 1)] if lhs.constant == 0 => v,
                    _ => {
                        // Taken a number of times this check does not
                        // compute: the body must balance by itself.
                        let mut own = BTreeMap::new();
                        let all: u64 = trips.values().product();
                        count(body, all, trips, &mut own)?;
                        if let Some((chan, (s, w))) = own.into_iter().find(|(_, (s, w))| s != w) {
                            return Err(format!(
                                "`if {lhs}` guards channel {chan} unbalanced: {s} tokens signaled, {w} waited for"
                            ));
                        }
                        continue;
                    }
                };
                let n = *trips
                    .get(var)
                    .ok_or_else(|| format!("`if` on v{}, which is not an enclosing loop", var.0))?;
                let v = (*value).clamp(0, n as i64) as u64;
                let taken = match cmp {
                    Cmp::Eq => u64::from(*value >= 0 && (*value as u64) < n),
                    Cmp::Ne => n - u64::from(*value >= 0 && (*value as u64) < n),
                    Cmp::Lt => v,
                    Cmp::Ge => n - v,
                };
                count(body, times / n.max(1) * taken, trips, totals)?;
            }
            Stmt::Signal(c, n) => totals.entry(*c).or_default().0 += times * u64::from(*n),
            Stmt::Wait(c, n) => totals.entry(*c).or_default().1 += times * u64::from(*n),
            _ => {}
        }
    }
    Ok(())
}

/// Checks every channel of `kernel` signals as many tokens as it waits for.
pub fn check_balance(kernel: &Kernel) -> Result<(), String> {
    let mut totals = BTreeMap::new();
    count(&kernel.body, 1, &mut HashMap::new(), &mut totals)?;
    for (chan, (signaled, waited)) in totals {
        if signaled != waited {
            return Err(format!(
                "channel {chan} is unbalanced: {signaled} tokens signaled, {waited} waited for"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tessera_isa::Engine;

    use super::*;
    use crate::kernel::Affine;

    fn kernel(body: Vec<Stmt>) -> Kernel {
        Kernel {
            node: "k".into(),
            summary: String::new(),
            buffers: vec![],
            body,
            rotators: vec![],
            macs: 0,
            compulsory_dram_bytes: 0,
        }
    }

    fn looped(inner: Vec<Stmt>) -> Vec<Stmt> {
        let (i, j) = (Var(0), Var(1));
        vec![Stmt::For {
            var: i,
            count: 4,
            body: vec![Stmt::For {
                var: j,
                count: 3,
                body: inner,
            }],
        }]
    }

    #[test]
    fn a_single_variable_condition_is_counted() {
        let chan = Chan::data(Engine::Dma, Engine::Vpu);
        // Signaled on iterations j >= 1 (2 of 3), waited on all 3: unbalanced.
        let body = looped(vec![
            Stmt::If {
                lhs: Affine::var(0, Var(1), 1),
                cmp: Cmp::Ge,
                value: 1,
                body: vec![Stmt::Signal(chan, 1)],
            },
            Stmt::Wait(chan, 1),
        ]);
        let err = check_balance(&kernel(body)).expect_err("unbalanced");
        assert!(err.contains("8 tokens signaled, 12 waited for"), "{err}");
    }

    #[test]
    fn a_condition_on_several_variables_must_guard_a_balanced_body() {
        let chan = Chan::data(Engine::Dma, Engine::Vpu);
        let cond = Affine::var(0, Var(1), 2).plus(Var(0), -1);
        let guarded = |body| {
            looped(vec![Stmt::If {
                lhs: cond.clone(),
                cmp: Cmp::Lt,
                value: 2,
                body,
            }])
        };
        check_balance(&kernel(guarded(vec![
            Stmt::Signal(chan, 1),
            Stmt::Wait(chan, 1),
        ])))
        .expect("balanced inside");
        let err = check_balance(&kernel(guarded(vec![Stmt::Signal(chan, 1)])))
            .expect_err("unbalanced inside");
        assert!(err.contains("if 2*v1 - v0"), "{err}");
    }
}
