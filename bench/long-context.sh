#!/usr/bin/env bash
# Long contexts: the tiny random GPT-2 and LLaMA of models/ over 2048, 4096
# and 8192 tokens (one prefill, the last position's logits compared), each
# checked against onnxruntime on `tiny` in fp32 and on `base` in bf16, with
# the simulated cycles, the roofline and the wall time of each check.
#
# The models are generated on demand into BENCH_DIR (default
# /tmp/tessera-long) by models/generate.py (they are PENDING there: each
# check takes tens of seconds, too long for the per-model test suite,
# except llama_long at 2048, which is committed):
#   python3 -m venv VENV && VENV/bin/pip install -r models/requirements.txt
#   BENCH_PYTHON=VENV/bin/python bench/long-context.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-/tmp/tessera-long}
PY=${BENCH_PYTHON:-python3}
MODELS="gpt2_long_2k gpt2_long_4k gpt2_long_8k llama_long llama_long_4k llama_long_8k"
cargo build --release -q --bin tessera
T=target/release/tessera
for m in $MODELS; do
    if [ "$m" = llama_long ]; then
        src=models
    else
        src=$DIR
        [ -f "$DIR/$m/model.onnx" ] || "$PY" models/generate.py --root "$DIR" "$m"
    fi
    for config in "tiny fp32" "base bf16"; do
        set -- $config
        start=$(date +%s.%N)
        out=$($T check "$src/$m/model.onnx" --data "$src/$m/test_data_set_0" \
            --target "$1" --precision "$2" --stats 2>&1) || { echo "$out" | tail -3; echo "FAIL $m $1 $2"; exit 1; }
        end=$(date +%s.%N)
        cycles=$(echo "$out" | grep -m1 -E "^cycles " | awk '{print $2}')
        roof=$(echo "$out" | grep -m1 -E "^roofline " | awk '{print $2}')
        printf '%-14s %-4s %-4s %10s cycles  roofline %9s  check %6.1f s  %s\n' "$m" "$1" "$2" \
            "$cycles" "$roof" "$(echo "$end - $start" | bc)" \
            "$(echo "$out" | grep -E 'outputs within' | head -1 | cut -d'(' -f1)"
    done
done
