//! The MXU's inner loop: `C += A · W` in the spec's accumulation order.
//!
//! SPEC.md §4.4 defines each output as a sequential sum over `k` of products
//! rounded to fp32 (no fused multiply-add). Computing `c[j] += a * w[j]`
//! for `k = 0, 1, …` in turn, across a whole row `j`, is exactly that order
//! and vectorizes over `j`; Rust never contracts `a * w + c` into an FMA, so
//! the bits are the spec's on every host. Rows are independent, so large
//! blocks split across threads without changing any result.
//!
//! The loop is compiled three times — baseline, AVX2 and AVX-512 — and the
//! widest the host supports is picked at run time. Vector width changes how
//! many `j` are done at once, never the order of operations on one output,
//! so all three give identical bits (a test checks them against the naive
//! order).

// The only unsafe code: calling a `#[target_feature]` function, which is
// sound because the feature was detected on this CPU just before.
#![allow(unsafe_code)]

/// Rows per thread chunk; below this the work stays on one thread.
const ROWS_PER_TASK: usize = 16;
/// Minimum MACs in one call before threads are used.
const PARALLEL_MACS: usize = 1 << 20;

/// `c[i][j] += Σ_kk a[i][kk] · w[kk][j]` for i < m, j < n, summing `kk` in
/// increasing order, each product and sum rounded to fp32. `a` is m×k, `w`
/// k×n, `c` m×n, all row-major.
pub fn gemm_accumulate(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    if m * k * n >= PARALLEL_MACS && m >= 2 * ROWS_PER_TASK && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        c.par_chunks_mut(ROWS_PER_TASK * n)
            .zip(a.par_chunks(ROWS_PER_TASK * k))
            .for_each(|(c_block, a_block)| {
                let rows = c_block.len() / n;
                rows_kernel(a_block, w, c_block, rows, k, n);
            });
    } else {
        rows_kernel(a, w, c, m, k, n);
    }
}

/// Dispatches to the widest vector unit the host has.
fn rows_kernel(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { rows_avx512(a, w, c, m, k, n) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked above).
            return unsafe { rows_avx2(a, w, c, m, k, n) };
        }
    }
    rows_portable(a, w, c, m, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn rows_avx512(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    rows_portable(a, w, c, m, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    rows_portable(a, w, c, m, k, n)
}

/// Four rows at a time, so each weight row is loaded once per four rows.
#[inline(always)]
fn rows_portable(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    let mut i = 0;
    while i + 4 <= m {
        let (c0, rest) = c[i * n..].split_at_mut(n);
        let (c1, rest) = rest.split_at_mut(n);
        let (c2, rest) = rest.split_at_mut(n);
        let c3 = &mut rest[..n];
        let a0 = &a[i * k..(i + 1) * k];
        let a1 = &a[(i + 1) * k..(i + 2) * k];
        let a2 = &a[(i + 2) * k..(i + 3) * k];
        let a3 = &a[(i + 3) * k..(i + 4) * k];
        for kk in 0..k {
            let w_row = &w[kk * n..(kk + 1) * n];
            let (x0, x1, x2, x3) = (a0[kk], a1[kk], a2[kk], a3[kk]);
            for j in 0..n {
                let wv = w_row[j];
                c0[j] += x0 * wv;
                c1[j] += x1 * wv;
                c2[j] += x2 * wv;
                c3[j] += x3 * wv;
            }
        }
        i += 4;
    }
    while i < m {
        let c_row = &mut c[i * n..(i + 1) * n];
        let a_row = &a[i * k..(i + 1) * k];
        for kk in 0..k {
            let w_row = &w[kk * n..(kk + 1) * n];
            let x = a_row[kk];
            for j in 0..n {
                c_row[j] += x * w_row[j];
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's order, one output at a time.
    fn naive(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
        for i in 0..m {
            for j in 0..n {
                let mut acc = c[i * n + j];
                for kk in 0..k {
                    let p = a[i * k + kk] * w[kk * n + j];
                    acc += p;
                }
                c[i * n + j] = acc;
            }
        }
    }

    #[test]
    fn blocked_kernel_is_bit_identical_to_the_spec_order() {
        let (m, k, n) = (70, 37, 29);
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let init: Vec<f32> = (0..m * n).map(|_| rnd()).collect();
        let mut fast = init.clone();
        let mut slow = init;
        gemm_accumulate(&a, &w, &mut fast, m, k, n);
        naive(&a, &w, &mut slow, m, k, n);
        let same = fast
            .iter()
            .zip(&slow)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same);
    }
}
