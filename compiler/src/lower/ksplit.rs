//! GEMMs whose rows of A do not fit SPM: split along K.
//!
//! The GEMM kernel keeps a block of A's rows resident, so one row (K
//! values and its buffers) must fit SPM. When it does not, the product is
//! computed as `C = act(Σᵢ A[:, Kᵢ] · B[Kᵢ, :] + bias)` over chunks `Kᵢ`
//! of K, each as wide as fits: one GEMM per chunk into an f32 partial
//! product in DRAM scratch (A's and B's chunks are strided views of the
//! operands, nothing is copied), then elementwise sums of the partials
//! with the bias and the activation. An integer GEMM's partials are
//! dequantized per column before they are summed (the sum is linear); an
//! int8 GEMM of A quantized on chip takes one scale per row of each chunk
//! (finer than one per row); an FP8 GEMM's chunks are whole scale blocks,
//! each reading its weight tiles' block scales in place. What does not
//! split: a requantized `qgemm` output (named with the sizes).

use tessera_isa::{BinFunc, MxuClass, Target};

use crate::kernel::Kernel;
use crate::tensor::DType;

use super::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use super::gemm::{choose_tiles, gemm, tile_dims, DramMat, GemmSpec};
use super::LowerError;

/// Operands one elementwise pass of the sum reads at most.
const SUM_FAN_IN: usize = 8;

/// The kernels of `spec`: one GEMM, or, when a row of A does not fit SPM,
/// the K-chunk GEMMs and their sum (scratch DRAM from `scratch`).
pub fn gemm_kernels(
    spec: &GemmSpec,
    target: &Target,
    scratch: &dyn Fn(u64) -> u64,
) -> Result<Vec<Kernel>, LowerError> {
    let why = match choose_tiles(spec, target) {
        Ok(_) => return Ok(vec![gemm(spec, target)?]),
        Err(LowerError::DoesNotFit(why)) => why,
        Err(e) => return Err(e),
    };
    let refuse = |what: &str| {
        Err(LowerError::DoesNotFit(format!(
            "{why}, and {what} is not split along K"
        )))
    };
    if spec.quant.as_ref().is_some_and(|q| q.out.is_some()) {
        return refuse("a requantized integer GEMM");
    }
    if spec.a_rows.is_some() {
        return refuse("a GEMM whose A rows are gathered");
    }
    let (tk, tn) = tile_dims(spec.k, spec.n, spec.mxu, target);
    // An FP8 GEMM's chunks are whole scale blocks (its tiles divide them),
    // each reading its tiles' block scales in place (stored K-major).
    let fp8 = spec.online.is_some() && spec.mxu.class() == MxuClass::Fp8;
    let unit = if fp8 {
        u64::from(target.mxu_scale_block).max(tk)
    } else {
        tk
    };
    let fits = |units: u64| choose_tiles(&chunk(spec, 0, units * unit, 0), target).is_ok();
    // The widest chunk, in whole weight tiles, that fits.
    let (mut lo, mut hi) = (0, spec.k.div_ceil(unit));
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return Err(LowerError::DoesNotFit(why));
    }
    let width = lo * unit;
    let scale_row = spec.n.div_ceil(tn) * 4;
    if fp8 && tile_dims(width, spec.n, spec.mxu, target).0 != tk {
        // The chunks' weight tiles must be the whole GEMM's, for their
        // block scales to be found in place.
        return refuse("an FP8 GEMM whose chunks would tile K differently");
    }
    let batch = spec.batch.max(1);
    let part_bytes = batch * spec.m * spec.n * 4;
    let mut kernels = Vec::new();
    let mut parts = Vec::new();
    for (i, k0) in (0..spec.k).step_by(width as usize).enumerate() {
        let at = scratch(part_bytes);
        let mut c = chunk(spec, k0, width.min(spec.k - k0), at);
        c.node = format!("{}.k{i}", spec.node);
        if let (true, Some(o)) = (fp8, c.online.as_mut()) {
            o.w_scales += k0 / tk * scale_row;
        }
        kernels.push(gemm(&c, target)?);
        parts.push(at);
    }
    // Sums of at most SUM_FAN_IN partials, until one pass (with the bias
    // and the activation) writes C.
    let shape = vec![batch as usize, spec.m as usize, spec.n as usize];
    let dense = |addr| EwOperand {
        addr,
        shape: shape.clone(),
        dtype: DType::F32,
        strides: None,
    };
    let sum_of = |n: usize| {
        (1..n).fold(Ew::Input(0), |acc, i| {
            Ew::Binary(BinFunc::Add, Box::new(acc), Box::new(Ew::Input(i)))
        })
    };
    let mut round = 0;
    while parts.len() + usize::from(spec.bias.is_some()) > SUM_FAN_IN {
        let mut next = Vec::new();
        for (g, group) in parts.chunks(SUM_FAN_IN).enumerate() {
            let at = scratch(part_bytes);
            kernels.push(elementwise(
                &EwSpec {
                    node: format!("{}.ksum{round}_{g}", spec.node),
                    operands: group.iter().map(|&p| dense(p)).collect(),
                    expr: sum_of(group.len()),
                    out: at,
                    shape: shape.clone(),
                    dtype: DType::F32,
                    cast_only: false,
                    out_strides: None,
                },
                target,
            )?);
            next.push(at);
        }
        parts = next;
        round += 1;
    }
    let mut operands: Vec<EwOperand> = parts.iter().map(|&p| dense(p)).collect();
    let mut expr = sum_of(parts.len());
    if let Some(bias) = spec.bias {
        operands.push(EwOperand {
            addr: bias,
            shape: vec![spec.n as usize],
            dtype: DType::F32,
            strides: None,
        });
        expr = Ew::Binary(
            BinFunc::Add,
            Box::new(expr),
            Box::new(Ew::Input(parts.len())),
        );
    }
    if let Some(act) = spec.act {
        expr = Ew::Unary(act, Box::new(expr));
    }
    let out_strides = [spec.out.batch_stride, spec.out.row_stride, 4].map(|s| (s / 4) as i64);
    let is_dense = out_strides[1] == spec.n as i64
        && (batch == 1 || out_strides[0] == (spec.m * spec.n) as i64);
    kernels.push(elementwise(
        &EwSpec {
            node: format!("{}.ksum", spec.node),
            operands,
            expr,
            out: spec.out.addr,
            shape,
            dtype: DType::F32,
            cast_only: false,
            out_strides: (!is_dense).then(|| out_strides.to_vec()),
        },
        target,
    )?);
    Ok(kernels)
}

/// The GEMM over columns `k0..k0 + width` of A (rows of B) into a dense
/// f32 partial product at `out`, without the bias or the activation.
fn chunk(spec: &GemmSpec, k0: u64, width: u64, out: u64) -> GemmSpec {
    let e = spec.mxu.a_type().size();
    let a_size = spec.a_size();
    let b_offset = if spec.b_trans {
        k0 * e
    } else {
        k0 * spec.b.row_stride
    };
    let batch = spec.batch.max(1);
    GemmSpec {
        node: spec.node.clone(),
        k: width,
        a: DramMat {
            addr: spec.a.addr + k0 * a_size,
            ..spec.a
        },
        b: DramMat {
            addr: spec.b.addr + b_offset,
            ..spec.b
        },
        bias: None,
        act: None,
        out: DramMat {
            addr: out,
            row_stride: spec.n * 4,
            batch_stride: if batch > 1 { spec.m * spec.n * 4 } else { 0 },
        },
        ..spec.clone()
    }
}
