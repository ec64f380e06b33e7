//! Evaluating an op as a compiled program computes it ([`EvalOptions`]):
//! which ops round differently from the exact interpreter, and how.
//!
//! - With a reduced-precision MXU (`mxu` bf16 or f16), or a target: the
//!   matrix ops — matmul, GEMM, convolution, attention — in the form of
//!   their kernels, operands rounded to the MXU's type (`mxu.rs`).
//! - With a target: the vector unit's functions and row kernels — unary
//!   ops, GELU, `pow`, softmax, layer and RMS norms, reductions — in the
//!   VPU's arithmetic and lane order (`vpu.rs`).
//!
//! Everything else (movement, gathers, casts, the IEEE `+ − × ÷` of
//! elementwise ops, integers) is the same on both and is left to the exact
//! interpreter.

use tessera_isa::MxuType;

use crate::graph::{BinaryOp, Op, TensorType};
use crate::tensor::Tensor;

use super::vpu::Vpu;
use super::{elementwise, linalg, mxu, EvalOptions};

/// `op` on `args` as the program computes it, or `None` where that is what
/// the exact interpreter computes.
pub(crate) fn eval(
    op: &Op,
    args: &[&Tensor],
    ty: &TensorType,
    options: &EvalOptions,
) -> Option<Result<Tensor, String>> {
    if let Op::QGemm {
        a_zp,
        b_zp,
        trans_b,
        act: Some(act),
        out,
    } = op
    {
        // Exact integers; only the epilogue's activation is the VPU's.
        let func = act.vpu_func();
        let vpu_act = move |x| tessera_isa::numerics::unary(func, x);
        let extra = match super::fused::qgemm_args((*a_zp, *b_zp), *out, args) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        return Some(super::fused::qgemm(
            args[0],
            args.get(1)?,
            args.get(2)?,
            &extra,
            *trans_b,
            Some(&vpu_act),
            ty,
        ));
    }
    let float = args.first().is_some_and(|a| a.dtype().is_float());
    if !float || (options.mxu == MxuType::F32 && options.target.is_none()) {
        return None;
    }
    let mxu_type = options.mxu;
    let vpu = options.target.as_ref().map(|t| Vpu {
        lanes: t.vpu_lanes as usize,
    });
    let arg = |i: usize| args.get(i).copied();
    let (a, b) = (args[0], arg(1));
    let out = match (op, vpu) {
        (Op::MatMul, _) => {
            let b = b?;
            let (a, b) = (mxu::rounded(mxu_type, a), mxu::rounded(mxu_type, b));
            linalg::matmul(&a, &b, ty)
        }
        (Op::GatherMatMul, _) => {
            let (table, x) = (mxu::rounded(mxu_type, a), mxu::rounded(mxu_type, arg(2)?));
            linalg::gather_matmul(&table, b?, &x, ty)
        }
        (Op::Gemm { trans_b, act }, _) => mxu::gemm(mxu_type, a, b?, arg(2), *trans_b, *act, ty),
        (Op::Conv(attrs), _) => mxu::conv(mxu_type, a, b?, arg(2), attrs, ty),
        (Op::Attention { scale, causal }, _) => {
            let (k, v, mask) = (b?, arg(2)?, arg(3));
            let target = options.target.as_ref();
            let kernel = mxu::attention_kernel(mxu_type, target, a, k, mask, *causal);
            mxu::attention(mxu_type, &kernel, a, k, v, mask, *scale, *causal)
        }
        (Op::Unary(u), Some(vpu)) => vpu.unary(*u, a),
        (Op::Gelu { approximate }, Some(vpu)) => vpu.gelu(a, *approximate),
        (Op::Binary(BinaryOp::Pow), Some(vpu)) if b?.dtype().is_float() => vpu.pow(a, b?, ty),
        (Op::Softmax { axis }, Some(vpu)) => vpu.softmax(a, *axis),
        (Op::LayerNorm { axis, epsilon }, Some(vpu)) => {
            vpu.norm(a, b?, arg(2), *axis, *epsilon, false)
        }
        (Op::RmsNorm { axis, epsilon }, Some(vpu)) => vpu.norm(a, b?, None, *axis, *epsilon, true),
        (Op::AddLayerNorm { axis, epsilon }, Some(vpu)) => {
            let (residual, scale, bias) = (b?, arg(2)?, arg(3));
            elementwise::binary(BinaryOp::Add, a, residual, ty)
                .and_then(|sum| vpu.norm(&sum, scale, bias, *axis, *epsilon, false))
        }
        (Op::AddRmsNorm { axis, epsilon }, Some(vpu)) => {
            let (residual, scale) = (b?, arg(2)?);
            elementwise::binary(BinaryOp::Add, a, residual, ty)
                .and_then(|sum| vpu.norm(&sum, scale, None, *axis, *epsilon, true))
        }
        (Op::Reduce { kind, axes, .. }, Some(vpu)) => vpu.reduce_axes(a, *kind, axes, ty),
        _ => return None,
    };
    Some(out)
}
