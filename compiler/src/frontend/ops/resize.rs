//! Resize with `nearest`, `linear` and `cubic` modes, separable: for
//! each resized axis, a gather of constant source indices (for linear two,
//! for cubic four, weighted by constant coefficients), so it runs as DMA row
//! gathers and VPU multiply-adds. Scales or sizes must be known at compile
//! time. Every coordinate transformation mode (`tf_crop_and_resize` with a
//! compile-time region of interest and `extrapolation_value`), every
//! nearest mode, `keep_aspect_ratio_policy`, `antialias` (kernels
//! stretched by 1/scale when downsampling, as ONNX's reference does).

use crate::graph::{BinaryOp, NodeId, Op};
use crate::tensor::{DType, Tensor};

use super::super::ctx::{built_constant, check_size, ConvertResult, Ctx};
use super::one;

/// How an output coordinate maps to an input one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transform {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// The input coordinate of output index `i` on an axis of `n` resized to
/// `m` with scale `s`.
fn source(t: Transform, i: usize, n: usize, m: usize, s: f64) -> f64 {
    let i = i as f64;
    match t {
        Transform::HalfPixel => (i + 0.5) / s - 0.5,
        Transform::HalfPixelSymmetric => {
            let adjustment = m as f64 / (s * n as f64);
            let center = n as f64 / 2.0;
            center * (1.0 - adjustment) + (i + 0.5) / s - 0.5
        }
        Transform::PytorchHalfPixel if m > 1 => (i + 0.5) / s - 0.5,
        Transform::PytorchHalfPixel => 0.0,
        // The resized length is n·s, before rounding (ONNX).
        Transform::AlignCorners if m > 1 => i * (n as f64 - 1.0) / (n as f64 * s - 1.0),
        Transform::AlignCorners => 0.0,
        Transform::Asymmetric => i / s,
    }
}

/// The nearest input index of coordinate `x` in mode `mode`.
fn nearest(mode: &str, x: f64, n: usize) -> ConvertResult<usize> {
    let halfway = (x - x.floor() - 0.5).abs() < 1e-9;
    let r = match mode {
        "round_prefer_floor" if halfway => x.floor(),
        "round_prefer_ceil" if halfway => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        other => return Err(format!("unknown nearest_mode `{other}`").into()),
    };
    Ok(r.clamp(0.0, n as f64 - 1.0) as usize)
}

fn indices(ctx: &mut Ctx, part: &str, values: Vec<i64>) -> ConvertResult<NodeId> {
    let n = values.len();
    let t = Tensor::from_i64_as(DType::I64, vec![n], values).ok_or("indices")?;
    ctx.constant(part, t)
}

/// The input coordinate of output `i` under `tf_crop_and_resize` with
/// region `(start, end)`; `None` outside the input (extrapolated).
fn crop_source((start, end): (f64, f64), i: usize, n: usize, m: usize) -> Option<f64> {
    let span = (n - 1) as f64;
    let x = if m == 1 {
        (end - start) * span / 2.0
    } else {
        i as f64 * (end - start) * span / (m - 1) as f64
    } + start * span;
    (0.0..=span).contains(&x).then_some(x)
}

/// An interpolation kernel: its coefficients for the fractional part of a
/// coordinate, as ONNX's reference defines them (antialiased kernels are
/// stretched by 1/scale when downsampling and normalized).
enum Kernel {
    Nearest(String),
    Linear { scale: f64 },
    Cubic { scale: f64, a: f64, antialias: bool },
}

/// One output element along an axis: input positions and their weights,
/// or the extrapolation value.
enum Taps {
    At(Vec<(i64, f64)>),
    Outside,
}

impl Kernel {
    fn new(
        mode: &str,
        nearest_mode: &str,
        antialias: bool,
        scale: f64,
        a: f64,
    ) -> ConvertResult<Kernel> {
        let scale = if antialias { scale.min(1.0) } else { 1.0 };
        Ok(match mode {
            "nearest" => Kernel::Nearest(nearest_mode.to_string()),
            "linear" => Kernel::Linear { scale },
            "cubic" => Kernel::Cubic {
                scale,
                a,
                antialias,
            },
            other => return Err(format!("Resize mode `{other}` is not supported").into()),
        })
    }

    fn coefficients(&self, ratio: f64) -> Vec<f64> {
        let normalized = |c: Vec<f64>| {
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|v| v / sum).collect()
        };
        match *self {
            Kernel::Nearest(_) => vec![1.0],
            Kernel::Linear { scale } => {
                let start = (-1.0 / scale).floor() as i64 + 1;
                let footprint = 2 - 2 * start;
                normalized(
                    (start..start + footprint)
                        .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                        .collect(),
                )
            }
            Kernel::Cubic {
                scale,
                a,
                antialias,
            } => {
                let coeff = |x: f64| {
                    let x = x.abs();
                    if x <= 1.0 {
                        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                    } else if x < 2.0 {
                        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / scale).floor() as i64 + 1;
                let c: Vec<f64> = (start..2 - start)
                    .map(|i| coeff(scale * (i as f64 - ratio)))
                    .collect();
                if antialias {
                    normalized(c)
                } else {
                    c
                }
            }
        }
    }

    /// The taps of coordinate `x` on an axis of `n`: the `len` positions
    /// nearest `x` (the left one preferred), clamped to the axis (edge
    /// values), weights zeroed outside it and renormalized when
    /// `exclude_outside`.
    fn taps(&self, x: f64, n: usize, exclude_outside: bool) -> ConvertResult<Taps> {
        if let Kernel::Nearest(mode) = self {
            return Ok(Taps::At(vec![(nearest(mode, x, n)? as i64, 1.0)]));
        }
        let floor = x.floor();
        let (ratio, base) = if x == floor {
            (1.0, floor as i64 - 1)
        } else {
            (x - floor, floor as i64)
        };
        let mut coeffs = self.coefficients(ratio);
        let len = coeffs.len() as i64;
        let first = base - len / 2 + 1;
        if exclude_outside {
            for (k, c) in coeffs.iter_mut().enumerate() {
                let at = first + k as i64;
                if at < 0 || at >= n as i64 {
                    *c = 0.0;
                }
            }
            let sum: f64 = coeffs.iter().sum();
            if sum != 0.0 {
                coeffs.iter_mut().for_each(|c| *c /= sum);
            }
        }
        Ok(Taps::At(
            coeffs
                .into_iter()
                .enumerate()
                .map(|(k, c)| ((first + k as i64).clamp(0, n as i64 - 1), c))
                .collect(),
        ))
    }
}

/// `out[i] = Σₖ w[i][k] · x[idx[i][k]]` along `axis` (plus the
/// extrapolation value where output `i` lies outside the input): one
/// gather and one multiply per tap position, taps padded with weight 0.
fn weighted_taps(
    ctx: &mut Ctx,
    x: NodeId,
    axis: usize,
    rank: usize,
    taps: &[Taps],
    extrapolation: f64,
) -> ConvertResult<NodeId> {
    let dtype = ctx.ty(x).dtype;
    let m = taps.len();
    let width = taps
        .iter()
        .map(|t| match t {
            Taps::At(v) => v.len(),
            Taps::Outside => 0,
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let mut wshape = vec![1; rank];
    wshape[axis] = m;
    let mut sum: Option<NodeId> = None;
    for k in 0..width {
        let (idx, w): (Vec<i64>, Vec<f32>) = taps
            .iter()
            .map(|t| match t {
                Taps::At(v) => v.get(k).map_or((0, 0.0), |&(i, w)| (i, w as f32)),
                Taps::Outside => (0, 0.0),
            })
            .unzip();
        let idx = indices(ctx, &format!("tap{k}_{axis}"), idx)?;
        let g = ctx.add(&format!("gather{k}_{axis}"), Op::Gather { axis }, &[x, idx])?;
        let w = Tensor::from_f32_as(dtype, wshape.clone(), w).ok_or("weights")?;
        let w = ctx.constant(&format!("weight{k}_{axis}"), w)?;
        let term = ctx.add(
            &format!("weighted{k}_{axis}"),
            Op::Binary(BinaryOp::Mul),
            &[g, w],
        )?;
        sum = Some(match sum {
            Some(prev) => ctx.add(
                &format!("sum{k}_{axis}"),
                Op::Binary(BinaryOp::Add),
                &[prev, term],
            )?,
            None => term,
        });
    }
    let mut y = sum.ok_or("internal: no taps")?;
    if taps.iter().any(|t| matches!(t, Taps::Outside)) {
        let fill: Vec<f32> = taps
            .iter()
            .map(|t| match t {
                Taps::Outside => extrapolation as f32,
                Taps::At(_) => 0.0,
            })
            .collect();
        let fill = Tensor::from_f32_as(dtype, wshape, fill).ok_or("extrapolation")?;
        let fill = ctx.constant(&format!("extrapolated{axis}"), fill)?;
        y = ctx.add(
            &format!("outside{axis}"),
            Op::Binary(BinaryOp::Add),
            &[y, fill],
        )?;
    }
    Ok(y)
}

pub(super) fn resize(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let mut x = ctx.input(0)?;
    let ty = ctx.ty(x);
    let rank = ty.rank();
    if !ty.dtype.is_float() {
        return Err(format!("Resize of {} is not supported (floats only)", ty.dtype).into());
    }
    let mode = ctx.attr_string("mode")?.unwrap_or_else(|| "nearest".into());
    let antialias = ctx.attr_int("antialias")?.unwrap_or(0) != 0 && mode != "nearest";
    let policy = ctx
        .attr_string("keep_aspect_ratio_policy")?
        .unwrap_or_else(|| "stretch".into());
    if !["stretch", "not_larger", "not_smaller"].contains(&policy.as_str()) {
        return Err(format!("unknown keep_aspect_ratio_policy `{policy}`").into());
    }
    let cubic_a = f64::from(ctx.attr_float("cubic_coeff_a")?.unwrap_or(-0.75));
    let exclude_outside = ctx.attr_int("exclude_outside")?.unwrap_or(0) != 0;
    let legacy = ctx.op_type() == "Upsample" || ctx.opset < 11;
    let ctm = ctx.attr_string("coordinate_transformation_mode")?;
    let crop = !legacy && ctm.as_deref() == Some("tf_crop_and_resize");
    let transform = if legacy || crop {
        Transform::Asymmetric
    } else {
        match ctm.as_deref().unwrap_or("half_pixel") {
            "half_pixel" => Transform::HalfPixel,
            "half_pixel_symmetric" => Transform::HalfPixelSymmetric,
            "pytorch_half_pixel" => Transform::PytorchHalfPixel,
            "align_corners" => Transform::AlignCorners,
            "asymmetric" => Transform::Asymmetric,
            other => {
                return Err(
                    format!("coordinate_transformation_mode `{other}` is not supported").into(),
                )
            }
        }
    };
    let nearest_mode = if legacy {
        "floor".to_string()
    } else {
        ctx.attr_string("nearest_mode")?
            .unwrap_or_else(|| "round_prefer_floor".into())
    };
    let axes: Vec<usize> = match ctx.attr_ints("axes")? {
        Some(a) => a
            .iter()
            .map(|&a| ctx.axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    // Scales (input 1 for opset 10 and Upsample, 2 after) or sizes (3).
    let (scales_at, sizes_at) = if legacy { (1, usize::MAX) } else { (2, 3) };
    let scales: Option<Vec<f64>> = match ctx.opt_value(scales_at)? {
        Some(t) if t.numel() > 0 => Some(t.to_f32_vec().into_iter().map(f64::from).collect()),
        _ => None,
    };
    let sizes = if sizes_at == usize::MAX {
        None
    } else {
        ctx.opt_ints_input(sizes_at)?.filter(|s| !s.is_empty())
    };
    let mut plan: Vec<(usize, usize, f64)> = Vec::new(); // (axis, out, scale)
    match (scales, sizes) {
        (_, Some(sizes)) => {
            if sizes.len() != axes.len() {
                return Err(format!("{} sizes for {} axes", sizes.len(), axes.len()).into());
            }
            let sizes: Vec<usize> = sizes
                .iter()
                .map(|&m| usize::try_from(m).map_err(|_| format!("size {m} is negative")))
                .collect::<Result<_, _>>()?;
            let ratios: Vec<f64> = axes
                .iter()
                .zip(&sizes)
                .map(|(&axis, &m)| m as f64 / ty.shape[axis].max(1) as f64)
                .collect();
            // not_larger / not_smaller: one scale for every axis, the
            // smallest or largest ratio; sizes rounded from it.
            let common = match policy.as_str() {
                "not_larger" => ratios.iter().copied().reduce(f64::min),
                "not_smaller" => ratios.iter().copied().reduce(f64::max),
                _ => None,
            };
            for ((&axis, &m), &ratio) in axes.iter().zip(&sizes).zip(&ratios) {
                match common {
                    Some(s) => {
                        let m = (s * ty.shape[axis] as f64).round() as usize;
                        plan.push((axis, m, s));
                    }
                    None => plan.push((axis, m, ratio)),
                }
            }
        }
        (Some(scales), None) => {
            if scales.len() != axes.len() {
                return Err(format!("{} scales for {} axes", scales.len(), axes.len()).into());
            }
            for (&axis, &s) in axes.iter().zip(&scales) {
                if s <= 0.0 || !s.is_finite() {
                    return Err(format!("scale {s} is not positive").into());
                }
                let m = (ty.shape[axis] as f64 * s).floor() as usize;
                plan.push((axis, m, s));
            }
        }
        (None, None) => return Err("Resize needs scales or sizes".into()),
    }
    let mut out_shape = ty.shape.clone();
    for &(axis, m, _) in &plan {
        out_shape[axis] = m;
        // Each resized axis gets index and weight constants of its length.
        built_constant("the resize taps", &[m])?;
    }
    check_size(&out_shape)?;
    // tf_crop_and_resize: the region of interest, [starts…, ends…] over
    // `axes`, as fractions of each axis.
    let roi: Option<Vec<f64>> = if crop {
        let r = ctx.value(1)?;
        let r: Vec<f64> = r.to_f32_vec().into_iter().map(f64::from).collect();
        if r.len() != 2 * axes.len() {
            return Err(format!("roi has {} values for {} axes", r.len(), axes.len()).into());
        }
        Some(r)
    } else {
        None
    };
    let extrapolation = f64::from(ctx.attr_float("extrapolation_value")?.unwrap_or(0.0));
    for (k, (axis, m, s)) in plan.into_iter().enumerate() {
        let n = ty.shape[axis];
        let region = roi.as_ref().map(|r| (r[k], r[axes.len() + k]));
        let whole = region.is_none_or(|(a, b)| a == 0.0 && b == 1.0);
        if m == n && (s - 1.0).abs() < 1e-12 && whole {
            continue;
        }
        if n == 0 || m == 0 {
            return Err("Resize of an empty axis".into());
        }
        if antialias || region.is_some() {
            let kind = Kernel::new(&mode, &nearest_mode, antialias, s, cubic_a)?;
            let taps: Vec<Taps> = (0..m)
                .map(|i| {
                    let c = match region {
                        Some(roi) => crop_source(roi, i, n, m),
                        None => Some(source(transform, i, n, m, s)),
                    };
                    match c {
                        Some(c) => kind.taps(c, n, exclude_outside),
                        None => Ok(Taps::Outside),
                    }
                })
                .collect::<ConvertResult<Vec<_>>>()?;
            x = weighted_taps(ctx, x, axis, rank, &taps, extrapolation)?;
            continue;
        }
        let coords: Vec<f64> = (0..m).map(|i| source(transform, i, n, m, s)).collect();
        match mode.as_str() {
            "nearest" => {
                let idx = coords
                    .iter()
                    .map(|&c| nearest(&nearest_mode, c, n).map(|v| v as i64))
                    .collect::<Result<Vec<_>, _>>()?;
                let idx = indices(ctx, &format!("index{axis}"), idx)?;
                x = ctx.add(&format!("nearest{axis}"), Op::Gather { axis }, &[x, idx])?;
            }
            "linear" => {
                let (mut lo, mut hi, mut w) = (Vec::new(), Vec::new(), Vec::new());
                for &c in &coords {
                    let c = c.clamp(0.0, n as f64 - 1.0);
                    let i0 = c.floor() as usize;
                    let i1 = (i0 + 1).min(n - 1);
                    lo.push(i0 as i64);
                    hi.push(i1 as i64);
                    w.push((c - i0 as f64) as f32);
                }
                let mut wshape = vec![1; rank];
                wshape[axis] = m;
                let w1: Vec<f32> = w.clone();
                let w0: Vec<f32> = w.iter().map(|v| 1.0 - v).collect();
                let lo = indices(ctx, &format!("low{axis}"), lo)?;
                let hi = indices(ctx, &format!("high{axis}"), hi)?;
                let a = ctx.add(&format!("gather_low{axis}"), Op::Gather { axis }, &[x, lo])?;
                let b = ctx.add(&format!("gather_high{axis}"), Op::Gather { axis }, &[x, hi])?;
                let w0 = Tensor::from_f32_as(ty.dtype, wshape.clone(), w0).ok_or("weights")?;
                let w1 = Tensor::from_f32_as(ty.dtype, wshape, w1).ok_or("weights")?;
                let w0 = ctx.constant(&format!("weight_low{axis}"), w0)?;
                let w1 = ctx.constant(&format!("weight_high{axis}"), w1)?;
                let a = ctx.add(
                    &format!("weighted_low{axis}"),
                    Op::Binary(BinaryOp::Mul),
                    &[a, w0],
                )?;
                let b = ctx.add(
                    &format!("weighted_high{axis}"),
                    Op::Binary(BinaryOp::Mul),
                    &[b, w1],
                )?;
                x = ctx.add(&format!("linear{axis}"), Op::Binary(BinaryOp::Add), &[a, b])?;
            }
            "cubic" => {
                let mut taps: [(Vec<i64>, Vec<f32>); 4] = Default::default();
                for &c in &coords {
                    let x0 = c.floor();
                    let t = c - x0;
                    let a = cubic_a;
                    let far = |d: f64| ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
                    let near = |d: f64| ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
                    let mut w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
                    let at: [i64; 4] = [-1, 0, 1, 2].map(|o| x0 as i64 + o);
                    if exclude_outside {
                        for (wk, &i) in w.iter_mut().zip(&at) {
                            if i < 0 || i >= n as i64 {
                                *wk = 0.0;
                            }
                        }
                        let sum: f64 = w.iter().sum();
                        if sum != 0.0 {
                            w.iter_mut().for_each(|v| *v /= sum);
                        }
                    }
                    for (k, tap) in taps.iter_mut().enumerate() {
                        tap.0.push(at[k].clamp(0, n as i64 - 1));
                        tap.1.push(w[k] as f32);
                    }
                }
                let mut wshape = vec![1; rank];
                wshape[axis] = m;
                let mut sum = None;
                for (k, (idx, w)) in taps.into_iter().enumerate() {
                    let idx = indices(ctx, &format!("tap{k}_{axis}"), idx)?;
                    let g =
                        ctx.add(&format!("gather{k}_{axis}"), Op::Gather { axis }, &[x, idx])?;
                    let w = Tensor::from_f32_as(ty.dtype, wshape.clone(), w).ok_or("weights")?;
                    let w = ctx.constant(&format!("weight{k}_{axis}"), w)?;
                    let term = ctx.add(
                        &format!("weighted{k}_{axis}"),
                        Op::Binary(BinaryOp::Mul),
                        &[g, w],
                    )?;
                    sum = Some(match sum {
                        Some(prev) => ctx.add(
                            &format!("cubic{k}_{axis}"),
                            Op::Binary(BinaryOp::Add),
                            &[prev, term],
                        )?,
                        None => term,
                    });
                }
                x = sum.ok_or("internal: no cubic taps")?;
            }
            other => return Err(format!("Resize mode `{other}` is not supported").into()),
        }
    }
    one(x)
}
