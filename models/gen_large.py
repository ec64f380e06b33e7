#!/usr/bin/env python3
"""Export a GPT-2-small-shaped model for compile-time measurements.

Not a test asset: the files are large and are written outside the
repository, on demand. Run from the repository root inside the pinned venv
(models/requirements.txt):

    python models/gen_large.py --layers 12 --out /tmp/gpt2_small_12
    python models/gen_large.py --layers 24 --out /tmp/gpt2_small_24

Each writes OUT/model.onnx with its weights in OUT/model.onnx.data (external
data), from transformers.GPT2Model(n_embd=768, n_head=12, n_layer=N,
n_positions=1024, vocab=50257 unless --vocab) with random weights (every
parameter perturbed, so no two are equal), traced at
batch 1 and sequence 128 (--seq) with torch's TorchScript exporter
(dynamo=False, opset 17). `--data` also writes test_data_set_0/ (input and
onnxruntime's output) for `tessera check`.

Then, for example:

    cargo build --release
    target/release/tessera compile /tmp/gpt2_small_12/model.onnx --report
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent
SEED = 1234


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", action="store_true", help="also write test_data_set_0/")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if ROOT.parent in out.parents or out == ROOT.parent:
        print(f"error: {out} is inside the repository; write it elsewhere", file=sys.stderr)
        return 2

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
    onnx.save_model(
        proto,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    onnx.checker.check_model(str(model_path))
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


if __name__ == "__main__":
    sys.exit(main())
