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
                var,
                cmp,
                value,
                body,
            } => {
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
