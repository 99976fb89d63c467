#!/usr/bin/env bash
# make memory-check: quantize holds one layer, not the model. A synthetic
# Llama with random weights (default dim 1024, 12 layers, hidden 2816, vocab
# 32000, untied classifier: 221 M parameters, 0.88 GB fp32) is written by
# test/model/make_gguf.py as an F32 GGUF file (MEMORY_FORMAT=hf: a Hugging Face
# directory), then quantized with each method in MEMORY_METHODS (default
# "rtn gptq awq") while the process's /proc/PID/status is sampled every 50 ms.
# Passes when the peak RssAnon (anonymous memory: what the program allocated,
# not the mapped input) stays under a quarter of the fp32 model size. Prints
# the wall time per billion parameters. Each method is written in each output
# format of MEMORY_OUTPUTS (default "qm": qlib-llama's own file; also gguf,
# gptq, awq: the symmetric GGUF Q4_0, the Hugging Face GPTQ / AWQ checkpoints).
# Slow (minutes): not part of make check.
# Environment: QLIB_LLAMA, MEMORY_DIM, MEMORY_LAYERS, MEMORY_HIDDEN, MEMORY_VOCAB,
# MEMORY_FORMAT, MEMORY_METHODS, MEMORY_OUTPUTS, MEMORY_THREADS (default 2),
# MEMORY_KEEP (a directory to keep the model in between runs).
set -u
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
BIN=${QLIB_LLAMA:+$(from_caller "$QLIB_LLAMA")}
KEEP=${MEMORY_KEEP:+$(from_caller "$MEMORY_KEEP")}
cd "$(dirname "$0")/../.." || exit 1
BIN=${BIN:-examples/llama2/qlib-llama}
PY=/usr/bin/python3
DIM=${MEMORY_DIM:-1024}
LAYERS=${MEMORY_LAYERS:-12}
HIDDEN=${MEMORY_HIDDEN:-2816}
VOCAB=${MEMORY_VOCAB:-32000}
FORMAT=${MEMORY_FORMAT:-gguf}
METHODS=${MEMORY_METHODS:-rtn gptq awq}
OUTPUTS=${MEMORY_OUTPUTS:-qm}
THREADS=${MEMORY_THREADS:-2}
SEQ=512

"$PY" -c 'import numpy' 2> /dev/null || { echo "memory-check: SKIPPED ($PY has no numpy)"; exit 0; }
[ -x "$BIN" ] || { echo "memory-check: $BIN is not built"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-memory.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
DIR=${KEEP:-$WORK}
mkdir -p "$DIR"
MODEL=$DIR/synthetic-$DIM-$LAYERS-$HIDDEN-$VOCAB.$FORMAT
if [ ! -e "$MODEL" ]; then
    "$PY" test/model/make_gguf.py synthetic "$MODEL" --dim "$DIM" --layers "$LAYERS" --hidden "$HIDDEN" \
        --vocab "$VOCAB" --heads $((DIM / 64)) --seq-len $SEQ --format "$FORMAT" || exit 1
fi
# parameters: embedding and classifier, norms, and each layer's projections
PARAMS=$(( 2 * VOCAB * DIM + DIM + LAYERS * (2 * DIM + 4 * DIM * DIM + 3 * DIM * HIDDEN) ))
BOUND=$(( PARAMS * 4 / 4 / 1024 ))   # KiB: a quarter of the fp32 size
# calibration: 16 sequences of 512 random token ids
"$PY" -c "
import numpy as np
r = np.random.default_rng(3)
for _ in range(16): print(' '.join(map(str, r.integers(3, $VOCAB, $SEQ))))" > "$WORK/calib.ids"

PASSED=0
FAILED=0
printf 'model: %s, %d parameters, %.2f GB fp32; bound %.0f MiB RssAnon; %d threads\n' "$(basename "$MODEL")" \
    "$PARAMS" "$(echo "$PARAMS * 4 / 1000000000" | bc -l)" "$(echo "$BOUND / 1024" | bc -l)" "$THREADS"
printf '%-6s %-6s %12s %12s %10s %12s\n' method output "peak anon" "peak RSS" "seconds" "s / 1e9 par"
for out in $OUTPUTS; do
for m in $METHODS; do
    args=(--method "$m")
    case $m in
        rtn) args+=(--bits 4 --group 128) ;;
        gptq|awq) args+=(--bits 4 --group 128 --calib-tokens "$WORK/calib.ids") ;;
    esac
    case $out in
        qm) dest=$WORK/out.qm ;;
        gguf) dest=$WORK/out.gguf; args+=(--sym) ;;
        gptq|awq) dest=$WORK/out-$out; args+=(--format "$out") ;;
        *) echo "memory-check: unknown output $out"; exit 1 ;;
    esac
    start=$(date +%s.%N)
    "$BIN" quantize --model "$MODEL" "${args[@]}" --threads "$THREADS" -o "$dest" --quiet \
        > "$WORK/$m.out" 2> "$WORK/$m.err" &
    pid=$!
    peak_anon=0
    peak_rss=0
    while kill -0 $pid 2> /dev/null; do
        if read -r anon rss < <(awk '/^RssAnon:/ {a = $2} /^VmRSS:/ {r = $2} END {print a + 0, r + 0}' \
                /proc/$pid/status 2> /dev/null); then
            [ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
            [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
        fi
        sleep 0.05
    done
    wait $pid
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc -l)
    printf '%-6s %-6s %9.0f MiB %9.0f MiB %10.1f %12.1f\n' "$m" "$out" "$(echo "$peak_anon / 1024" | bc -l)" \
        "$(echo "$peak_rss / 1024" | bc -l)" "$secs" "$(echo "$secs * 1000000000 / $PARAMS" | bc -l)"
    if [ $rc -ne 0 ]; then
        FAILED=$((FAILED + 1)); echo "FAIL  $m $out: exit $rc: $(tail -n 2 "$WORK/$m.err")"
    elif [ "$peak_anon" -ge "$BOUND" ]; then
        FAILED=$((FAILED + 1)); echo "FAIL  $m $out: peak RssAnon $peak_anon KiB >= $BOUND KiB"
    else
        PASSED=$((PASSED + 1)); echo "ok    $m $out: peak RssAnon under a quarter of the fp32 model"
    fi
    rm -rf "$dest"
done
done
echo "memory-check: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
