#!/usr/bin/env bash
# Benchmark: a GPT-2-small-shaped model (12 layers, d=768, 12 heads,
# seq 128) compiled for `base` in bf16 and simulated.
#
# Prints compile time and peak memory, simulated cycles, the roofline and
# their ratio, MXU utilization, simulator wall time, and the correctness of
# the outputs against onnxruntime (cosine similarity).
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
$T check "$DIR/model.onnx" --data "$DIR/test_data_set_0" --target "$TARGET" --precision "$PRECISION" | tail -2
rm -rf "$OUT"
