#!/usr/bin/env python3
"""Generate the small hand-built ONNX frontend fixtures under models/fixtures/.

Run from the repository root:

    python models/gen_fixtures.py

Runnable fixtures get the same layout as the models (model.onnx, test_data_set_0/,
meta.json); the bad_*.onnx / truncated.onnx / not_onnx.onnx files are single files
for error-path tests. See models/fixtures/README.md. Needs onnx, onnxruntime and
numpy only (no torch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.dont_write_bytecode = True  # keep models/__pycache__ out of the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import save_case, self_check  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures"
SEED = 4321
SRC = "onnx.helper (models/gen_fixtures.py)"


def rng(k: int) -> np.random.Generator:
    return np.random.default_rng(SEED + k)


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def make_model(nodes, name, inputs, outputs, inits=(), opset=17, ir_version=8):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="tessera-fixtures")
    m.ir_version = ir_version
    return m


def case(name, model, inputs, description, dims=None, external_data=None):
    save_case(name, model, inputs, source=SRC, exporter="onnx-helper", description=description,
              dims=dims, root=FIX, external_data=external_data)
    self_check(name, root=FIX)


# ----------------------------------------------------------------- runnable ones


def initializer_typed_fields():
    r = rng(1)
    W = (r.standard_normal((3, 4)) * 0.5).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    h = (r.standard_normal(4) * 0.5).astype(np.float16)
    shape = np.array([4, 2], dtype=np.int64)
    # helper.make_tensor(..., raw=False) stores the values in the typed repeated
    # fields: float_data for FLOAT, int64_data for INT64, and for FLOAT16 the raw
    # IEEE half bit patterns widened into int32_data (spec-mandated quirk).
    t_W = helper.make_tensor("W", TensorProto.FLOAT, W.shape, W.flatten().tolist(), raw=False)
    t_b = helper.make_tensor("b", TensorProto.FLOAT, b.shape, b.tolist(), raw=False)
    t_h = helper.make_tensor("h16", TensorProto.FLOAT16, h.shape, h.astype(np.float32).tolist(), raw=False)
    t_s = helper.make_tensor("shape", TensorProto.INT64, shape.shape, shape.tolist(), raw=False)
    for t in (t_W, t_b, t_h, t_s):
        assert not t.HasField("raw_data")
    assert len(t_W.float_data) == 12 and len(t_s.int64_data) == 2 and len(t_h.int32_data) == 4
    assert list(t_h.int32_data) == h.view(np.uint16).astype(np.int32).tolist()  # bit patterns
    np.testing.assert_array_equal(numpy_helper.to_array(t_h), h)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["xwb"], name="add_bias"),
        helper.make_node("Cast", ["h16"], ["h32"], to=TensorProto.FLOAT, name="cast_f16"),
        helper.make_node("Add", ["xwb", "h32"], ["z"], name="add_f16"),
        helper.make_node("Reshape", ["z", "shape"], ["y"], name="reshape"),
    ]
    m = make_model(nodes, "initializer_typed_fields", [vi("x", TensorProto.FLOAT, [2, 3])],
                   [vi("y", TensorProto.FLOAT, [4, 2])], [t_W, t_b, t_h, t_s])
    x = r.standard_normal((2, 3)).astype(np.float32)
    case("initializer_typed_fields", m, [x],
         "Initializers stored in typed fields instead of raw_data: W[3,4] and b[4] in float_data, "
         "shape[2] in int64_data, h16[4] (FLOAT16) as bit patterns in int32_data. "
         "y = Reshape(x@W + b + Cast<float>(h16), [4,2]).")


def external_data():
    r = rng(2)
    W = r.standard_normal((4, 8)).astype(np.float32)
    b = r.standard_normal(8).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["y"], name="add_bias"),
    ]
    m = make_model(nodes, "external_data", [vi("x", TensorProto.FLOAT, [2, 4])], [vi("y", TensorProto.FLOAT, [2, 8])],
                   [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
    x = r.standard_normal((2, 4)).astype(np.float32)
    case("external_data", m, [x],
         "Both initializers (W[4,8], b[8]) live in weights.bin next to model.onnx "
         "(data_location=EXTERNAL, location='weights.bin', offset/length set). y = x@W + b.",
         external_data="weights.bin")
    # Sanity: the model file itself carries no weight bytes.
    mm = onnx.load(str(FIX / "external_data" / "model.onnx"), load_external_data=False)
    for t in mm.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL and not t.raw_data, t.name
        assert {e.key: e.value for e in t.external_data}["location"] == "weights.bin"


def constant_forms():
    r = rng(3)
    ct = r.standard_normal((2, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["c_tensor"], value=numpy_helper.from_array(ct, "c_tensor_value"),
                         name="const_value"),
        helper.make_node("Constant", [], ["c_float"], value_float=2.5, name="const_value_float"),
        helper.make_node("Constant", [], ["c_floats"], value_floats=[1.0, -2.0, 0.5], name="const_value_floats"),
        helper.make_node("Constant", [], ["c_int"], value_int=3, name="const_value_int"),
        helper.make_node("Constant", [], ["c_ints"], value_ints=[3, 2], name="const_value_ints"),
        helper.make_node("Add", ["x", "c_tensor"], ["a"], name="add_tensor"),          # [2,3]
        helper.make_node("Mul", ["a", "c_float"], ["b"], name="mul_scalar"),           # scalar float
        helper.make_node("Add", ["b", "c_floats"], ["c"], name="add_floats"),          # [3] broadcast
        helper.make_node("Reshape", ["c", "c_ints"], ["d"], name="reshape_ints"),      # int64 [2] shape
        helper.make_node("Cast", ["c_int"], ["e"], to=TensorProto.FLOAT, name="cast_int"),  # int64 scalar
        helper.make_node("Add", ["d", "e"], ["y"], name="add_int"),
    ]
    m = make_model(nodes, "constant_forms", [vi("x", TensorProto.FLOAT, [2, 3])],
                   [vi("y", TensorProto.FLOAT, [3, 2]), vi("c_ints", TensorProto.INT64, [2]),
                    vi("c_int", TensorProto.INT64, [])])
    x = r.standard_normal((2, 3)).astype(np.float32)
    case("constant_forms", m, [x],
         "Constant nodes using each attribute form: value (float tensor [2,3]), value_float (scalar 2.5), "
         "value_floats ([3]), value_int (int64 scalar 3), value_ints (int64 [3,2]; used as a Reshape shape). "
         "y = Reshape((x + c_tensor) * c_float + c_floats, c_ints) + float(c_int). c_ints and c_int are also "
         "graph outputs. value_string/value_strings and sparse_value are not used (unsupported).")


def shape_chain():
    r = rng(4)
    W = (r.standard_normal((32, 16)) * 0.2).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array(0, dtype=np.int64), "idx0"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "idx1"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"),
        numpy_helper.from_array(np.array([32], dtype=np.int64), "hidden"),
        numpy_helper.from_array(W, "W"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Gather", ["x_shape", "idx0"], ["batch"], axis=0, name="gather_batch"),
        helper.make_node("Gather", ["x_shape", "idx1"], ["seq"], axis=0, name="gather_seq"),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch_1d"], name="unsqueeze_batch"),
        helper.make_node("Unsqueeze", ["seq", "axes0"], ["seq_1d"], name="unsqueeze_seq"),
        helper.make_node("Concat", ["batch_1d", "seq_1d", "hidden"], ["new_shape"], axis=0, name="concat"),
        helper.make_node("Reshape", ["x", "new_shape"], ["merged"], name="reshape"),
        helper.make_node("MatMul", ["merged", "W"], ["y"], name="matmul"),
    ]
    m = make_model(nodes, "shape_chain", [vi("x", TensorProto.FLOAT, [1, "seq", 4, 8])],
                   [vi("y", TensorProto.FLOAT, [1, "seq", 16])], inits)
    x = r.standard_normal((1, 6, 4, 8)).astype(np.float32)
    case("shape_chain", m, [x],
         "Exporter-style dynamic reshape: Shape(x) -> Gather(0), Gather(1) -> Unsqueeze(axes input [0]) -> "
         "Concat with [32] -> Reshape(x) [1,seq,4,8] -> [1,seq,32], then MatMul [32,16]. "
         "x has symbolic dim 'seq' (bind seq=6).",
         dims={"seq": 6})


def opset13_split_squeeze():
    r = rng(5)
    inits = [
        numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "split_sizes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"),
    ]
    nodes = [
        helper.make_node("Split", ["x", "split_sizes"], ["a", "b"], axis=1, name="split"),       # [2,2,3],[2,4,3]
        helper.make_node("ReduceSum", ["a", "axes1"], ["a_sum"], keepdims=0, name="reducesum_a"),  # [2,3]
        helper.make_node("ReduceSum", ["b", "axes1"], ["b_sum"], keepdims=1, name="reducesum_b"),  # [2,1,3]
        helper.make_node("Squeeze", ["b_sum", "axes1"], ["b_sq"], name="squeeze_b"),              # [2,3]
        helper.make_node("Unsqueeze", ["a_sum", "axes0"], ["a_un"], name="unsqueeze_a"),          # [1,2,3]
        helper.make_node("Squeeze", ["a_un", "axes0"], ["a_sq"], name="squeeze_a"),               # [2,3]
        helper.make_node("Sub", ["a_sq", "b_sq"], ["y"], name="sub"),
    ]
    m = make_model(nodes, "opset13_split_squeeze", [vi("x", TensorProto.FLOAT, [2, 6, 3])],
                   [vi("y", TensorProto.FLOAT, [2, 3]), vi("a_un", TensorProto.FLOAT, [1, 2, 3])], inits, opset=13)
    x = r.standard_normal((2, 6, 3)).astype(np.float32)
    case("opset13_split_squeeze", m, [x],
         "Opset 13 forms with axes/split as INPUTS: Split(x, split=[2,4], axis=1), ReduceSum(axes=[1] input, "
         "keepdims 0 and 1), Squeeze(axes input), Unsqueeze(axes input). y = sum(a,1) - squeeze(sum(b,1,keep)); "
         "a_un = Unsqueeze(sum(a,1), [0]).")


def opset11_style():
    r = rng(6)
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[2, 4], name="split_attr"),
        helper.make_node("ReduceSum", ["a"], ["a_sum"], axes=[1], keepdims=0, name="reducesum_attr"),
        helper.make_node("ReduceMean", ["b"], ["b_mean"], axes=[1], keepdims=1, name="reducemean_attr"),
        helper.make_node("Squeeze", ["b_mean"], ["b_sq"], axes=[1], name="squeeze_attr"),
        helper.make_node("Unsqueeze", ["a_sum"], ["a_un"], axes=[0], name="unsqueeze_attr"),
        helper.make_node("Squeeze", ["a_un"], ["a_sq"], axes=[0], name="squeeze_attr0"),
        helper.make_node("ReduceMax", ["x"], ["x_max"], axes=[-1], keepdims=0, name="reducemax_attr"),
        helper.make_node("Sub", ["a_sq", "b_sq"], ["y"], name="sub"),
    ]
    m = make_model(nodes, "opset11_style", [vi("x", TensorProto.FLOAT, [2, 6, 3])],
                   [vi("y", TensorProto.FLOAT, [2, 3]), vi("a_un", TensorProto.FLOAT, [1, 2, 3]),
                    vi("x_max", TensorProto.FLOAT, [2, 6])], opset=11)
    x = r.standard_normal((2, 6, 3)).astype(np.float32)
    case("opset11_style", m, [x],
         "Opset 11 forms with axes/split as ATTRIBUTES: Split(split=[2,4] attr), ReduceSum(axes attr), "
         "ReduceMean(axes attr), ReduceMax(axes=[-1] attr), Squeeze/Unsqueeze(axes attr). Same math as "
         "opset13_split_squeeze except b is averaged (ReduceMean) instead of summed; x_max = max over last axis.")


def opset17_reduce_attr():
    r = rng(7)
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1")]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1, name="reducemean_attr"),
        helper.make_node("ReduceMax", ["x"], ["mx"], axes=[1], keepdims=0, name="reducemax_attr"),
        helper.make_node("ReduceSum", ["x", "axes1"], ["s"], keepdims=0, name="reducesum_input"),
        helper.make_node("ReduceMean", ["x"], ["all_mean"], keepdims=0, name="reducemean_all"),
        helper.make_node("Sub", ["x", "m"], ["centered"], name="center"),
        helper.make_node("Add", ["mx", "s"], ["y"], name="add"),
    ]
    m = make_model(nodes, "opset17_reduce_attr", [vi("x", TensorProto.FLOAT, [2, 4, 5])],
                   [vi("centered", TensorProto.FLOAT, [2, 4, 5]), vi("y", TensorProto.FLOAT, [2, 5]),
                    vi("all_mean", TensorProto.FLOAT, [])], inits, opset=17)
    x = r.standard_normal((2, 4, 5)).astype(np.float32)
    case("opset17_reduce_attr", m, [x],
         "Opset 17 (last opset where ReduceMean/ReduceMax take axes as an attribute; ReduceSum already takes an "
         "axes input since 13): ReduceMean(axes=[-1] attr, keepdims=1), ReduceMax(axes=[1] attr, keepdims=0), "
         "ReduceSum(axes input [1]), ReduceMean with no axes (reduce all, keepdims=0 -> scalar).")


def opset18_reduce_inputs():
    r = rng(8)
    inits = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes_last"], ["m"], keepdims=1, name="reducemean_input"),
        helper.make_node("ReduceMax", ["x", "axes1"], ["mx"], keepdims=0, name="reducemax_input"),
        helper.make_node("Split", ["x"], ["p0", "p1"], axis=2, num_outputs=2, name="split_num_outputs"),
        helper.make_node("Sub", ["x", "m"], ["centered"], name="center"),
    ]
    m = make_model(nodes, "opset18_reduce_inputs", [vi("x", TensorProto.FLOAT, [2, 4, 5])],
                   [vi("centered", TensorProto.FLOAT, [2, 4, 5]), vi("mx", TensorProto.FLOAT, [2, 5]),
                    vi("p0", TensorProto.FLOAT, [2, 4, 3]), vi("p1", TensorProto.FLOAT, [2, 4, 2])], inits, opset=18)
    x = r.standard_normal((2, 4, 5)).astype(np.float32)
    case("opset18_reduce_inputs", m, [x],
         "Opset 18 forms (what the dynamo exporter emits): ReduceMean/ReduceMax with axes as an input, and "
         "Split with the num_outputs attribute (uneven: 5 split in 2 -> sizes 3 and 2).")


def softmax_opset11():
    r = rng(9)
    nodes = [
        helper.make_node("Softmax", ["x"], ["y_axis1"], axis=1, name="softmax_axis1"),
        helper.make_node("Softmax", ["x"], ["y_default"], name="softmax_default_axis"),
        helper.make_node("Softmax", ["x"], ["y_axis_last"], axis=-1, name="softmax_axis_last"),
    ]
    m = make_model(nodes, "softmax_opset11", [vi("x", TensorProto.FLOAT, [2, 3, 4])],
                   [vi("y_axis1", TensorProto.FLOAT, [2, 3, 4]), vi("y_default", TensorProto.FLOAT, [2, 3, 4]),
                    vi("y_axis_last", TensorProto.FLOAT, [2, 3, 4])], opset=11)
    x = r.standard_normal((2, 3, 4)).astype(np.float32)
    # Check onnxruntime really implements the pre-13 "coerce to 2D" semantics.
    flat = x.reshape(2, 12)
    old = np.exp(flat - flat.max(1, keepdims=True))
    old = (old / old.sum(1, keepdims=True)).reshape(2, 3, 4)
    case("softmax_opset11", m, [x],
         "Softmax at opset 11 on a [2,3,4] input. Pre-13 semantics: the input is coerced to 2-D "
         "[prod(dims[:axis]), prod(dims[axis:])] and normalised over the second dim. y_axis1 (axis=1): softmax "
         "over the 12 elements of each batch row (NOT over the 3-axis alone); y_default (no axis attr -> 1): "
         "same as y_axis1; y_axis_last (axis=-1): coerced to [6,4], equal to modern softmax over the last axis.")
    t = TensorProto()
    t.ParseFromString((FIX / "softmax_opset11" / "test_data_set_0" / "output_0.pb").read_bytes())
    np.testing.assert_allclose(numpy_helper.to_array(t), old, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- bad inputs


def write_bad(name: str, model: onnx.ModelProto, check: bool) -> None:
    if check:
        onnx.checker.check_model(model)
    (FIX / name).write_bytes(model.SerializeToString())
    print(f"  wrote {name}: {(FIX / name).stat().st_size} bytes")


def bad_models():
    # Two different unsupported ops (LSTM, NonMaxSuppression) next to a supported Add.
    r = rng(20)
    T, B, I, Hd = 4, 1, 3, 5
    inits = [
        numpy_helper.from_array(r.standard_normal((1, 4 * Hd, I)).astype(np.float32), "lstm_W"),
        numpy_helper.from_array(r.standard_normal((1, 4 * Hd, Hd)).astype(np.float32), "lstm_R"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "max_boxes"),
    ]
    nodes = [
        helper.make_node("Add", ["seq", "seq"], ["seq2"], name="supported_add"),
        helper.make_node("LSTM", ["seq2", "lstm_W", "lstm_R"], ["lstm_Y"], hidden_size=Hd, name="my_lstm"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_boxes"], ["selected"], name="my_nms"),
    ]
    m = make_model(nodes, "bad_unknown_ops",
                   [vi("seq", TensorProto.FLOAT, [T, B, I]), vi("boxes", TensorProto.FLOAT, [1, 6, 4]),
                    vi("scores", TensorProto.FLOAT, [1, 1, 6])],
                   [vi("lstm_Y", TensorProto.FLOAT, [T, 1, B, Hd]), vi("selected", TensorProto.INT64, [None, 3])],
                   inits)
    write_bad("bad_unknown_ops.onnx", m, check=True)

    m = make_model([helper.make_node("Add", ["x", "x"], ["y"], name="add_f64")], "bad_float64",
                   [vi("x", TensorProto.DOUBLE, [2, 3])], [vi("y", TensorProto.DOUBLE, [2, 3])])
    write_bad("bad_float64.onnx", m, check=True)

    m = make_model([helper.make_node("Add", ["x", "w_missing"], ["y"], name="add_missing")],
                   "bad_missing_initializer", [vi("x", TensorProto.FLOAT, [2, 3])],
                   [vi("y", TensorProto.FLOAT, [2, 3])])
    write_bad("bad_missing_initializer.onnx", m, check=False)

    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="cycle_a"),
        helper.make_node("Mul", ["a", "x"], ["b"], name="cycle_b"),
    ]
    m = make_model(nodes, "bad_cycle", [vi("x", TensorProto.FLOAT, [2, 3])], [vi("a", TensorProto.FLOAT, [2, 3])])
    write_bad("bad_cycle.onnx", m, check=False)

    inits = [numpy_helper.from_array(np.ones(4, dtype=np.float32), "bias")]
    m = make_model([helper.make_node("Add", ["x", "bias"], ["y"], name="add_bias")], "bad_unbound_dim",
                   [vi("x", TensorProto.FLOAT, [1, "seq", 4])], [vi("y", TensorProto.FLOAT, [1, "seq", 4])], inits)
    write_bad("bad_unbound_dim.onnx", m, check=True)

    big = 1 << 40
    inits = [numpy_helper.from_array(np.array([big, big], dtype=np.int64), "huge_shape")]
    m = make_model([helper.make_node("ConstantOfShape", ["huge_shape"], ["y"],
                                     value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)),
                                     name="constantofshape_huge")],
                   "bad_overflow_dim", [], [vi("y", TensorProto.FLOAT, [big, big])], inits)
    write_bad("bad_overflow_dim.onnx", m, check=True)

    inits = [numpy_helper.from_array(np.array([big, big, 1], dtype=np.int64), "huge_shape")]
    m = make_model([helper.make_node("Expand", ["x", "huge_shape"], ["y"], name="expand_huge")],
                   "bad_overflow_dim_expand", [vi("x", TensorProto.FLOAT, [1, 1, 4])],
                   [vi("y", TensorProto.FLOAT, [big, big, 4])], inits)
    write_bad("bad_overflow_dim_expand.onnx", m, check=True)

    # A valid model (the external_data fixture with its weights inlined as raw_data) cut in half.
    src = onnx.load(str(FIX / "external_data" / "model.onnx"))  # loads weights.bin
    onnx.external_data_helper.convert_model_from_external_data(src)
    blob = src.SerializeToString()
    cut = blob[: len(blob) // 2]
    try:
        onnx.ModelProto().ParseFromString(cut)
        raise AssertionError("truncated model still parses")
    except Exception as e:  # noqa: BLE001
        if isinstance(e, AssertionError):
            raise
    (FIX / "truncated.onnx").write_bytes(cut)
    print(f"  wrote truncated.onnx: {len(cut)} bytes (of {len(blob)})")

    text = (b"This is not an ONNX model. It is plain text used to test that the loader\n"
            b"reports a clean parse error instead of panicking. 0123456789 !@#$%^&*()\n")
    try:
        onnx.ModelProto().ParseFromString(text)
        raise AssertionError("text parses as ModelProto")
    except Exception as e:  # noqa: BLE001
        if isinstance(e, AssertionError):
            raise
    (FIX / "not_onnx.onnx").write_bytes(text)
    print(f"  wrote not_onnx.onnx: {len(text)} bytes")


def main() -> int:
    FIX.mkdir(parents=True, exist_ok=True)
    for fn in (initializer_typed_fields, external_data, constant_forms, shape_chain, opset13_split_squeeze,
               opset11_style, opset17_reduce_attr, opset18_reduce_inputs, softmax_opset11, bad_models):
        print(f"[{fn.__name__}]")
        fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
