//! Einsum with one or two operands, lowered to what the NPU runs: axes
//! summed away with `reduce_sum`, then for two operands one batched MatMul
//! (batch axes, free axes of each side, contracted axes, each group
//! flattened by transposes and reshapes), then a transpose into the output
//! order. `...` stands for the leading axes an operand's letters leave.
//! Repeated letters within one operand (diagonals) and more than two
//! operands are refused.

use crate::graph::{NodeId, Op, ReduceKind};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

/// An operand's letters after `...` is expanded (`'0'…` for its axes).
fn expand_ellipsis(
    term: &str,
    rank: usize,
    ellipsis_rank: &mut Option<usize>,
) -> ConvertResult<Vec<char>> {
    let letters: Vec<char> = term.chars().filter(|c| *c != '.').collect();
    // Dots only as one `...`: a stray `.` would misplace the broadcast axes.
    let dots = term.chars().filter(|c| *c == '.').count();
    let one_ellipsis = dots == 0 || (dots == 3 && term.contains("..."));
    if !one_ellipsis || !letters.iter().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("bad einsum term `{term}`").into());
    }
    if !term.contains("...") {
        if letters.len() != rank {
            return Err(format!("term `{term}` for an operand of rank {rank}").into());
        }
        return Ok(letters);
    }
    let covered = rank
        .checked_sub(letters.len())
        .ok_or_else(|| format!("term `{term}` for an operand of rank {rank}"))?;
    if ellipsis_rank.is_some_and(|r| r != covered) {
        return Err("`...` covers different ranks in different operands".into());
    }
    *ellipsis_rank = Some(covered);
    let at = term.find("...").unwrap_or(0);
    let before = term[..at].chars().count();
    let mut out: Vec<char> = letters[..before].to_vec();
    // Broadcast axes are named by digits, right-aligned.
    out.extend((0..covered).map(|i| char::from(b'0' + (i as u8))));
    out.extend_from_slice(&letters[before..]);
    Ok(out)
}

/// Reduces away the axes of `x` (named `names`) whose letter is not in
/// `keep`; returns the new node and its names.
fn sum_out(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    names: &[char],
    keep: &dyn Fn(char) -> bool,
) -> ConvertResult<(NodeId, Vec<char>)> {
    let axes: Vec<usize> = (0..names.len()).filter(|&i| !keep(names[i])).collect();
    if axes.is_empty() {
        return Ok((x, names.to_vec()));
    }
    let kept = names.iter().copied().filter(|&c| keep(c)).collect();
    let op = Op::Reduce {
        kind: ReduceKind::Sum,
        axes,
        keep_dims: false,
    };
    Ok((ctx.add(part, op, &[x])?, kept))
}

/// Transposes `x` (named `names`) into the order of `order` (no node if
/// already so).
fn arrange(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    names: &[char],
    order: &[char],
) -> ConvertResult<NodeId> {
    let perm: Vec<usize> = order
        .iter()
        .map(|c| {
            names
                .iter()
                .position(|n| n == c)
                .ok_or("internal: einsum letter")
        })
        .collect::<Result<_, _>>()?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x);
    }
    ctx.add(part, Op::Transpose { perm }, &[x])
}

pub(super) fn einsum(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let equation: String = ctx
        .attr_string("equation")?
        .ok_or("attribute `equation` is required")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let count = ctx.input_count();
    if !(1..=2).contains(&count) {
        return Err(format!("Einsum with {count} operands (1 or 2 are supported)").into());
    }
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (equation.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != count {
        return Err(format!(
            "equation `{equation}` has {} terms for {count} operands",
            terms.len()
        )
        .into());
    }
    let operands: Vec<NodeId> = (0..count).map(|i| ctx.input(i)).collect::<Result<_, _>>()?;
    let mut ellipsis = None;
    let mut names = Vec::with_capacity(count);
    for (term, &x) in terms.iter().zip(&operands) {
        let letters = expand_ellipsis(term, ctx.ty(x).rank(), &mut ellipsis)?;
        let mut seen = letters.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(
                format!("a letter repeats in `{term}` (diagonals are not supported)").into(),
            );
        }
        names.push(letters);
    }
    let output: Vec<char> = match rhs {
        Some(r) => {
            let covered = if r.contains("...") {
                ellipsis.unwrap_or(0)
            } else {
                0
            };
            let rank = r.chars().filter(|c| *c != '.').count() + covered;
            expand_ellipsis(&r, rank, &mut None)?
        }
        None => {
            // Implicit output: the broadcast axes, then every letter that
            // appears once, in alphabetical order.
            let all: Vec<char> = names.iter().flatten().copied().collect();
            let mut out: Vec<char> = (0..ellipsis.unwrap_or(0))
                .map(|i| char::from(b'0' + (i as u8)))
                .collect();
            let mut letters: Vec<char> = all
                .iter()
                .copied()
                .filter(|c| c.is_ascii_alphabetic() && all.iter().filter(|d| *d == c).count() == 1)
                .collect();
            letters.sort_unstable();
            out.extend(letters);
            out
        }
    };
    // Sizes per letter must agree.
    let mut sizes: Vec<(char, usize)> = Vec::new();
    for (letters, &x) in names.iter().zip(&operands) {
        for (c, &d) in letters.iter().zip(&ctx.ty(x).shape) {
            match sizes.iter().find(|(l, _)| l == c) {
                Some(&(_, s)) if s != d => {
                    return Err(format!("axis `{c}` is {s} in one operand and {d} in another (broadcasting is not supported)").into())
                }
                Some(_) => {}
                None => sizes.push((*c, d)),
            }
        }
    }
    if let Some(c) = output.iter().find(|c| !sizes.iter().any(|(l, _)| l == *c)) {
        return Err(format!("output axis `{c}` is in no operand").into());
    }
    let size = |c: char| sizes.iter().find(|(l, _)| *l == c).map_or(1, |&(_, s)| s);
    let in_output = |c: char| output.contains(&c);
    if count == 1 {
        let (x, n) = sum_out(ctx, "sum", operands[0], &names[0], &in_output)?;
        return one(arrange(ctx, "einsum", x, &n, &output)?);
    }
    // Letters only in one operand and not in the output are summed first.
    let (a_names, b_names) = (names[0].clone(), names[1].clone());
    let (a, a_names) = sum_out(ctx, "sum_a", operands[0], &a_names, &|c| {
        in_output(c) || b_names.contains(&c)
    })?;
    let (b, b_names) = sum_out(ctx, "sum_b", operands[1], &b_names, &|c| {
        in_output(c) || a_names.contains(&c)
    })?;
    let batch: Vec<char> = a_names
        .iter()
        .copied()
        .filter(|c| b_names.contains(c) && in_output(*c))
        .collect();
    let contract: Vec<char> = a_names
        .iter()
        .copied()
        .filter(|c| b_names.contains(c) && !in_output(*c))
        .collect();
    let left: Vec<char> = a_names
        .iter()
        .copied()
        .filter(|c| !b_names.contains(c))
        .collect();
    let right: Vec<char> = b_names
        .iter()
        .copied()
        .filter(|c| !a_names.contains(c))
        .collect();
    let product = |letters: &[char]| letters.iter().map(|&c| size(c)).product::<usize>();
    let (nb, nl, nk, nr) = (
        product(&batch),
        product(&left),
        product(&contract),
        product(&right),
    );
    let a_order: Vec<char> = [batch.clone(), left.clone(), contract.clone()].concat();
    let b_order: Vec<char> = [batch.clone(), contract.clone(), right.clone()].concat();
    let a = arrange(ctx, "arrange_a", a, &a_names, &a_order)?;
    let b = arrange(ctx, "arrange_b", b, &b_names, &b_order)?;
    let a = ctx.reshape("flat_a", a, vec![nb, nl, nk])?;
    let b = ctx.reshape("flat_b", b, vec![nb, nk, nr])?;
    let product_node = ctx.add("matmul", Op::MatMul, &[a, b])?;
    let result_names: Vec<char> = [batch.clone(), left.clone(), right.clone()].concat();
    let shape: Vec<usize> = result_names.iter().map(|&c| size(c)).collect();
    let unflat = ctx.reshape("unflat", product_node, shape)?;
    one(arrange(ctx, "einsum", unflat, &result_names, &output)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::frontend::testutil::*;

    /// Einsum by the definition: every assignment of the letters, summed.
    fn reference(equation: &str, operands: &[(Vec<usize>, Vec<f32>)]) -> (Vec<usize>, Vec<f32>) {
        let (lhs, out) = equation.split_once("->").expect("explicit");
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        let out: Vec<char> = out.chars().collect();
        let mut size = BTreeMap::new();
        for (t, (shape, _)) in terms.iter().zip(operands) {
            for (c, &d) in t.iter().zip(shape) {
                size.insert(*c, d);
            }
        }
        let letters: Vec<char> = size.keys().copied().collect();
        let out_shape: Vec<usize> = out.iter().map(|c| size[c]).collect();
        let mut result = vec![0.0f32; out_shape.iter().product()];
        let total: usize = letters.iter().map(|c| size[c]).product();
        for flat in 0..total {
            let mut rest = flat;
            let mut at = BTreeMap::new();
            for c in letters.iter().rev() {
                at.insert(*c, rest % size[c]);
                rest /= size[c];
            }
            let index = |t: &[char], shape: &[usize]| {
                t.iter().zip(shape).fold(0, |acc, (c, &d)| acc * d + at[c])
            };
            let mut product = 1.0;
            for (t, (shape, data)) in terms.iter().zip(operands) {
                product *= data[index(t, shape)];
            }
            result[index(&out, &out_shape)] += product;
        }
        (out_shape, result)
    }

    #[test]
    fn einsum_matches_its_definition() {
        let cases: &[(&str, &[&[usize]])] = &[
            ("ij,jk->ik", &[&[2, 3], &[3, 4]]),
            ("bij,bjk->bik", &[&[2, 2, 3], &[2, 3, 2]]),
            ("bhqd,bhkd->bhqk", &[&[1, 2, 3, 4], &[1, 2, 5, 4]]),
            ("ij,kj->ik", &[&[2, 3], &[4, 3]]),
            ("i,j->ij", &[&[3], &[2]]),
            ("i,i->", &[&[4], &[4]]),
            ("ij,jk->k", &[&[2, 3], &[3, 2]]),
            ("ij->ji", &[&[2, 3]]),
            ("ijk->ki", &[&[2, 3, 2]]),
            ("ij->", &[&[2, 3]]),
        ];
        for (equation, shapes) in cases {
            let operands: Vec<(Vec<usize>, Vec<f32>)> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let n: usize = s.iter().product();
                    let data = (0..n)
                        .map(|v| ((v * 7 + k * 3) % 11) as f32 - 5.0)
                        .collect();
                    (s.to_vec(), data)
                })
                .collect();
            let names = ["a", "b"];
            let inputs: Vec<(&str, crate::tensor::Tensor)> = operands
                .iter()
                .zip(names)
                .map(|((s, d), n)| (n, f(s, d)))
                .collect();
            let got = run_node(
                "Einsum",
                12,
                &inputs,
                &["y"],
                vec![("equation", A::S(equation))],
            );
            let (shape, want) = reference(equation, &operands);
            assert_close(&got[0], &shape, &want);
        }
    }

    #[test]
    fn implicit_output_and_ellipsis() {
        let a = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let implicit = run_node(
            "Einsum",
            12,
            &[("a", a.clone()), ("b", b.clone())],
            &["y"],
            vec![("equation", A::S("ij,jk"))],
        );
        let explicit = run_node(
            "Einsum",
            12,
            &[("a", a), ("b", b)],
            &["y"],
            vec![("equation", A::S("...j,jk->...k"))],
        );
        assert_close(&implicit[0], &[2, 2], &[4., 5., 10., 11.]);
        assert_close(&explicit[0], &[2, 2], &[4., 5., 10., 11.]);
    }

    #[test]
    fn diagonals_are_refused_naming_the_node() {
        let bytes = model(
            vec![node(
                "Einsum",
                &["a"],
                &["y"],
                vec![("equation", A::S("ii->i"))],
            )],
            &[("a", &f(&[2, 2], &[1., 2., 3., 4.]))],
            &[],
            &["y"],
            12,
        );
        let err = import(&bytes).expect_err("a diagonal").to_string();
        assert!(
            err.contains("Einsum_node") && err.contains("diagonals"),
            "{err}"
        );
    }
}
