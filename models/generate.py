#!/usr/bin/env python3
"""Generate the tiny ONNX model test assets under models/.

Run from the repository root (inside a venv built from models/requirements.txt):

    python models/generate.py            # all models in models/ (not the PENDING families, if any)
    python models/generate.py gpt2_ts    # only the named ones
    python models/generate.py --root /tmp/out opt_ts   # write <DIR>/<name>/ instead of models/<name>/

Every model gets its own directory in the ONNX backend-test layout:

    models/<name>/model.onnx
    models/<name>/test_data_set_0/input_<i>.pb   (TensorProto, .name = graph input name)
    models/<name>/test_data_set_0/output_<i>.pb  (onnxruntime result, .name = graph output name)
    models/<name>/meta.json

Everything is deterministic (fixed seeds); weights are random (no hub downloads).
Python is only used to produce these assets; the Rust side just reads them.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent
# Where model directories are written (and self-checked); `--root DIR` overrides it.
OUT_ROOT = ROOT
SEED = 1234
MAX_DIR_BYTES = 2 * 1024 * 1024

# Per-model export failures collected during the run (name -> message).
FAILURES: dict[str, str] = {}


# --------------------------------------------------------------------------- utils


def collect_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted unique op types, including nodes in subgraphs and local functions.

    Ops from a non-default domain are reported as "<domain>::<op>".
    """
    ops: set[str] = set()

    def visit(graph_nodes):
        for n in graph_nodes:
            ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}")
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g.node)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        visit(g.node)

    visit(model.graph.node)
    for f in model.functions:
        visit(f.node)
    return sorted(ops)


def dtype_name(elem_type: int) -> str:
    """ONNX elem type -> short name: float32, float64, int64, bool, float16, bfloat16, ..."""
    name = TensorProto.DataType.Name(elem_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def value_info_desc(vi: onnx.ValueInfoProto) -> dict:
    tt = vi.type.tensor_type
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return {
        "name": vi.name,
        "dtype": dtype_name(tt.elem_type),
        "shape": dims,
    }


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def save_case(
    name: str,
    model: onnx.ModelProto,
    inputs: list[np.ndarray],
    *,
    source: str,
    exporter: str,
    description: str,
    dims: dict[str, int] | None = None,
    reference: list[np.ndarray] | None = None,
    extra_meta: dict | None = None,
    root: Path | None = None,
    external_data: str | None = None,
) -> None:
    """Write model + test data + meta.json for one model directory.

    root: parent directory (default OUT_ROOT: models/, or the `--root` argument).
    external_data: if set, store every initializer in that file (relative
    location, next to model.onnx) instead of inside model.onnx.
    """
    out = (OUT_ROOT if root is None else root) / name
    if out.exists():
        shutil.rmtree(out)
    (out / "test_data_set_0").mkdir(parents=True)

    # Keep everything inside one file (no external data).
    model_path = out / "model.onnx"
    blob = model.SerializeToString()
    needles = {b"site-packages", str(ROOT.parent).encode(), sys.prefix.encode(), str(Path.home()).encode()}
    for needle in needles:
        if needle in blob:
            raise RuntimeError(f"{name}: model contains a machine-specific path ({needle!r})")
    if external_data:
        onnx.save_model(model, str(model_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external_data, size_threshold=0, convert_attribute=False)
        model = onnx.load(str(model_path), load_external_data=False)
    else:
        onnx.save_model(model, str(model_path), save_as_external_data=False)
    onnx.checker.check_model(str(model_path), full_check=True)

    graph_inputs = [i for i in model.graph.input]
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in graph_inputs if i.name not in init_names]
    assert len(graph_inputs) == len(inputs), (name, [i.name for i in graph_inputs])

    feeds = {vi.name: arr for vi, arr in zip(graph_inputs, inputs)}
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    results = sess.run(None, feeds)

    for i, (vi, arr) in enumerate(zip(graph_inputs, inputs)):
        t = numpy_helper.from_array(np.array(arr, order="C"), vi.name)
        (out / "test_data_set_0" / f"input_{i}.pb").write_bytes(t.SerializeToString())
    for i, (oname, arr) in enumerate(zip(out_names, results)):
        t = numpy_helper.from_array(np.array(arr, order="C"), oname)
        (out / "test_data_set_0" / f"output_{i}.pb").write_bytes(t.SerializeToString())

    opset = next(
        (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None
    )
    meta = {
        "source": source,
        "exporter": exporter,
        "opset": opset,
        "dims": dims or {},
        "ops": collect_ops(model),
        "description": description,
        "inputs": [value_info_desc(v) for v in graph_inputs],
        "outputs": [value_info_desc(v) for v in model.graph.output],
        "test_shapes": {
            "inputs": [list(a.shape) for a in inputs],
            "outputs": [list(r.shape) for r in results],
        },
    }
    if reference is not None:
        diffs = [float(np.max(np.abs(r.astype(np.float64) - ref.astype(np.float64))))
                 for r, ref in zip(results, reference)]
        meta["max_abs_diff_ort_vs_torch"] = max(diffs)
    if extra_meta:
        meta.update(extra_meta)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    size = dir_size(out)
    if size > MAX_DIR_BYTES:
        raise RuntimeError(f"{name}: directory is {size} bytes (> {MAX_DIR_BYTES})")
    print(f"  wrote {name}: {size / 1024:.1f} KiB, opset {opset}, ops={meta['ops']}")


def self_check(name: str, root: Path | None = None) -> None:
    """Re-load the saved model + protobuf test data and compare with a fresh ORT run."""
    d = (OUT_ROOT if root is None else root) / name
    model = onnx.load(str(d / "model.onnx"))
    onnx.checker.check_model(str(d / "model.onnx"))
    ds = d / "test_data_set_0"
    inputs = {}
    for p in sorted(ds.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
        t = TensorProto()
        t.ParseFromString(p.read_bytes())
        inputs[t.name] = numpy_helper.to_array(t)
    expected = []
    for p in sorted(ds.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
        t = TensorProto()
        t.ParseFromString(p.read_bytes())
        expected.append((t.name, numpy_helper.to_array(t)))
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run([n for n, _ in expected], inputs)
    for (n, e), g in zip(expected, got):
        assert e.dtype == g.dtype and e.shape == g.shape, (name, n, e.dtype, g.dtype, e.shape, g.shape)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=f"{name}:{n}")
    meta = json.loads((d / "meta.json").read_text())
    assert meta["ops"] == collect_ops(model), name


def rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


# ------------------------------------------------------------- torch-based models


def _torch_setup():
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)

    # transformers' mask preprocessing calls find_packed_sequence_indices() whenever
    # position_ids are present and attention_mask is None (GPT-2/LLaMA called with
    # input_ids only). It uses torch.diff, which the TorchScript exporter cannot
    # export, and under tracing it always returns a tensor which bloats the graph.
    # With a single contiguous sequence per row the answer is "not packed" (None),
    # so patch it to return that.
    import transformers.masking_utils as mu

    mu.find_packed_sequence_indices = lambda position_ids: None
    return torch


def export_torch(
    torch,
    module,
    args: tuple,
    input_names: list[str],
    output_names: list[str],
    *,
    dynamo: bool,
    opset: int,
    dynamic_axes: dict | None = None,
    dynamic_shapes: dict | None = None,
) -> onnx.ModelProto:
    import io

    if dynamo:
        prog = torch.onnx.export(
            module,
            args,
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
        return strip_stack_traces(prog.model_proto)
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        args,
        buf,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset,
        dynamo=False,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buf.getvalue())


def strip_stack_traces(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the per-node 'pkg.torch.onnx.stack_trace' metadata the dynamo exporter adds.

    It holds absolute file paths of the generating machine (and makes the output
    depend on where the venv lives). The other node metadata_props (namespace,
    class_hierarchy, fx_node, name_scopes) are kept: real exported models carry them.
    """

    def visit(nodes):
        for n in nodes:
            keep = [(p.key, p.value) for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del n.metadata_props[:]
            for k, v in keep:
                n.metadata_props.add(key=k, value=v)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g.node)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        visit(g.node)

    visit(model.graph.node)
    for f in model.functions:
        visit(f.node)
    return model


TS_OPSET = 17
DYNAMO_OPSET = 18


def _torch_case(
    name: str,
    build: Callable,
    *,
    dynamo: bool,
    source: str,
    description: str,
    dynamic: dict | None = None,
    extra_meta: dict | None = None,
):
    """build(torch) -> (module, arg_names, example_args, test_args, output_name).

    output_name is one name, or a list of names when the module returns a tuple of
    tensors (then dynamic["out_axes"] maps each output name to its axes).
    Returns (torch, module, exported ModelProto) for cases that post-process.
    """
    torch = _torch_setup()
    module, arg_names, example, test_args, out_name = build(torch)
    out_names = list(out_name) if isinstance(out_name, (list, tuple)) else [out_name]
    dims: dict[str, int] = {}
    dynamic_axes = dynamic_shapes = None
    if dynamic:
        # dynamic: {arg_name: {axis: dim_name}} ; output follows the same names.
        dims = dynamic["dims"]
        axes = dynamic["axes"]
        if dynamo:
            from torch.export import Dim

            dim_objs = {d: Dim(d, min=2, max=64) for d in dims}
            dynamic_shapes = {a: {ax: dim_objs[dn] for ax, dn in m.items()} for a, m in axes.items()}
        else:
            dynamic_axes = dict(axes)
            if isinstance(out_name, (list, tuple)):
                dynamic_axes.update(dynamic["out_axes"])
            else:
                dynamic_axes[out_name] = dynamic["out_axes"]
    model = export_torch(
        torch,
        module,
        tuple(example),
        arg_names,
        out_names,
        dynamo=dynamo,
        opset=DYNAMO_OPSET if dynamo else TS_OPSET,
        dynamic_axes=dynamic_axes,
        dynamic_shapes=dynamic_shapes,
    )
    out = module(*test_args)
    refs = [t.detach().numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]
    save_case(
        name,
        model,
        [a.numpy() for a in test_args],
        source=source,
        exporter="dynamo" if dynamo else "torchscript",
        description=description,
        dims=dims,
        reference=refs,
        extra_meta=extra_meta,
    )
    return torch, module, model


def perturb(torch, model, seed: int, scale: float = 0.1):
    """Add seeded noise to every parameter.

    HF init leaves all LayerNorm/RMSNorm weights at 1 and biases at 0; such
    parameters would make gamma/beta/bias bugs invisible (and the dynamo exporter
    would even deduplicate the identical initializers). Noise makes each one distinct.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


# Model builders. Each returns (module, arg_names, example_args, test_args, output_name).


def build_gpt2(torch, batch=1, seq=8, test_batch=None, test_seq=None):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    cfg = GPT2Config(
        vocab_size=256,
        n_positions=64,
        n_embd=32,
        bos_token_id=0,
        eos_token_id=0,
        n_layer=2,
        n_head=2,
        use_cache=False,
        output_attentions=False,
        output_hidden_states=False,
        attn_implementation="eager",
    )
    model = perturb(torch, GPT2LMHeadModel(cfg).eval(), SEED + 101)
    assert model.config._attn_implementation == "eager"

    class Gpt2(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0]

    mod = Gpt2(model).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    example = [torch.randint(0, 256, (batch, seq), generator=g)]
    tb, ts = test_batch or batch, test_seq or seq
    test = [torch.randint(0, 256, (tb, ts), generator=g)]
    return mod, ["input_ids"], example, test, "logits"


def build_gpt2_long(torch, seq):
    """build_gpt2's config with n_positions = seq, over seq tokens; only the last
    position's logits are returned (keeps the reference output small)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    cfg = GPT2Config(vocab_size=256, n_positions=seq, n_embd=32, bos_token_id=0, eos_token_id=0,
                     n_layer=2, n_head=2, use_cache=False, output_attentions=False,
                     output_hidden_states=False, attn_implementation="eager")
    model = perturb(torch, GPT2LMHeadModel(cfg).eval(), SEED + 101)

    class Gpt2Last(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0][:, -1:, :]

    g = torch.Generator().manual_seed(SEED + 16)
    example = [torch.randint(0, 256, (1, seq), generator=g)]
    test = [torch.randint(0, 256, (1, seq), generator=g)]
    return Gpt2Last(model).eval(), ["input_ids"], example, test, "logits"


def build_gpt2_fp16(torch):
    """GPT-2 with every parameter and activation in float16."""
    mod, names, example, test, out = build_gpt2(torch)
    return mod.half(), names, example, test, out


def build_bert(torch):
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    cfg = BertConfig(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = perturb(torch, BertModel(cfg, add_pooling_layer=False).eval(), SEED + 102)
    assert model.config._attn_implementation == "eager"

    class Bert(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                return_dict=False,
            )[0]

    mod = Bert(model).eval()
    g = torch.Generator().manual_seed(SEED + 2)
    seq = 8

    def sample():
        ids = torch.randint(0, 256, (1, seq), generator=g)
        # last 3 tokens are padding -> masking matters
        mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.int64)
        tt = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]], dtype=torch.int64)
        return [ids, mask, tt]

    return mod, ["input_ids", "attention_mask", "token_type_ids"], sample(), sample(), "last_hidden_state"


def build_llama(torch, max_position_embeddings=64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=max_position_embeddings,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_cache=False,
        attn_implementation="eager",
    )
    model = perturb(torch, LlamaForCausalLM(cfg).eval(), SEED + 103)
    assert model.config._attn_implementation == "eager"

    class Llama(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0]

    mod = Llama(model).eval()
    g = torch.Generator().manual_seed(SEED + 3)
    example = [torch.randint(0, 256, (1, 8), generator=g)]
    test = [torch.randint(0, 256, (1, 8), generator=g)]
    return mod, ["input_ids"], example, test, "logits"


def build_vit(torch):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(SEED)
    cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = perturb(torch, ViTModel(cfg, add_pooling_layer=False).eval(), SEED + 104)
    assert model.config._attn_implementation == "eager"

    class Vit(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values, return_dict=False)[0]

    mod = Vit(model).eval()
    g = torch.Generator().manual_seed(SEED + 4)
    example = [torch.randn(1, 3, 32, 32, generator=g)]
    test = [torch.randn(1, 3, 32, 32, generator=g)]
    return mod, ["pixel_values"], example, test, "last_hidden_state"


def _text_sample(torch, g, pad_token_id=None, low=0):
    """input_ids [1,8] + attention_mask with 3 trailing padding zeros (like BERT's).

    If pad_token_id is given, the padded positions of input_ids hold it and the real
    tokens are drawn from [low, 256) (low > pad_token_id keeps them distinct from it).
    """
    ids = torch.randint(low, 256, (1, 8), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.int64)
    if pad_token_id is not None:
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id))
    return [ids, mask]


def build_opt(torch):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(SEED)
    cfg = OPTConfig(
        vocab_size=256,
        hidden_size=32,
        word_embed_proj_dim=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=64,
        max_position_embeddings=64,
        activation_function="relu",
        use_cache=False,
        attn_implementation="eager",
    )
    model = perturb(torch, OPTForCausalLM(cfg).eval(), SEED + 105)
    assert model.config._attn_implementation == "eager"

    class Opt(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=False)[0]

    mod = Opt(model).eval()
    g = torch.Generator().manual_seed(SEED + 5)
    # padded positions hold pad_token_id (1); their position ids come from CumSum(attention_mask)
    example = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=3)
    test = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=3)
    return mod, ["input_ids", "attention_mask"], example, test, "logits"


def build_roberta(torch):
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(SEED)
    cfg = RobertaConfig(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=1,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = perturb(torch, RobertaModel(cfg, add_pooling_layer=False).eval(), SEED + 106)
    assert model.config._attn_implementation == "eager"

    class Roberta(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]

    mod = Roberta(model).eval()
    g = torch.Generator().manual_seed(SEED + 6)
    # position ids = CumSum(input_ids != pad_token_id (1)) * mask + 1: padded ids must be the pad token
    example = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=3)
    test = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=3)
    return mod, ["input_ids", "attention_mask"], example, test, "last_hidden_state"


def build_bloom(torch):
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(SEED)
    cfg = BloomConfig(
        vocab_size=256,
        hidden_size=32,
        n_layer=2,
        n_head=2,
        use_cache=False,
        attn_implementation="eager",
    )
    model = perturb(torch, BloomForCausalLM(cfg).eval(), SEED + 107)
    assert model.config._attn_implementation == "eager"

    class Bloom(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=False)[0]

    mod = Bloom(model).eval()
    g = torch.Generator().manual_seed(SEED + 7)
    example = _text_sample(torch, g, pad_token_id=3, low=4)
    test = _text_sample(torch, g, pad_token_id=3, low=4)
    return mod, ["input_ids", "attention_mask"], example, test, "logits"


def build_deberta_v2(torch):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(SEED)
    cfg = DebertaV2Config(
        vocab_size=256,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=0,
        hidden_act="gelu",
        # DeBERTa-v3-style disentangled attention with log-bucketed relative positions:
        # 8 buckets (mid 4), so |i-j| in 4..7 takes the Sign/Log/Ceil path at seq 8.
        relative_attention=True,
        position_buckets=8,
        max_relative_positions=32,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        attn_implementation="eager",
    )
    model = perturb(torch, DebertaV2Model(cfg).eval(), SEED + 108)
    assert model.config._attn_implementation == "eager"

    class DebertaV2(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]

    mod = DebertaV2(model).eval()
    g = torch.Generator().manual_seed(SEED + 8)
    example = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=1)
    test = _text_sample(torch, g, pad_token_id=cfg.pad_token_id, low=1)
    return mod, ["input_ids", "attention_mask"], example, test, "last_hidden_state"


def build_swin(torch):
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(SEED)
    cfg = SwinConfig(
        image_size=32,
        patch_size=2,  # 16x16 patches, window 4 -> 16 windows; after patch merging 8x8 -> 4 windows
        num_channels=3,
        embed_dim=16,  # stage 2: 32
        depths=[2, 2],  # second block of each stage uses shifted windows (shift 2)
        num_heads=[2, 2],
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.0,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = perturb(torch, SwinModel(cfg, add_pooling_layer=False).eval(), SEED + 109)
    assert model.config._attn_implementation == "eager"

    class Swin(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values, return_dict=False)[0]

    mod = Swin(model).eval()
    g = torch.Generator().manual_seed(SEED + 9)
    example = [torch.randn(1, 3, 32, 32, generator=g)]
    test = [torch.randn(1, 3, 32, 32, generator=g)]
    return mod, ["pixel_values"], example, test, "last_hidden_state"


def build_convnext(torch):
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(SEED)
    cfg = ConvNextConfig(
        num_channels=3,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[2, 2],
        image_size=32,
        hidden_act="gelu",
        layer_scale_init_value=1e-6,
        drop_path_rate=0.0,
    )
    model = perturb(torch, ConvNextModel(cfg).eval(), SEED + 110)

    class ConvNext(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values, return_dict=False)[0]

    mod = ConvNext(model).eval()
    g = torch.Generator().manual_seed(SEED + 10)
    example = [torch.randn(1, 3, 32, 32, generator=g)]
    test = [torch.randn(1, 3, 32, 32, generator=g)]
    return mod, ["pixel_values"], example, test, "last_hidden_state"


def build_whisper(torch):
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(SEED)
    cfg = WhisperConfig(
        vocab_size=64,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=16,  # 32 input frames (the second conv has stride 2)
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        use_cache=False,
        attn_implementation="eager",
    )
    model = perturb(torch, WhisperModel(cfg).eval(), SEED + 111)
    assert model.config._attn_implementation == "eager"

    class Whisper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_features, decoder_input_ids):
            return self.m(input_features=input_features, decoder_input_ids=decoder_input_ids,
                          use_cache=False, return_dict=False)[0]

    mod = Whisper(model).eval()
    g = torch.Generator().manual_seed(SEED + 11)

    def sample():
        return [torch.randn(1, 16, 32, generator=g), torch.randint(4, 64, (1, 6), generator=g)]

    return mod, ["input_features", "decoder_input_ids"], sample(), sample(), "last_hidden_state"


def build_clip(torch):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(SEED)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=2,
                         hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, num_channels=3, hidden_act="quick_gelu"),
        projection_dim=16,
        attn_implementation="eager",
    )
    model = perturb(torch, CLIPModel(cfg).eval(), SEED + 112)

    class Clip(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, pixel_values):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                         return_dict=True)
            return out.logits_per_image

    mod = Clip(model).eval()
    g = torch.Generator().manual_seed(SEED + 12)

    def sample():
        # Two captions of 8 tokens, the second padded after its end token (id 2).
        ids = torch.randint(3, 64, (2, 8), generator=g)
        ids[0, 7] = 2
        ids[1, 5] = 2
        mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2], dtype=torch.int64)
        ids = torch.where(mask.bool(), ids, torch.zeros_like(ids))
        return [ids, mask, torch.randn(1, 3, 32, 32, generator=g)]

    return mod, ["input_ids", "attention_mask", "pixel_values"], sample(), sample(), "logits_per_image"


GPT2_SRC = "transformers.GPT2LMHeadModel(n_embd=32, n_layer=2, n_head=2, vocab=256, n_positions=64, eager attention)"
BERT_SRC = "transformers.BertModel(hidden=32, layers=2, heads=2, intermediate=64, vocab=256, no pooler, eager attention)"
LLAMA_SRC = ("transformers.LlamaForCausalLM(hidden=64, layers=2, heads=4, kv_heads=2 (GQA), intermediate=128, "
             "vocab=256, rope_theta=1e4, eager attention)")
VIT_SRC = "transformers.ViTModel(image=32x32x3, patch=8, hidden=32, layers=2, heads=2, intermediate=64, no pooler, eager attention)"

OPT_SRC = ("transformers.OPTForCausalLM(hidden=32, layers=2, heads=2, ffn=64, vocab=256, max_positions=64, relu, "
           "tied lm_head, eager attention)")
ROBERTA_SRC = ("transformers.RobertaModel(hidden=32, layers=2, heads=2, intermediate=64, vocab=256, max_positions=64, "
               "type_vocab=1, no pooler, eager attention)")
BLOOM_SRC = ("transformers.BloomForCausalLM(hidden=32, layers=2, heads=2, vocab=256, ALiBi, tied lm_head, "
             "eager attention)")
DEBERTA_V2_SRC = ("transformers.DebertaV2Model(hidden=32, layers=2, heads=2, intermediate=64, vocab=256, "
                  "relative_attention, position_buckets=8, max_relative_positions=32, pos_att_type=p2c|c2p, "
                  "share_att_key, norm_rel_ebd=layer_norm, no absolute positions, eager attention)")
SWIN_SRC = ("transformers.SwinModel(image=32x32x3, patch=2, embed_dim=16, depths=[2,2], heads=[2,2], window=4, "
            "mlp_ratio=2, no pooler, eager attention)")
WHISPER_SRC = ("transformers.WhisperModel(mel_bins=16, frames=32, d_model=32, encoder/decoder layers=2, heads=2, "
               "ffn=64, vocab=64, max_target_positions=16, eager attention)")
CLIP_SRC = ("transformers.CLIPModel(text: hidden=32, layers=2, heads=2, vocab=64, max_positions=16; vision: "
            "image=32x32x3, patch=8, hidden=32, layers=2, heads=2; projection=16, quick_gelu, eager attention)")
CONVNEXT_SRC = "transformers.ConvNextModel(image=32x32x3, patch=4, hidden_sizes=[16,32], depths=[2,2])"


def _mk_torch(name, build, dynamo, source, desc, dynamic=None):
    return lambda: _torch_case(name, build, dynamo=dynamo, source=source, description=desc, dynamic=dynamic)


GPT2_DYNAMIC = {
    "dims": {"batch": 2, "seq": 11},
    "axes": {"input_ids": {0: "batch", 1: "seq"}},
    "out_axes": {0: "batch", 1: "seq"},
}


def gpt2_dynamic_build(torch):
    # Trace with batch=2, seq=8; test data uses batch=2, seq=11 so a graph that
    # silently baked in the traced sizes would fail the self-check.
    return build_gpt2(torch, batch=2, seq=8, test_batch=2, test_seq=11)


# ------------------------------------------------- KV-cache decode steps, MoE, long context


def _decode_step_module(torch, hf_model, n_layers: int):
    """Wrap a HF causal LM as one step with an explicit KV cache in flat tensors.

    forward(input_ids, past_0_key, past_0_value, past_1_key, ...) builds a transformers
    DynamicCache from the past tensors (zero-length past = prefill) and returns
    (logits, present_0_key, present_0_value, ...): what the cache holds after the step.
    No attention_mask: the causal mask and the positions come from the cache length.
    """
    from transformers import DynamicCache

    class DecodeStep(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, *past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(n_layers)])
            out = self.m(input_ids=input_ids, cache=cache, use_cache=True, return_dict=True)
            flat = [out.logits]
            for layer in out.cache.layers:
                flat += [layer.keys, layer.values]
            return tuple(flat)

    return DecodeStep(hf_model).eval()


def _kv_names(n_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return ["input_ids"] + past, ["logits"] + present


def _kv_dynamic(n_layers: int) -> dict:
    """dynamic_axes for a decode step: input_ids [1,'seq'], past [1,H,'past',D], present [1,H,'total',D]."""
    ins, outs = _kv_names(n_layers)
    return {
        "dims": {"seq": 1, "past": 7},
        "axes": {"input_ids": {1: "seq"}, **{n: {2: "past"} for n in ins[1:]}},
        "out_axes": {"logits": {1: "seq"}, **{n: {2: "total"} for n in outs[1:]}},
    }


def _kv_build(torch, step, n_layers: int, kv_shapes: list[tuple[int, int]], seed: int, trace_seq: int = 3):
    """(module, names, example, test, outputs) for a decode step.

    kv_shapes: (heads, dim) of the cached key and value tensors. Traced at seq=trace_seq,
    past=5 (random past); the test data is a decode step: seq=1, past=7, the past being
    the present outputs of the step module on a 7-token prompt (empty past), input_ids
    the greedy next token.
    """
    ins, outs = _kv_names(n_layers)
    g = torch.Generator().manual_seed(seed)

    def past(n, random=True):
        return [torch.randn(1, h, n, d, generator=g) if random else torch.zeros(1, h, n, d)
                for _ in range(n_layers) for (h, d) in kv_shapes]

    example = [torch.randint(0, 256, (1, trace_seq), generator=g)] + past(5)
    prompt = torch.randint(0, 256, (1, 7), generator=g)
    pre = step(prompt, *past(0, random=False))
    nxt = pre[0][:, -1:].argmax(-1)
    test = [nxt] + [t.clone() for t in pre[1:]]
    return step, ins, example, test, outs


def _kv_generate(torch, step, model: onnx.ModelProto, n_layers: int, kv_shapes, prompt: list[int],
                 steps: int, hf_model=None) -> dict:
    """Greedy decoding with onnxruntime: prefill (past of length 0) then `steps` decode steps
    feeding present -> past. Checked against the same loop in torch (and HF generate)."""
    ins, _ = _kv_names(n_layers)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    empty = [np.zeros((1, h, 0, d), np.float32) for _ in range(n_layers) for (h, d) in kv_shapes]

    def greedy(run):
        ids = np.array([prompt], np.int64)
        past, toks = empty, []
        for _ in range(steps + 1):
            res = run(ids, past)
            toks.append(int(res[0][0, -1].argmax()))
            ids, past = np.array([[toks[-1]]], np.int64), res[1:]
        return toks

    ort_out, torch_out = [], []

    def run_ort(ids, past):
        r = sess.run(None, dict(zip(ins, [ids] + list(past))))
        ort_out.append(r)
        return r

    def run_torch(ids, past):
        r = [t.numpy() for t in step(torch.from_numpy(ids), *[torch.from_numpy(np.ascontiguousarray(p)) for p in past])]
        torch_out.append(r)
        return r

    toks = greedy(run_ort)
    toks_torch = greedy(run_torch)
    assert toks == toks_torch, (toks, toks_torch)
    diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for ra, rb in zip(ort_out, torch_out)
               for a, b in zip(ra, rb))
    if hf_model is not None:
        import copy

        gc = copy.deepcopy(hf_model.generation_config)
        # no early stop: an empty eos list (None would fall back to the model's eos token)
        gc.update(max_new_tokens=steps + 1, do_sample=False, use_cache=True, eos_token_id=[], pad_token_id=0)
        gen = hf_model.generate(torch.tensor([prompt]), generation_config=gc)
        hf = gen[0, len(prompt):].tolist()
        assert hf == toks, (hf, toks)
    return {"prompt": prompt, "steps": steps, "tokens": toks, "max_abs_diff_ort_vs_torch": diff}


def _llama_model(torch, max_position_embeddings: int = 64):
    """build_llama's LlamaForCausalLM (same seeds, same weights)."""
    return build_llama(torch, max_position_embeddings=max_position_embeddings)[0].m


def build_llama_kv(torch):
    return _kv_build(torch, _decode_step_module(torch, _llama_model(torch), 2), 2, [(2, 16), (2, 16)], SEED + 13)


def case_llama_kv():
    torch, step, model = _torch_case(
        "llama_kv", build_llama_kv, dynamo=False, source=LLAMA_SRC, dynamic=_kv_dynamic(2),
        description="LLaMA causal LM (the llama_ts model) as one step with a KV cache: input_ids[1,'seq'], "
                    "past_key_values.{0,1}.{key,value}[1,2,'past',16] -> logits[1,'seq',256], "
                    "present.{0,1}.{key,value}[1,2,past+seq,16] (transformers DynamicCache built from the past "
                    "tensors, causal mask and positions from the cache length, no attention_mask). Traced at "
                    "seq=3, past=5; test data is a decode step seq=1, past=7 (the present of a 7-token prompt); "
                    "past=0 (prefill) works too, see generate.json. TorchScript exporter.")
    g = torch.Generator().manual_seed(SEED + 14)
    prompt = torch.randint(0, 256, (8,), generator=g).tolist()
    info = _kv_generate(torch, step, model, 2, [(2, 16), (2, 16)], prompt, 8, hf_model=step.m)
    (OUT_ROOT / "llama_kv" / "generate.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"  generate.json: {info}")


def build_llama_long(torch, seq=2048):
    """build_llama's config with `seq` positions, run over `seq` tokens; only the last
    position's logits are returned (keeps the reference output small)."""
    hf = _llama_model(torch, max_position_embeddings=seq)

    class LlamaLast(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0][:, -1:, :]

    g = torch.Generator().manual_seed(SEED + 15)
    example = [torch.randint(0, 256, (1, seq), generator=g)]
    test = [torch.randint(0, 256, (1, seq), generator=g)]
    return LlamaLast(hf).eval(), ["input_ids"], example, test, "logits"


def _expert_routes(torch, model, input_ids) -> list[set[int]]:
    """The set of experts each MoE layer routes to for input_ids (in layer order)."""
    hit: list[set[int]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: hit.append(set(args[1].flatten().tolist())))
             for name, m in model.named_modules() if name.endswith(".experts")]
    try:
        model(input_ids=input_ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return hit


def _moe_ids(torch, model, g, n_experts: int, seq: int = 8):
    """Draw input_ids [1,seq] from g until every MoE layer routes some token to every
    expert. The eager expert loop is traced as one unrolled branch per expert that the
    example routes to (it iterates over NonZero's result, with split sizes fixed at
    trace time), so that graph only runs for inputs that hit the same number of
    experts in each layer: the example and the test input both hit all of them."""
    for _ in range(1000):
        ids = torch.randint(0, 256, (1, seq), generator=g)
        routes = _expert_routes(torch, model, ids)
        if routes and all(len(r) == n_experts for r in routes):
            return ids
    raise RuntimeError("no input routes to every expert")


def _moe_build(torch, hf, n_experts: int, seed: int):
    class CausalLM(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0]

    g = torch.Generator().manual_seed(seed)
    example = [_moe_ids(torch, hf, g, n_experts)]
    test = [_moe_ids(torch, hf, g, n_experts)]
    return CausalLM(hf).eval(), ["input_ids"], example, test, "logits"


# What the tiny MoE configs share (the llama_ts decoder's sizes).
_TINY_MOE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    use_cache=False,
    attn_implementation="eager",
)


def _hf_moe(torch, config_cls, model_cls, experts: str, seed: int, **config):
    """A tiny random MoE causal LM: _TINY_MOE plus `config`, its parameters perturbed."""
    torch.manual_seed(SEED)
    cfg = config_cls(**{**_TINY_MOE, **config}, experts_implementation=experts)
    model = perturb(torch, model_cls(cfg).eval(), seed)
    assert model.config._attn_implementation == "eager"
    assert model.config._experts_implementation == experts
    return model


def _mixtral_model(torch, experts: str):
    from transformers import MixtralConfig, MixtralForCausalLM

    return _hf_moe(torch, MixtralConfig, MixtralForCausalLM, experts, SEED + 113,
                   num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)


def _qwen2_moe_model(torch, experts: str):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    return _hf_moe(torch, Qwen2MoeConfig, Qwen2MoeForCausalLM, experts, SEED + 114,
                   num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                   moe_intermediate_size=64, shared_expert_intermediate_size=128,
                   decoder_sparse_step=1, norm_topk_prob=False)


def _deepseek_v3_model(torch, experts: str):
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    model = _hf_moe(
        torch, DeepseekV3Config, DeepseekV3ForCausalLM, experts, SEED + 115,
        moe_intermediate_size=64,
        first_k_dense_replace=1,  # layer 0 dense MLP, layer 1 MoE
        num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8,
        qk_nope_head_dim=16, v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
        n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True,
        routed_scaling_factor=2.5)
    # The router's e_score_correction_bias is a buffer (zeros), not a parameter: give it noise too.
    g = torch.Generator().manual_seed(SEED + 116)
    for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
        if name.endswith("e_score_correction_bias"):
            b.add_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.1)
    return model


def _mk_moe(model_fn, experts: str, n_experts: int, seed: int):
    return lambda torch: _moe_build(torch, model_fn(torch, experts), n_experts, seed)


def build_deepseek_v3_kv(torch):
    hf = _deepseek_v3_model(torch, "batched_mm")
    # The MLA cache holds the compressed latents: key = kv_a_layernorm(c_kv) [1,1,S,32],
    # value = the RoPE'd shared k_rot [1,1,S,8]; k/v are expanded by kv_b_proj after the cache.
    return _kv_build(torch, _decode_step_module(torch, hf, 2), 2, [(1, 32), (1, 8)], SEED + 17)


def case_deepseek_v3_kv():
    torch, step, model = _torch_case(
        "deepseek_v3_kv", build_deepseek_v3_kv, dynamo=False, source=DEEPSEEK_V3_SRC + ", experts=batched_mm)",
        dynamic=_kv_dynamic(2),
        description="DeepSeek-V3 causal LM (the deepseek_v3 model, experts in the batched_mm form) as one step "
                    "with a KV cache: input_ids[1,'seq'], past_key_values.{0,1}.key[1,1,'past',32] (MLA latent "
                    "c_kv after kv_a_layernorm) and .value[1,1,'past',8] (shared RoPE key) -> logits[1,'seq',256] "
                    "and the presents [1,1,past+seq,32|8]. Traced at seq=3, past=5; test data is a decode step "
                    "seq=1, past=7 (the present of a 7-token prompt); past=0 (prefill) works too, see "
                    "generate.json. TorchScript exporter.")
    g = torch.Generator().manual_seed(SEED + 18)
    prompt = torch.randint(0, 256, (8,), generator=g).tolist()
    info = _kv_generate(torch, step, model, 2, [(1, 32), (1, 8)], prompt, 8, hf_model=step.m)
    (OUT_ROOT / "deepseek_v3_kv" / "generate.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"  generate.json: {info}")


MIXTRAL_SRC = ("transformers.MixtralForCausalLM(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, "
               "experts=4, top-2, vocab=256, eager attention")
QWEN2_MOE_SRC = ("transformers.Qwen2MoeForCausalLM(hidden=64, layers=2, heads=4, kv_heads=2, qkv bias, experts=4, "
                 "top-2, moe_intermediate=64, shared expert 128 with sigmoid gate, vocab=256, eager attention")
DEEPSEEK_V3_SRC = ("transformers.DeepseekV3ForCausalLM(hidden=64, layers=2 (layer 0 dense intermediate=128, layer 1 "
                   "MoE), heads=4, MLA q_lora=32 kv_lora=32 qk_nope=16 qk_rope=8 (interleaved) v=16, routed "
                   "experts=4 top-2 (sigmoid scores + correction bias, n_group=1), 1 shared expert, "
                   "moe_intermediate=64, vocab=256, eager attention")
LLAMA_LONG_SRC = LLAMA_SRC.replace("vocab=256,", "vocab=256, max_positions=2048,")


# ---------------------------------------------------------- onnx.helper models


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.array(arr, order="C"), name)


def build_attention_block() -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """One multi-head self-attention block, static shapes [1, 8, 32], 4 heads."""
    B, S, D, H = 1, 8, 32, 4
    Dh = D // H
    r = rng(10)
    w = lambda *s: (r.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    inits = [
        _init("Wq", w(D, D)), _init("bq", w(D)),
        _init("Wk", w(D, D)), _init("bk", w(D)),
        _init("Wv", w(D, D)), _init("bv", w(D)),
        _init("Wo", w(D, D)), _init("bo", w(D)),
        _init("split_shape", np.array([B, S, H, Dh], dtype=np.int64)),
        _init("merge_shape", np.array([B, S, D], dtype=np.int64)),
        _init("scale", np.array(np.sqrt(Dh), dtype=np.float32)),
    ]
    nodes = []
    for p in ("q", "k", "v"):
        P = p.upper()
        nodes += [
            helper.make_node("MatMul", ["x", f"W{p}"], [f"{p}_mm"], name=f"{P}_proj"),
            helper.make_node("Add", [f"{p}_mm", f"b{p}"], [f"{p}_b"], name=f"{P}_bias"),
            helper.make_node("Reshape", [f"{p}_b", "split_shape"], [f"{p}_4d"], name=f"{P}_split_heads"),
        ]
    nodes += [
        # [B,S,H,Dh] -> [B,H,S,Dh]; K additionally -> [B,H,Dh,S]
        helper.make_node("Transpose", ["q_4d"], ["q_h"], perm=[0, 2, 1, 3], name="Q_transpose"),
        helper.make_node("Transpose", ["k_4d"], ["k_t"], perm=[0, 2, 3, 1], name="K_transpose"),
        helper.make_node("Transpose", ["v_4d"], ["v_h"], perm=[0, 2, 1, 3], name="V_transpose"),
        helper.make_node("MatMul", ["q_h", "k_t"], ["scores"], name="QK"),
        helper.make_node("Div", ["scores", "scale"], ["scores_scaled"], name="scale"),
        helper.make_node("Softmax", ["scores_scaled"], ["probs"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["probs", "v_h"], ["ctx_h"], name="PV"),
        helper.make_node("Transpose", ["ctx_h"], ["ctx_t"], perm=[0, 2, 1, 3], name="merge_transpose"),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["ctx"], name="merge_heads"),
        helper.make_node("MatMul", ["ctx", "Wo"], ["o_mm"], name="O_proj"),
        helper.make_node("Add", ["o_mm", "bo"], ["y"], name="O_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, D])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tessera-models")
    model.ir_version = 8
    x = r.standard_normal((B, S, D)).astype(np.float32)
    return model, [x]


def build_mlp_block(seq_dim: int | str = 8) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Transformer MLP: MatMul+Add, erf-GELU, MatMul+Add, residual, LayerNormalization."""
    B, D, F = 1, 32, 64
    S_test = 8 if isinstance(seq_dim, int) else 12
    r = rng(11)
    w = lambda *s: (r.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    inits = [
        _init("W1", w(D, F)), _init("b1", w(F)),
        _init("W2", w(F, D)), _init("b2", w(D)),
        _init("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32)),
        _init("one", np.array(1.0, dtype=np.float32)),
        _init("half", np.array(0.5, dtype=np.float32)),
        _init("ln_gamma", (1.0 + 0.1 * r.standard_normal(D)).astype(np.float32)),
        _init("ln_beta", (0.1 * r.standard_normal(D)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h_mm"], name="fc1"),
        helper.make_node("Add", ["h_mm", "b1"], ["h"], name="fc1_bias"),
        # GELU(h) = 0.5 * h * (1 + erf(h / sqrt(2)))
        helper.make_node("Div", ["h", "sqrt2"], ["h_div"], name="gelu_div"),
        helper.make_node("Erf", ["h_div"], ["h_erf"], name="gelu_erf"),
        helper.make_node("Add", ["h_erf", "one"], ["h_erf1"], name="gelu_add1"),
        helper.make_node("Mul", ["h", "h_erf1"], ["h_mul"], name="gelu_mul"),
        helper.make_node("Mul", ["h_mul", "half"], ["g"], name="gelu_half"),
        helper.make_node("MatMul", ["g", "W2"], ["o_mm"], name="fc2"),
        helper.make_node("Add", ["o_mm", "b2"], ["o"], name="fc2_bias"),
        helper.make_node("Add", ["o", "x"], ["res"], name="residual"),
        helper.make_node("LayerNormalization", ["res", "ln_gamma", "ln_beta"], ["y"],
                         axis=-1, epsilon=1e-5, name="layernorm"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp_block" if isinstance(seq_dim, int) else "mlp_block_dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, seq_dim, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, seq_dim, D])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tessera-models")
    model.ir_version = 8
    x = r.standard_normal((B, S_test, D)).astype(np.float32)
    return model, [x]


def case_attention_block():
    m, inputs = build_attention_block()
    save_case("attention_block", m, inputs, source="onnx.helper (models/generate.py)", exporter="onnx-helper",
              description="Multi-head self-attention block: Q/K/V MatMul+bias Add, Reshape+Transpose head split "
                          "(4 heads x 8), MatMul QK^T, Div by sqrt(8), Softmax, MatMul V, Transpose+Reshape merge, "
                          "output projection MatMul+Add. Static shape [1,8,32]; no mask.")


def case_mlp_block():
    m, inputs = build_mlp_block(8)
    save_case("mlp_block", m, inputs, source="onnx.helper (models/generate.py)", exporter="onnx-helper",
              description="Transformer MLP block: MatMul+Add (32->64), GELU written as "
                          "0.5*h*(1+Erf(h/sqrt2)), MatMul+Add (64->32), residual Add, LayerNormalization. "
                          "Static shape [1,8,32].")


def _quantized_mlp_block(quant_format, **options) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """mlp_block through onnxruntime's static quantizer (int8 weights per output
    channel, uint8 activations) in `quant_format`, calibrated on 16 seeded
    random inputs."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    m, inputs = build_mlp_block(8)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(7)
            self.feeds = iter([{"x": rng.standard_normal((1, 8, 32)).astype(np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quantized.onnx"
        onnx.save_model(m, str(src))
        quantize_static(str(src), str(dst), Reader(), quant_format=quant_format, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **options)
        return onnx.load(str(dst)), inputs


def case_mlp_block_qdq():
    """mlp_block quantized by onnxruntime's own static quantizer (QDQ)."""
    from onnxruntime.quantization import QuantFormat

    q, inputs = _quantized_mlp_block(QuantFormat.QDQ)
    save_case("mlp_block_qdq", q, inputs, source="onnxruntime.quantization.quantize_static (models/generate.py)",
              exporter="onnx-helper + onnxruntime quantizer",
              description="mlp_block after onnxruntime's static quantizer: QuantizeLinear/DequantizeLinear "
                          "pairs on the inputs and outputs of every MatMul, Add and Mul, int8 weights per output channel, uint8 activations "
                          "calibrated on 16 seeded random inputs. Static shape [1,8,32].")


def case_mlp_block_dynamic():
    m, inputs = build_mlp_block("seq")
    save_case("mlp_block_dynamic", m, inputs, source="onnx.helper (models/generate.py)", exporter="onnx-helper",
              dims={"seq": 12},
              description="Same graph as mlp_block but the input/output shape is [1, 'seq', 32] with a symbolic "
                          "dim_param 'seq' (bind seq=12 for the test data).")


def case_gpt2_fp16_converted():
    """gpt2_ts converted by onnxruntime's float16 tool, keeping f32 inputs/outputs.

    Every op computes in float16 inside (Cast at the edges); onnxruntime's outputs of
    the converted model are the reference, so a checker must round where ONNX rounds.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src = OUT_ROOT / "gpt2_ts"
    if not (src / "model.onnx").exists():
        CASES["gpt2_ts"]()
    model = convert_float_to_float16(onnx.load(src / "model.onnx"), keep_io_types=True)
    inputs = [numpy_helper.to_array(onnx.load_tensor(p))
              for p in sorted((src / "test_data_set_0").glob("input_*.pb"))]
    save_case("gpt2_fp16_converted", model, inputs,
              source="models/gpt2_ts converted by onnxruntime.transformers.float16 (keep_io_types=True)",
              exporter="torchscript + float16 conversion",
              description="GPT-2 LM (tiny) with every op in float16 between float32 inputs/outputs: "
                          "input_ids[1,8] -> logits[1,8,256] float32; reference = onnxruntime on the "
                          "converted model.")


def case_mlp_block_qop():
    """mlp_block quantized by onnxruntime's static quantizer in the operator
    format: QuantizeLinear -> QLinearMatMul -> DequantizeLinear around each
    MatMul."""
    from onnxruntime.quantization import QuantFormat

    q, inputs = _quantized_mlp_block(QuantFormat.QOperator, op_types_to_quantize=["MatMul"])
    save_case("mlp_block_qop", q, inputs, source="onnxruntime.quantization.quantize_static (models/generate.py)",
              exporter="onnx-helper + onnxruntime quantizer",
              description="mlp_block after onnxruntime's static quantizer in the operator format: "
                          "QuantizeLinear -> QLinearMatMul -> DequantizeLinear for each MatMul, int8 weights "
                          "per output channel, uint8 activations calibrated on 16 seeded random inputs; "
                          "the rest stays float. Static shape [1,8,32].")


def _mk_qdq(base: str, what: str):
    """A case: models/<base> after onnxruntime's own static quantizer (QDQ, int8
    weights per output channel, uint8 activations, MatMul and Gemm quantized),
    calibrated on 8 seeded random inputs; onnxruntime on the quantized model is
    the reference."""

    def case():
        import tempfile

        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        src = OUT_ROOT / base
        if not (src / "model.onnx").exists():
            CASES[base]()
        model = onnx.load(src / "model.onnx")
        inputs = [numpy_helper.to_array(onnx.load_tensor(p))
                  for p in sorted((src / "test_data_set_0").glob("input_*.pb"))]
        names = [i.name for i in model.graph.input]

        def feed(rng, name, like):
            if name == "input_ids":
                return rng.integers(0, 256, size=like.shape).astype(like.dtype)
            if name == "token_type_ids":
                return np.zeros_like(like)
            if like.dtype == np.int64:  # attention masks: attend everywhere
                return np.ones_like(like)
            return rng.standard_normal(like.shape).astype(like.dtype)

        class Reader(CalibrationDataReader):
            def __init__(self):
                rng = np.random.default_rng(7)
                self.feeds = iter([{n: feed(rng, n, x) for n, x in zip(names, inputs)} for _ in range(8)])

            def get_next(self):
                return next(self.feeds, None)

        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "qdq.onnx"
            quantize_static(str(src / "model.onnx"), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["MatMul", "Gemm"])
            q = onnx.load(str(dst))
        save_case(f"{base}_qdq", q, inputs,
                  source=f"models/{base} quantized by onnxruntime.quantization.quantize_static (models/generate.py)",
                  exporter="torchscript + onnxruntime quantizer",
                  description=f"{what} after onnxruntime's static quantizer: QuantizeLinear/DequantizeLinear "
                              "on every MatMul's and Gemm's inputs, int8 weights per output channel, uint8 "
                              "activations calibrated on 8 seeded random inputs; reference = onnxruntime on "
                              "the quantized model.")

    return case


def _float_model(base: str):
    """models/<base> (generated first if missing) and its test inputs."""
    src = OUT_ROOT / base
    if not (src / "model.onnx").exists():
        CASES[base]()
    inputs = [numpy_helper.to_array(onnx.load_tensor(p))
              for p in sorted((src / "test_data_set_0").glob("input_*.pb"))]
    return src, inputs


def _mk_dynq(base: str, what: str):
    """A case: models/<base> after onnxruntime's own dynamic quantizer (int8
    weights per output channel; each MatMul's activations quantized at run time
    by DynamicQuantizeLinear to uint8 with a computed scale and zero point, then
    MatMulInteger); onnxruntime on the quantized model is the reference."""

    def case():
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        src, inputs = _float_model(base)
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "dynamic.onnx"
            quantize_dynamic(str(src / "model.onnx"), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
            q = onnx.load(str(dst))
        save_case(f"{base}_dynq", q, inputs,
                  source=f"models/{base} quantized by onnxruntime.quantization.quantize_dynamic (models/generate.py)",
                  exporter="onnxruntime quantizer",
                  description=f"{what} after onnxruntime's dynamic quantizer: every MatMul becomes "
                              "DynamicQuantizeLinear (uint8 activations, scale and zero point computed at run "
                              "time) + MatMulInteger with int8 weights per output channel; reference = "
                              "onnxruntime on the quantized model.")

    return case


# ----------------------------------------------------------------------- registry

CASES: dict[str, Callable[[], None]] = {
    "gpt2_ts": _mk_torch("gpt2_ts", build_gpt2, False, GPT2_SRC,
                         "GPT-2 LM (tiny, random weights), input_ids[1,8] -> logits[1,8,256]; "
                         "TorchScript exporter, static shapes."),
    "gpt2_dynamo": _mk_torch("gpt2_dynamo", build_gpt2, True, GPT2_SRC,
                             "GPT-2 LM (tiny, random weights), input_ids[1,8] -> logits[1,8,256]; "
                             "dynamo exporter (torch.export + onnxscript), static shapes."),
    "gpt2_dynamic": _mk_torch("gpt2_dynamic", gpt2_dynamic_build, False, GPT2_SRC,
                              "GPT-2 LM exported by TorchScript with dynamic_axes: input_ids['batch','seq'] -> "
                              "logits['batch','seq',256]. Traced at [2,8]; test data is [2,11].",
                              dynamic=GPT2_DYNAMIC),
    "gpt2_dynamo_dynamic": _mk_torch("gpt2_dynamo_dynamic", gpt2_dynamic_build, True, GPT2_SRC,
                                     "GPT-2 LM exported by the dynamo exporter with torch.export.Dim dynamic "
                                     "shapes: input_ids['batch','seq'] -> logits['batch','seq',256]. "
                                     "Traced at [2,8]; test data is [2,11].",
                                     dynamic=GPT2_DYNAMIC),
    "gpt2_fp16": _mk_torch("gpt2_fp16", build_gpt2_fp16, False, GPT2_SRC,
                           "GPT-2 LM (tiny, random weights) in float16 (torch .half()), input_ids[1,8] -> "
                           "logits[1,8,256] float16; TorchScript exporter, static shapes."),
    "bert_ts": _mk_torch("bert_ts", build_bert, False, BERT_SRC,
                         "BERT encoder (tiny, random weights), input_ids/attention_mask/token_type_ids [1,8] int64 "
                         "-> last_hidden_state[1,8,32]; mask has 3 padding zeros. TorchScript exporter."),
    "bert_dynamo": _mk_torch("bert_dynamo", build_bert, True, BERT_SRC,
                             "BERT encoder (tiny, random weights), input_ids/attention_mask/token_type_ids [1,8] "
                             "int64 -> last_hidden_state[1,8,32]; mask has 3 padding zeros. Dynamo exporter."),
    "llama_ts": _mk_torch("llama_ts", build_llama, False, LLAMA_SRC,
                          "LLaMA causal LM (tiny, random weights, GQA 4 q heads / 2 kv heads, RoPE, RMSNorm, SwiGLU), "
                          "input_ids[1,8] -> logits[1,8,256]. TorchScript exporter."),
    "llama_dynamo": _mk_torch("llama_dynamo", build_llama, True, LLAMA_SRC,
                              "LLaMA causal LM (tiny, random weights, GQA 4 q heads / 2 kv heads, RoPE, RMSNorm, "
                              "SwiGLU), input_ids[1,8] -> logits[1,8,256]. Dynamo exporter."),
    "vit_ts": _mk_torch("vit_ts", build_vit, False, VIT_SRC,
                        "ViT encoder (tiny, random weights), pixel_values[1,3,32,32] float32 -> "
                        "last_hidden_state[1,17,32] (16 patches + CLS). TorchScript exporter."),
    "vit_dynamo": _mk_torch("vit_dynamo", build_vit, True, VIT_SRC,
                            "ViT encoder (tiny, random weights), pixel_values[1,3,32,32] float32 -> "
                            "last_hidden_state[1,17,32] (16 patches + CLS). Dynamo exporter."),
    "opt_ts": _mk_torch("opt_ts", build_opt, False, OPT_SRC,
                        "OPT causal LM (tiny, random weights), input_ids/attention_mask [1,8] int64 -> "
                        "logits[1,8,256]; mask has 3 padding zeros, position ids from CumSum(attention_mask). "
                        "TorchScript exporter."),
    "opt_dynamo": _mk_torch("opt_dynamo", build_opt, True, OPT_SRC,
                            "OPT causal LM (tiny, random weights), input_ids/attention_mask [1,8] int64 -> "
                            "logits[1,8,256]; mask has 3 padding zeros, position ids from CumSum(attention_mask). "
                            "Dynamo exporter."),
    "roberta_ts": _mk_torch("roberta_ts", build_roberta, False, ROBERTA_SRC,
                            "RoBERTa encoder (tiny, random weights), input_ids/attention_mask [1,8] int64 -> "
                            "last_hidden_state[1,8,32]; mask has 3 padding zeros (pad token 1), position ids from "
                            "CumSum(input_ids != 1). TorchScript exporter."),
    "roberta_dynamo": _mk_torch("roberta_dynamo", build_roberta, True, ROBERTA_SRC,
                                "RoBERTa encoder (tiny, random weights), input_ids/attention_mask [1,8] int64 -> "
                                "last_hidden_state[1,8,32]; mask has 3 padding zeros (pad token 1), position ids "
                                "from CumSum(input_ids != 1). Dynamo exporter."),
    "bloom_ts": _mk_torch("bloom_ts", build_bloom, False, BLOOM_SRC,
                          "BLOOM causal LM (tiny, random weights, ALiBi), input_ids/attention_mask [1,8] int64 -> "
                          "logits[1,8,256]; mask has 3 padding zeros, ALiBi positions from CumSum(attention_mask). "
                          "TorchScript exporter."),
    "bloom_dynamo": _mk_torch("bloom_dynamo", build_bloom, True, BLOOM_SRC,
                              "BLOOM causal LM (tiny, random weights, ALiBi), input_ids/attention_mask [1,8] int64 "
                              "-> logits[1,8,256]; mask has 3 padding zeros, ALiBi positions from "
                              "CumSum(attention_mask). Dynamo exporter."),
    "deberta_v2_ts": _mk_torch("deberta_v2_ts", build_deberta_v2, False, DEBERTA_V2_SRC,
                               "DeBERTa-v2 encoder (tiny, random weights, disentangled attention with log-bucketed "
                               "relative positions), input_ids/attention_mask [1,8] int64 -> "
                               "last_hidden_state[1,8,32]; mask has 3 padding zeros. TorchScript exporter."),
    "deberta_v2_dynamo": _mk_torch("deberta_v2_dynamo", build_deberta_v2, True, DEBERTA_V2_SRC,
                                   "DeBERTa-v2 encoder (tiny, random weights, disentangled attention with "
                                   "log-bucketed relative positions), input_ids/attention_mask [1,8] int64 -> "
                                   "last_hidden_state[1,8,32]; mask has 3 padding zeros. Dynamo exporter."),
    "swin_ts": _mk_torch("swin_ts", build_swin, False, SWIN_SRC,
                         "Swin encoder (tiny, random weights, window 4, shifted windows, patch merging), "
                         "pixel_values[1,3,32,32] float32 -> last_hidden_state[1,64,32]. TorchScript exporter."),
    "swin_dynamo": _mk_torch("swin_dynamo", build_swin, True, SWIN_SRC,
                             "Swin encoder (tiny, random weights, window 4, shifted windows, patch merging), "
                             "pixel_values[1,3,32,32] float32 -> last_hidden_state[1,64,32]. Dynamo exporter."),
    "convnext_ts": _mk_torch("convnext_ts", build_convnext, False, CONVNEXT_SRC,
                             "ConvNeXt (tiny, random weights, depthwise 7x7 Conv, channels-last LayerNorm, "
                             "layer scale), pixel_values[1,3,32,32] float32 -> last_hidden_state[1,32,4,4]. "
                             "TorchScript exporter."),
    "convnext_dynamo": _mk_torch("convnext_dynamo", build_convnext, True, CONVNEXT_SRC,
                                 "ConvNeXt (tiny, random weights, depthwise 7x7 Conv, channels-last LayerNorm, "
                                 "layer scale), pixel_values[1,3,32,32] float32 -> last_hidden_state[1,32,4,4]. "
                                 "Dynamo exporter."),
    "whisper_ts": _mk_torch("whisper_ts", build_whisper, False, WHISPER_SRC,
                            "Whisper encoder-decoder (tiny, random weights, two Conv1d + GELU front end, "
                            "cross-attention), input_features[1,16,32] float32, decoder_input_ids[1,6] int64 -> "
                            "decoder last_hidden_state[1,6,32]. TorchScript exporter."),
    "whisper_dynamo": _mk_torch("whisper_dynamo", build_whisper, True, WHISPER_SRC,
                                "Whisper encoder-decoder (tiny, random weights, two Conv1d + GELU front end, "
                                "cross-attention), input_features[1,16,32] float32, decoder_input_ids[1,6] int64 "
                                "-> decoder last_hidden_state[1,6,32]. Dynamo exporter."),
    "clip_ts": _mk_torch("clip_ts", build_clip, False, CLIP_SRC,
                         "CLIP (tiny, random weights, text and vision towers, ArgMax end-token pooling, "
                         "normalized projections), input_ids/attention_mask[2,8] int64, pixel_values[1,3,32,32] "
                         "-> logits_per_image[1,2]. TorchScript exporter."),
    "clip_dynamo": _mk_torch("clip_dynamo", build_clip, True, CLIP_SRC,
                             "CLIP (tiny, random weights, text and vision towers, ArgMax end-token pooling, "
                             "normalized projections), input_ids/attention_mask[2,8] int64, "
                             "pixel_values[1,3,32,32] -> logits_per_image[1,2]. Dynamo exporter."),
    "gpt2_fp16_converted": case_gpt2_fp16_converted,
    "attention_block": case_attention_block,
    "mlp_block": case_mlp_block,
    "mlp_block_dynamic": case_mlp_block_dynamic,
    "mlp_block_qdq": case_mlp_block_qdq,
    "mlp_block_qop": case_mlp_block_qop,
    "gpt2_ts_qdq": _mk_qdq("gpt2_ts", "GPT-2 LM (tiny)"),
    "bert_ts_qdq": _mk_qdq("bert_ts", "BERT encoder (tiny)"),
    "llama_ts_qdq": _mk_qdq("llama_ts", "LLaMA LM (tiny, GQA)"),
    "mlp_block_dynq": _mk_dynq("mlp_block", "mlp_block"),
    "gpt2_ts_dynq": _mk_dynq("gpt2_ts", "GPT-2 LM (tiny)"),
    "bert_ts_dynq": _mk_dynq("bert_ts", "BERT encoder (tiny)"),
    "llama_ts_dynq": _mk_dynq("llama_ts", "LLaMA LM (tiny, GQA)"),
    "llama_kv": case_llama_kv,
    **{f"gpt2_long_{n // 1024}k": _mk_torch(
        f"gpt2_long_{n // 1024}k", lambda torch, n=n: build_gpt2_long(torch, n), False,
        GPT2_SRC.replace("n_positions=64", f"n_positions={n}"),
        f"GPT-2 LM (n_positions={n}) over input_ids[1,{n}] -> logits of the last position only "
        "[1,1,256]. TorchScript exporter.") for n in (2048, 4096, 8192)},
    "llama_long_8k": _mk_torch("llama_long_8k", lambda torch: build_llama_long(torch, 8192), False,
                               LLAMA_LONG_SRC.replace("2048", "8192"),
                               "LLaMA causal LM (the llama_ts weights, max_position_embeddings=8192) over "
                               "input_ids[1,8192] -> logits of the last position only [1,1,256]. TorchScript "
                               "exporter."),
    "llama_long_4k": _mk_torch("llama_long_4k", lambda torch: build_llama_long(torch, 4096), False,
                               LLAMA_LONG_SRC.replace("2048", "4096"),
                               "LLaMA causal LM (the llama_ts weights, max_position_embeddings=4096) over "
                               "input_ids[1,4096] -> logits of the last position only [1,1,256]. TorchScript "
                               "exporter."),
    "llama_long": _mk_torch("llama_long", build_llama_long, False, LLAMA_LONG_SRC,
                            "LLaMA causal LM (the llama_ts weights, max_position_embeddings=2048) over "
                            "input_ids[1,2048] -> logits of the last position only [1,1,256]. TorchScript "
                            "exporter."),
    "mixtral_moe": _mk_torch("mixtral_moe", _mk_moe(_mixtral_model, "eager", 4, SEED + 19), False,
                             MIXTRAL_SRC + ", experts=eager)",
                             "Mixtral sparse-MoE causal LM (tiny, 4 experts, top-2 softmax router), input_ids[1,8] "
                             "-> logits[1,8,256]; experts_implementation='eager' (the loop over the hit experts: "
                             "OneHot/NonZero, Gather of the routed tokens, ScatterElements-add back). The loop is "
                             "unrolled at trace time: the graph runs only for inputs that route to all 4 experts in "
                             "every layer (example and test input do). TorchScript exporter."),
    "mixtral_moe_batched": _mk_torch("mixtral_moe_batched", _mk_moe(_mixtral_model, "batched_mm", 4, SEED + 19), False,
                                     MIXTRAL_SRC + ", experts=batched_mm)",
                                     "mixtral_moe's model and test input with experts_implementation='batched_mm': "
                                     "every token's top-2 expert weights gathered ([S,2I,H] Gather) and applied by "
                                     "batched MatMul, weighted sum over the top-k; valid for any input. "
                                     "TorchScript exporter."),
    "mixtral_moe_dynamo": _mk_torch("mixtral_moe_dynamo", _mk_moe(_mixtral_model, "batched_mm", 4, SEED + 19), True,
                                    MIXTRAL_SRC + ", experts=batched_mm)",
                                    "mixtral_moe_batched through the dynamo exporter (the eager expert loop does not "
                                    "export with dynamo: data-dependent loop length)."),
    "qwen2_moe": _mk_torch("qwen2_moe", _mk_moe(_qwen2_moe_model, "eager", 4, SEED + 20), False,
                           QWEN2_MOE_SRC + ", experts=eager)",
                           "Qwen2-MoE causal LM (tiny, 4 experts top-2 without renormalization, shared expert with "
                           "sigmoid gate, qkv bias), input_ids[1,8] -> logits[1,8,256]; experts_implementation="
                           "'eager' loop, unrolled at trace time (runs only for inputs that route to all 4 experts in "
                           "every layer; example and test input do). TorchScript exporter."),
    "qwen2_moe_batched": _mk_torch("qwen2_moe_batched", _mk_moe(_qwen2_moe_model, "batched_mm", 4, SEED + 20), False,
                                   QWEN2_MOE_SRC + ", experts=batched_mm)",
                                   "qwen2_moe's model and test input with experts_implementation='batched_mm' "
                                   "(gathered per-token expert weights, batched MatMul). TorchScript exporter."),
    "deepseek_v3": _mk_torch("deepseek_v3", _mk_moe(_deepseek_v3_model, "eager", 4, SEED + 21), False,
                             DEEPSEEK_V3_SRC + ", experts=eager)",
                             "DeepSeek-V3 causal LM (tiny; MLA attention with q/kv LoRA and interleaved RoPE; layer 0 "
                             "dense, layer 1 MoE with sigmoid router + correction bias, 4 routed experts top-2, "
                             "1 shared expert), input_ids[1,8] -> logits[1,8,256]; experts_implementation='eager' "
                             "loop, unrolled at trace time (runs only for inputs that route to all 4 experts; "
                             "example and test input do). TorchScript exporter."),
    "deepseek_v3_batched": _mk_torch("deepseek_v3_batched", _mk_moe(_deepseek_v3_model, "batched_mm", 4, SEED + 21),
                                     False, DEEPSEEK_V3_SRC + ", experts=batched_mm)",
                                     "deepseek_v3's model and test input with experts_implementation='batched_mm' "
                                     "(gathered per-token expert weights, batched MatMul). TorchScript exporter."),
    "deepseek_v3_kv": case_deepseek_v3_kv,
}


# Families generated only when named (into --root DIR): the Rust tests run every directory
# in models/ in ten configurations, and these long contexts take tens of seconds each, too
# long for the test suite; bench/long-context.sh generates and checks them.
PENDING: list[str] = ["gpt2_long_2k", "gpt2_long_4k", "gpt2_long_8k", "llama_long_4k", "llama_long_8k"]


def main(argv: list[str]) -> int:
    import argparse

    global OUT_ROOT
    ap = argparse.ArgumentParser(description="Generate the tiny ONNX model test assets.")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="directory to write <name>/ into (default: models/)")
    ap.add_argument("names", nargs="*",
                    help="models to generate (default: all except PENDING, which must be named)")
    args = ap.parse_args(argv)
    names = args.names or [n for n in CASES if n not in PENDING]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown model(s): {unknown}; known: {list(CASES)}")
        return 2
    OUT_ROOT = args.root.resolve()
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    ok = []
    for name in names:
        print(f"[{name}]")
        try:
            CASES[name]()
            self_check(name)
            ok.append(name)
        except Exception as e:  # record exporter failures instead of faking output
            msg = f"{type(e).__name__}: {e}".strip().splitlines()
            FAILURES[name] = "\n".join(msg[:8])
            traceback.print_exc()
            d = OUT_ROOT / name
            if d.exists():
                shutil.rmtree(d)
    print()
    print(f"ok ({len(ok)}): {', '.join(ok)}")
    for n, msg in FAILURES.items():
        print(f"FAILED {n}: {msg}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
