#!/usr/bin/env bash
# Benchmark: a GPT-2-small-shaped model (12 layers, d=768, 12 heads,
# seq 128) compiled for `base` (bf16, or BENCH_PRECISION: fp32, int8,
# fp8-e4m3, fp8-e5m2) and simulated.
#
# Prints compile time and peak memory, simulated cycles, the roofline and
# their ratio, MXU utilization, simulator wall time, the correctness of
# the outputs against onnxruntime (cosine similarity), the cycles without
# the e-graph optimizer, and onnxruntime's CPU time for scale.
# Compile time against depth: run with BENCH_LAYERS=12 and BENCH_LAYERS=24.
#
# The model is generated on demand (not committed) with the pinned Python
# environment of models/requirements.txt:
#   python3 -m venv VENV && VENV/bin/pip install -r models/requirements.txt
#   BENCH_PYTHON=VENV/bin/python bench/gpt2-small.sh
#
# Environment: BENCH_PYTHON (python with the pinned packages),
# BENCH_DIR (where the model goes; default /tmp/tessera-gpt2-small-<layers>),
# BENCH_LAYERS (default 12), BENCH_TARGET (default base),
# BENCH_PRECISION (default bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${BENCH_LAYERS:-12}
DIR=${BENCH_DIR:-/tmp/tessera-gpt2-small-$LAYERS}
TARGET=${BENCH_TARGET:-base}
PRECISION=${BENCH_PRECISION:-bf16}
PY=${BENCH_PYTHON:-python3}

if [ ! -f "$DIR/model.onnx" ] || [ ! -d "$DIR/test_data_set_0" ]; then
    echo "== generating the model in $DIR"
    "$PY" models/gen_large.py --layers "$LAYERS" --out "$DIR" --data
fi
cargo build --release -q --bin tessera
T=target/release/tessera
TIME=/usr/bin/time
OUT=$(mktemp -d)

echo "== compile ($TARGET, $PRECISION)"
$TIME -v $T compile "$DIR/model.onnx" -o "$OUT/model.tnpu" --target "$TARGET" --precision "$PRECISION" --report \
    > "$OUT/report.txt" 2> "$OUT/compile.time"
grep -E "^  (cost|time|stop)" "$OUT/report.txt" || true
grep -E "Elapsed|Maximum resident" "$OUT/compile.time"

echo "== simulate"
$TIME -v $T run "$OUT/model.tnpu" --data "$DIR/test_data_set_0" --output-dir "$OUT/out" \
    --stats-json "$OUT/stats.json" > "$OUT/run.txt" 2> "$OUT/run.time"
grep -E "Elapsed|Maximum resident" "$OUT/run.time"
python3 - "$OUT/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
c, r = s["cycles"], s["roofline_cycles"]
print(f"simulated cycles   {c}  ({s['time_us'] / 1000:.3f} ms at the target clock)")
print(f"roofline cycles    {r}  (ratio {c / r:.3f})")
print(f"MXU utilization    {100 * s['mxu_utilization']:.1f}%   MACs {s['macs']}")
print(f"DRAM               {s['dram_read_bytes']} read, {s['dram_write_bytes']} written ({100 * s['dram_utilization']:.1f}% of peak)")
print("slowest kernels (cycles, roofline, node):")
for p in s["profile"][:8]:
    print(f"  {p['cycles']:>9} {p['roofline_cycles']:>9}  {p['node']}")
PY

echo "== check against onnxruntime"
# (An 8-bit precision may be outside its threshold on this random model:
# the numbers are the result either way.)
$T check "$DIR/model.onnx" --data "$DIR/test_data_set_0" --target "$TARGET" --precision "$PRECISION" 2>&1 | tail -3 || true

echo "== without the e-graph optimizer"
$T compile "$DIR/model.onnx" -o "$OUT/plain.tnpu" --target "$TARGET" --precision "$PRECISION" --no-egraph > /dev/null
$T run "$OUT/plain.tnpu" --data "$DIR/test_data_set_0" --output-dir "$OUT/plain" \
    --stats-json "$OUT/plain.json" > /dev/null
python3 - "$OUT/stats.json" "$OUT/plain.json" <<'PY'
import json, sys
with_eg, without = (json.load(open(p))["cycles"] for p in sys.argv[1:3])
print(f"simulated cycles   {without} without, {with_eg} with the e-graph ({without / with_eg:.2f}x)")
PY

echo "== onnxruntime on this machine's CPU (for scale; 1 thread, fp32)"
"$PY" - "$DIR" <<'PY' || echo "(onnxruntime not available to $PY)"
import sys, time, glob
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
d = sys.argv[1]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
s = ort.InferenceSession(f"{d}/model.onnx", opts, providers=["CPUExecutionProvider"])
feeds = {}
for i, path in zip(s.get_inputs(), sorted(glob.glob(f"{d}/test_data_set_0/input_*.pb"))):
    feeds[i.name] = numpy_helper.to_array(onnx.load_tensor(path))
s.run(None, feeds)
runs = []
for _ in range(5):
    t = time.perf_counter()
    s.run(None, feeds)
    runs.append(time.perf_counter() - t)
print(f"onnxruntime        {1000 * min(runs):.1f} ms per inference (best of 5)")
PY
rm -rf "$OUT"
