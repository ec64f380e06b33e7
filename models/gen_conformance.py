#!/usr/bin/env python3
"""Collect the ONNX backend *node* conformance tests for the ops Tessera supports.

Run from the repository root:

    python models/gen_conformance.py [--out DIR]

Writes DIR/node/<test_name>/{model.onnx,test_data_set_N/*.pb}, DIR/manifest.txt
and DIR/summary.txt; DIR defaults to tests/conformance. `.ci/run` regenerates
into a temporary DIR and compares it with the committed files.

Source of the tests: older onnx wheels shipped the generated node tests under
onnx/backend/test/data/node/. The pinned onnx (see models/requirements.txt) no
longer ships that directory, so when it is missing we regenerate the very same
cases in-process from onnx.backend.test.case.node (the code upstream uses to
produce that directory, i.e. `backend-test-tools generate-data`), with
numpy's global RNG seeded for determinism. If the directory exists it is copied
as-is instead.

A test is kept when every node in its graph (including subgraphs and local
functions) is in the default ONNX domain and its op type is in SUPPORTED_OPS.
`_expanded` variants (function bodies inlined) are treated like any other test:
kept only if all the ops they decompose into are supported.

manifest.txt has one line per test:

    <test_name> <ops comma-separated> <dtypes comma-separated>[ # dtype-unsupported]

dtypes are the element types seen on graph inputs/outputs, initializers,
Constant/ConstantOfShape values and Cast/CastLike targets; non-tensor types are
written seq(<t>) / opt(<t>). The marker is added when any of them is outside
SUPPORTED_DTYPES: the compiler must refuse those tests with a clear error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

# float32 MatMul outputs (the *_expanded attention tests) depend on which
# OpenBLAS kernel numpy's wheel picks for the CPU: an AVX-512 host and an
# AVX2 host write different bytes. Pin one kernel and one thread, before
# numpy loads, so every x86-64 machine with AVX2 generates the same files.
os.environ["OPENBLAS_CORETYPE"] = "Haswell"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import AttributeProto, TensorProto, numpy_helper  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "conformance"
SIZE_BUDGET = 15 * 1024 * 1024

SUPPORTED_OPS = [
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log", "Tanh", "Erf",
    "Sigmoid", "Relu", "Gelu", "Softmax", "LayerNormalization", "RMSNormalization", "ReduceMean", "ReduceSum",
    "ReduceMax", "MatMul", "Gemm", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "Expand", "Where", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Not", "Cast", "Shape", "Size", "ConstantOfShape", "Range", "Constant",
    "Identity", "Trilu", "Cos", "Sin", "Min", "Max", "Clip", "Conv",
    "Sign", "Floor", "Ceil", "Round", "CastLike", "Mod", "Tile", "Pad", "CumSum",
    "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "LogSoftmax", "IsNaN", "IsInf", "Xor", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "BatchNormalization", "InstanceNormalization", "GroupNormalization", "GlobalAveragePool", "GlobalMaxPool", "DepthToSpace", "SpaceToDepth", "ArgMax", "ArgMin", "OneHot", "MaxPool", "AveragePool", "Einsum", "TopK", "Resize", "ReduceProd", "ScatterElements", "Scatter", "ScatterND", "ConvTranspose", "NonZero", "BitShift",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
]
SUPPORTED_DTYPES = {"float32", "int64", "int32", "bool", "float16", "bfloat16", "uint8", "int8"}


def dtype_name(elem_type: int) -> str:
    name = TensorProto.DataType.Name(elem_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def type_names(tp: onnx.TypeProto) -> list[str]:
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return [dtype_name(tp.tensor_type.elem_type)]
    if kind == "sparse_tensor_type":
        return [f"sparse({dtype_name(tp.sparse_tensor_type.elem_type)})"]
    if kind == "sequence_type":
        return [f"seq({t})" for t in type_names(tp.sequence_type.elem_type)]
    if kind == "optional_type":
        return [f"opt({t})" for t in type_names(tp.optional_type.elem_type)]
    if kind == "map_type":
        return ["map"]
    return ["undefined"]


def iter_nodes(model: onnx.ModelProto):
    def visit(nodes):
        for n in nodes:
            yield n
            for a in n.attribute:
                if a.type == AttributeProto.GRAPH:
                    yield from visit(a.g.node)
                elif a.type == AttributeProto.GRAPHS:
                    for g in a.graphs:
                        yield from visit(g.node)

    yield from visit(model.graph.node)
    for f in model.functions:
        yield from visit(f.node)


def analyze(model: onnx.ModelProto) -> tuple[list[str], list[str], bool]:
    """-> (sorted op types, sorted dtypes, all ops supported)."""
    ops, ok = set(), True
    dtypes: set[str] = set()
    for n in iter_nodes(model):
        if n.domain not in ("", "ai.onnx"):
            ok = False
            ops.add(f"{n.domain}::{n.op_type}")
            continue
        ops.add(n.op_type)
        if n.op_type not in SUPPORTED_OPS:
            ok = False
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR and n.op_type in ("Constant", "ConstantOfShape"):
                dtypes.add(dtype_name(a.t.data_type))
            if a.type == AttributeProto.SPARSE_TENSOR:
                dtypes.add(f"sparse({dtype_name(a.sparse_tensor.values.data_type)})")
            if n.op_type == "Cast" and a.name == "to":
                dtypes.add(dtype_name(a.i))
    g = model.graph
    for vi in list(g.input) + list(g.output):
        dtypes.update(type_names(vi.type))
    for t in g.initializer:
        dtypes.add(dtype_name(t.data_type))
    for s in g.sparse_initializer:
        dtypes.add(f"sparse({dtype_name(s.values.data_type)})")
    return sorted(ops), sorted(dtypes), ok


# ------------------------------------------------------------------ test sources


def _serialize_value(value, vi: onnx.ValueInfoProto) -> bytes:
    """Same encoding as onnx.backend.test.cmd_tools.generate_data."""
    if vi.type.HasField("map_type"):
        return numpy_helper.from_dict(value, vi.name).SerializeToString()
    if vi.type.HasField("sequence_type"):
        return numpy_helper.from_list(value, vi.name).SerializeToString()
    if vi.type.HasField("optional_type"):
        return numpy_helper.from_optional(value, vi.name).SerializeToString()
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, vi.name).SerializeToString()


def generated_cases():
    """Yield (name, model, [(input_blobs, output_blobs)]) from onnx's node test generators."""
    warnings.filterwarnings("ignore")
    np.random.seed(0)
    from onnx.backend.test.case import node as node_cases

    for case in sorted(node_cases.collect_testcases(None), key=lambda c: c.name):
        sets = []
        for inputs, outputs in case.data_sets:
            ins = [_serialize_value(v, case.model.graph.input[j]) for j, v in enumerate(inputs)]
            outs = [_serialize_value(v, case.model.graph.output[j]) for j, v in enumerate(outputs)]
            sets.append((ins, outs))
        yield case.name, case.model, sets


def shipped_cases(root: Path):
    """Yield cases from an onnx wheel that still ships backend/test/data/node."""
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        model = onnx.load(str(d / "model.onnx"))
        sets = []
        for ds in sorted(d.glob("test_data_set_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])):
            key = lambda p: int(p.stem.split("_")[1])  # noqa: E731
            ins = [p.read_bytes() for p in sorted(ds.glob("input_*.pb"), key=key)]
            outs = [p.read_bytes() for p in sorted(ds.glob("output_*.pb"), key=key)]
            sets.append((ins, outs))
        yield d.name, model, sets


# -------------------------------------------------------------------------- main


def main(out: Path) -> int:
    node_out = out / "node"
    shipped = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if shipped.is_dir():
        source = f"onnx {onnx.__version__} wheel: onnx/backend/test/data/node"
        cases = shipped_cases(shipped)
    else:
        source = f"onnx {onnx.__version__}: regenerated from onnx.backend.test.case.node (np.random.seed(0))"
        cases = generated_cases()

    if node_out.exists():
        shutil.rmtree(node_out)
    node_out.mkdir(parents=True)

    total_seen = 0
    kept = []  # (name, ops, dtypes, bytes)
    for name, model, sets in cases:
        total_seen += 1
        ops, dtypes, ok = analyze(model)
        if not ok:
            continue
        d = node_out / name
        d.mkdir()
        (d / "model.onnx").write_bytes(model.SerializeToString())
        for i, (ins, outs) in enumerate(sets):
            ds = d / f"test_data_set_{i}"
            ds.mkdir()
            for j, b in enumerate(ins):
                (ds / f"input_{j}.pb").write_bytes(b)
            for j, b in enumerate(outs):
                (ds / f"output_{j}.pb").write_bytes(b)
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        kept.append((name, ops, dtypes, size))

    # Enforce the size budget by dropping the largest tests.
    dropped = []
    total = sum(k[3] for k in kept)
    for k in sorted(kept, key=lambda k: -k[3]):
        if total <= SIZE_BUDGET:
            break
        shutil.rmtree(node_out / k[0])
        dropped.append(k)
        total -= k[3]
    kept = [k for k in kept if k not in dropped]

    lines = [
        "# ONNX backend node tests whose ops are all supported by Tessera.",
        f"# source: {source}",
        "# format: <test_name> <ops comma-separated> <dtypes comma-separated>[ # dtype-unsupported]",
        "# '# dtype-unsupported': some input/output/initializer/constant/cast dtype is outside "
        "{" + ",".join(sorted(SUPPORTED_DTYPES)) + "}; the compiler must refuse it with a clear error.",
        "# Generated by models/gen_conformance.py -- do not edit.",
    ]
    n_unsupported = 0
    for name, ops, dtypes, _ in sorted(kept):
        bad = any(t not in SUPPORTED_DTYPES for t in dtypes)
        n_unsupported += bad
        lines.append(f"{name} {','.join(ops)} {','.join(dtypes)}" + (" # dtype-unsupported" if bad else ""))
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")

    # Per-op coverage summary.
    per_op = Counter()
    per_op_ok = Counter()
    for name, ops, dtypes, _ in kept:
        bad = any(t not in SUPPORTED_DTYPES for t in dtypes)
        for op in ops:
            per_op[op] += 1
            if not bad:
                per_op_ok[op] += 1
    summary = [
        f"source: {source}",
        f"node tests seen: {total_seen}",
        f"kept: {len(kept)} ({len(kept) - n_unsupported} with supported dtypes, {n_unsupported} dtype-unsupported)",
        f"total size: {total} bytes ({total / 1024 / 1024:.2f} MiB)",
        f"dropped for size: {', '.join(f'{k[0]} ({k[3]} B)' for k in dropped) or 'none'}",
        "",
        "tests per op (all / supported dtypes only):",
    ]
    for op in SUPPORTED_OPS:
        summary.append(f"  {op:20s} {per_op[op]:4d} / {per_op_ok[op]:4d}")
    missing = [op for op in SUPPORTED_OPS if per_op[op] == 0]
    summary.append("")
    summary.append(f"ops with no test: {', '.join(missing) or 'none'}")
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    # Keep the numpy/onnx reference generators quiet and single-threaded-deterministic.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory to write node/, manifest.txt and summary.txt into (default: tests/conformance)",
    )
    sys.exit(main(parser.parse_args().out))
