#!/usr/bin/env python3
"""Export a GPT-2-small- or LLaMA-7B-shaped model or a DeepSeek-V3 MoE block for compile-time and simulator measurements.

Not a test asset: the files are large and are written outside the
repository, on demand. Run from the repository root inside the pinned venv
(models/requirements.txt):

    python models/gen_large.py --layers 12 --out /tmp/gpt2_small_12
    python models/gen_large.py --layers 24 --out /tmp/gpt2_small_24
    python models/gen_large.py --arch llama-kv --layers 1 --out /tmp/llama7b_1
    python models/gen_large.py --arch llama-kv --layers 2 --out /tmp/llama7b_2
    python models/gen_large.py --arch deepseek-moe --out /tmp/dsmoe

Each writes OUT/model.onnx with its weights in OUT/model.onnx.data (external
data, every tensor above 1 KiB), traced with torch's TorchScript exporter
(dynamo=False, opset 17). `--data` also writes test_data_set_0/ (inputs and
onnxruntime's outputs) for `tessera check`.

`--arch gpt2` (the default): transformers.GPT2Model(n_embd=768, n_head=12,
n_layer=N (default 12), n_positions=1024, vocab=50257 unless --vocab) with
random weights (every parameter perturbed, so no two are equal), traced at
batch 1 and sequence 128 (--seq). The output is `last_hidden_state`.

`--arch llama-kv`: a LLaMA-7B-shaped decode step with its KV cache, built as
models/generate.py builds `llama_kv`: transformers.LlamaForCausalLM(hidden=4096,
heads=32, kv_heads=32, head_dim=128, intermediate=11008, rms_norm_eps=1e-6,
rope_theta=10000, max_position_embeddings=16384, untied lm_head, layers=N
(default 1), vocab=32000 unless --vocab, eager attention, float32), wrapped
as one step over an explicit cache: inputs `input_ids` [1, seq] and
`past_key_values.{i}.{key,value}` [1, 32, past, 128], outputs `logits`
[1, seq, vocab] and `present.{i}.{key,value}` [1, 32, past+seq, 128]
(symbolic dims `seq`, `past`, `total`; a transformers DynamicCache is built
from the past tensors, the causal mask and the positions come from the cache
length, no attention_mask). Traced at seq=3, past=5. Weights: HF's init plus
seeded noise, 0.1 on the norm gains (1-D) and 0.02 on the matrices (0.1 at
these widths would give attention logits of standard deviation ~40). One
layer is 202M parameters (0.8 GB in f32), embedding and lm_head 131M each.
`--data` writes a decode step: seq=1, past=7, random past tensors.

`--arch deepseek-moe`: one DeepSeek-V3-shaped mixture-of-experts block, not a
whole model: transformers' DeepseekV3MoE (its router, routed experts and
shared expert) from a DeepseekV3Config(hidden=7168, moe_intermediate=2048,
n_routed_experts=8 (--experts), num_experts_per_tok=2 (--top-k),
n_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob, routed scaling
2.5, float32), experts_implementation="batched_mm" as models/generate.py's
deepseek_v3_batched: the routed experts' [E, 4096, 7168] and [E, 7168, 2048]
tables are gathered by the token's expert ids, then batched MatMuls. Input
`hidden_states` [1, seq, 7168], output `output` [1, seq, 7168] (the block
output: routed experts plus shared expert, no residual; symbolic dim `seq`).
Traced at seq=1 (a decode step). Weights: HF's init plus seeded noise as for
llama-kv, 0.1 on 1-D tensors (the router's e_score_correction_bias, a zero
buffer otherwise) and 0.02 on the matrices. At the defaults, 396M parameters
(1.6 GB in f32). `--data` writes one token: seq=1, a random input.

Then, for example:

    cargo build --release
    target/release/tessera compile /tmp/gpt2_small_12/model.onnx --report
    target/release/tessera compile /tmp/llama7b_1/model.onnx --dim seq=1 --dim past=512 -o /tmp/l7.tnpu
    target/release/tessera compile /tmp/dsmoe/model.onnx --dim seq=1 -o /tmp/dsmoe.tnpu
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent
SEED = 1234


def save_external(proto: onnx.ModelProto, model_path: Path) -> None:
    """Writes model_path with every initializer over 1 KiB in model.onnx.data beside it, and checks it.

    An existing model.onnx.data is removed first: onnx appends to it otherwise."""
    (model_path.parent / "model.onnx.data").unlink(missing_ok=True)
    onnx.save_model(
        proto,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    onnx.checker.check_model(str(model_path))


def save_counted(proto: onnx.ModelProto, model_path: Path) -> tuple[int, int]:
    """save_external, then the model's node count and the bytes of its model.onnx.data."""
    save_external(proto, model_path)
    return len(proto.graph.node), (model_path.parent / "model.onnx.data").stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["gpt2", "llama-kv", "deepseek-moe"], default="gpt2")
    parser.add_argument("--layers", type=int, default=None, help="default: 12 (gpt2), 1 (llama-kv)")
    parser.add_argument("--seq", type=int, default=None, help="traced sequence length (gpt2 only; default 128)")
    parser.add_argument("--vocab", type=int, default=None, help="default: 50257 (gpt2), 32000 (llama-kv)")
    parser.add_argument("--experts", type=int, default=None, help="routed experts (deepseek-moe only; default 8)")
    parser.add_argument("--top-k", type=int, default=None, help="experts per token (deepseek-moe only; default 2)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", action="store_true", help="also write test_data_set_0/")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if ROOT.parent in out.parents or out == ROOT.parent:
        print(f"error: {out} is inside the repository; write it elsewhere", file=sys.stderr)
        return 2
    if args.arch != "deepseek-moe" and (args.experts is not None or args.top_k is not None):
        print("error: --experts and --top-k apply to --arch deepseek-moe only", file=sys.stderr)
        return 2
    if args.arch == "deepseek-moe":
        if args.layers is not None or args.seq is not None or args.vocab is not None:
            print("error: --arch deepseek-moe is one MoE block traced at seq=1: no --layers, --seq or --vocab",
                  file=sys.stderr)
            return 2
        args.experts = 8 if args.experts is None else args.experts
        args.top_k = 2 if args.top_k is None else args.top_k
        # The router (n_group=1) sums each group's top-2 scores: at least 2 experts.
        if not 2 <= args.experts or not 1 <= args.top_k <= args.experts:
            print("error: need --experts >= 2 and 1 <= --top-k <= --experts", file=sys.stderr)
            return 2
        return deepseek_moe(args, out)
    if args.arch == "gpt2":
        args.layers = 12 if args.layers is None else args.layers
        args.seq = 128 if args.seq is None else args.seq
        args.vocab = 50257 if args.vocab is None else args.vocab
        return gpt2(args, out)
    if args.seq is not None:
        print("error: --seq applies to --arch gpt2 only (llama-kv is traced at seq=3, past=5)", file=sys.stderr)
        return 2
    args.layers = 1 if args.layers is None else args.layers
    args.vocab = 32000 if args.vocab is None else args.vocab
    return llama_kv(args, out)


def gpt2(args, out: Path) -> int:
    import torch
    import transformers.masking_utils as mu
    from transformers import GPT2Config, GPT2Model

    warnings.filterwarnings("ignore")
    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)
    # See generate.py: input_ids-only calls otherwise trace torch.diff.
    mu.find_packed_sequence_indices = lambda position_ids: None

    cfg = GPT2Config(
        vocab_size=args.vocab,
        n_positions=1024,
        n_embd=768,
        n_layer=args.layers,
        n_head=12,
        use_cache=False,
        output_attentions=False,
        output_hidden_states=False,
        attn_implementation="eager",
    )
    model = GPT2Model(cfg).eval()
    # As generate.py does: HF init leaves every LayerNorm weight at 1 and
    # bias at 0, identical initializers the exporter would share between
    # layers. Seeded noise makes each parameter distinct, as in a trained
    # model.
    g = torch.Generator().manual_seed(SEED + 101)
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)

    class Gpt2(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False, return_dict=False)[0]

    module = Gpt2(model).eval()
    g = torch.Generator().manual_seed(SEED + 1)
    input_ids = torch.randint(0, args.vocab, (1, args.seq), generator=g)
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (input_ids,),
        buf,
        input_names=["input_ids"],
        output_names=["last_hidden_state"],
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
    )
    proto = onnx.load_from_string(buf.getvalue())
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    save_external(proto, model_path)
    nodes = len(proto.graph.node)
    print(f"{model_path}: {args.layers} layers, {nodes} ONNX nodes")

    if args.data:
        import onnxruntime as ort

        data = out / "test_data_set_0"
        data.mkdir(exist_ok=True)
        ids = input_ids.numpy().astype(np.int64)
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"input_ids": ids})
        for name, array, file in [
            ("input_ids", ids, "input_0.pb"),
            ("last_hidden_state", result, "output_0.pb"),
        ]:
            (data / file).write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        print(f"{data}: input and onnxruntime output")
    return 0


LLAMA_HEADS = 32
LLAMA_HEAD_DIM = 128


def llama_kv(args, out: Path) -> int:
    import time

    import torch
    import transformers.masking_utils as mu
    from transformers import LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    warnings.filterwarnings("ignore")
    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)
    # See generate.py: input_ids-only calls otherwise trace torch.diff.
    mu.find_packed_sequence_indices = lambda position_ids: None

    n_layers = args.layers
    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=n_layers,
        num_attention_heads=LLAMA_HEADS,
        num_key_value_heads=LLAMA_HEADS,
        head_dim=LLAMA_HEAD_DIM,
        max_position_embeddings=16384,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_cache=False,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    assert model.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Seeded noise on every parameter (one randn per tensor), as gen_large's
    # gpt2 and generate.py's perturb(): HF init leaves every RMSNorm gain at 1.
    g = torch.Generator().manual_seed(SEED + 201)
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.1 if p.dim() == 1 else 0.02))
    n_params = sum(p.numel() for p in model.parameters())
    t_build = time.perf_counter() - t0

    # The HF model as one step over an explicit cache in flat tensors, as
    # generate.py's llama_kv is exported.
    from generate import _decode_step_module

    step = _decode_step_module(torch, model, n_layers)
    past_names = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    in_names = ["input_ids"] + past_names
    out_names = ["logits"] + present_names
    dynamic_axes = {
        "input_ids": {1: "seq"},
        **{n: {2: "past"} for n in past_names},
        "logits": {1: "seq"},
        **{n: {2: "total"} for n in present_names},
    }

    def past(n, gen):
        return [torch.randn(1, LLAMA_HEADS, n, LLAMA_HEAD_DIM, generator=gen) for _ in past_names]

    g = torch.Generator().manual_seed(SEED + 13)
    example = [torch.randint(0, args.vocab, (1, 3), generator=g)] + past(5, g)

    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    # Past 2 GB (two layers and more) the exporter cannot return one
    # protobuf; exporting to a file lets it write the weights as external
    # data (one file per tensor), gathered below into model.onnx.data.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            step,
            tuple(example),
            str(tmp_path),
            input_names=in_names,
            output_names=out_names,
            opset_version=17,
            dynamo=False,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        t_export = time.perf_counter() - t0 - t_build
        del step, model
        proto = onnx.load(str(tmp_path), load_external_data=True)
    nodes, data_bytes = save_counted(proto, model_path)
    del proto
    print(
        f"{model_path}: LLaMA-7B-shaped decode step, {n_layers} layers, vocab {args.vocab}, "
        f"{n_params / 1e6:.1f}M parameters, {nodes} ONNX nodes, model.onnx.data {data_bytes / 2**30:.2f} GiB "
        f"(build {t_build:.1f} s, export {t_export:.1f} s, total {time.perf_counter() - t0:.1f} s)"
    )

    if args.data:
        import onnxruntime as ort

        data = out / "test_data_set_0"
        data.mkdir(exist_ok=True)
        g = torch.Generator().manual_seed(SEED + 14)
        feeds = [torch.randint(0, args.vocab, (1, 1), generator=g).numpy().astype(np.int64)]
        feeds += [t.numpy() for t in past(7, g)]
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        results = session.run(None, dict(zip(in_names, feeds)))
        for i, (name, array) in enumerate(zip(in_names, feeds)):
            (data / f"input_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        for i, (name, array) in enumerate(zip(out_names, results)):
            (data / f"output_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        print(f"{data}: a decode step (seq=1, past=7): inputs and onnxruntime outputs")
    return 0


DSV3_HIDDEN = 7168


def deepseek_moe(args, out: Path) -> int:
    import time

    import torch
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE, DeepseekV3PreTrainedModel

    t0 = time.perf_counter()
    warnings.filterwarnings("ignore")
    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)

    # experts_implementation as generate.py's deepseek_v3_batched: the routed
    # experts gather their weights by expert id (gate_up_proj[ids],
    # down_proj[ids]) and run batched matmuls, instead of the eager loop over
    # the experts hit (which the tracer unrolls for the example's routing).
    cfg = DeepseekV3Config(
        hidden_size=DSV3_HIDDEN,
        moe_intermediate_size=2048,
        n_routed_experts=args.experts,
        num_experts_per_tok=args.top_k,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        norm_topk_prob=True,
        routed_scaling_factor=2.5,
        use_cache=False,
        experts_implementation="batched_mm",
    )
    assert cfg._experts_implementation == "batched_mm"

    # One MoE block under a PreTrainedModel, so that post_init() gives it HF's
    # init (DeepseekV3PreTrainedModel._init_weights: normal(0.02) matrices,
    # zero router bias), as the block has inside DeepseekV3ForCausalLM.
    class MoeBlock(DeepseekV3PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.mlp = DeepseekV3MoE(config)
            self.post_init()

        def forward(self, hidden_states):
            return self.mlp(hidden_states)

    model = MoeBlock(cfg).to(torch.float32).eval()
    assert model.config._experts_implementation == "batched_mm"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Seeded noise as llama-kv (one randn per tensor), on the router's
    # e_score_correction_bias too: a buffer, zeros after HF's init.
    g = torch.Generator().manual_seed(SEED + 301)
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.1 if p.dim() == 1 else 0.02))
    for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
        if name.endswith("e_score_correction_bias"):
            b.add_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.1)
    n_params = sum(p.numel() for p in model.parameters())
    t_build = time.perf_counter() - t0

    g = torch.Generator().manual_seed(SEED + 31)
    example = torch.randn(1, 1, DSV3_HIDDEN, generator=g)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    # Exported to a file, as llama-kv: past 2 GB (more experts) the exporter
    # cannot return one protobuf.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(tmp_path),
            input_names=["hidden_states"],
            output_names=["output"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={"hidden_states": {1: "seq"}, "output": {1: "seq"}},
            do_constant_folding=True,
        )
        t_export = time.perf_counter() - t0 - t_build
        del model
        proto = onnx.load(str(tmp_path), load_external_data=True)
    nodes, data_bytes = save_counted(proto, model_path)
    del proto
    print(
        f"{model_path}: DeepSeek-V3-shaped MoE block, {args.experts} experts, top-{args.top_k}, "
        f"{n_params / 1e6:.1f}M parameters, {nodes} ONNX nodes, model.onnx.data {data_bytes / 2**30:.2f} GiB "
        f"(build {t_build:.1f} s, export {t_export:.1f} s, total {time.perf_counter() - t0:.1f} s)"
    )

    if args.data:
        import onnxruntime as ort

        data = out / "test_data_set_0"
        data.mkdir(exist_ok=True)
        g = torch.Generator().manual_seed(SEED + 32)
        x = torch.randn(1, 1, DSV3_HIDDEN, generator=g).numpy()
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        (result,) = session.run(None, {"hidden_states": x})
        for name, array, file in [
            ("hidden_states", x, "input_0.pb"),
            ("output", result, "output_0.pb"),
        ]:
            (data / file).write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        print(f"{data}: one token (seq=1): input and onnxruntime output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
