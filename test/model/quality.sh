#!/usr/bin/env bash
# The quality table of docs/LLAMA2.md: stories260K quantized with every
# method and combination at 4, 3 and 2 bits, groups of 32 and 128, and the
# bit budget at 2.5 ... 4.5 bits per weight; bits/weight, NLL on
# tinystories-valid.txt and quantize time for each, as Markdown rows.
# Not a check (nothing is asserted; model-check asserts the numbers that
# matter): a measurement, about 15 minutes of CPU. Environment: QLIB_DATA,
# QLIB_LLAMA, QUALITY_JOBS (parallel runs, default: online CPUs).
set -u
. "$(dirname "$0")/env.sh"
M=(--model "$DATA/stories260K.bin" --tokenizer "$DATA/tok512.bin" --threads 1)
CALIB=$DATA/tinystories-train-calib.txt
VALID=$DATA/tinystories-valid.txt
[ -f "$CALIB" ] && [ -f "$VALID" ] || { echo "quality: SKIPPED (no data in $DATA)"; exit 0; }
JOBS=${QUALITY_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-quality.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1

# label | arguments (bits and group appended)
METHODS=(
    "RTN|--method rtn"
    "RTN clip 20|--method rtn --clip-grid 20"
    "GPTQ|--method gptq"
    "GPTQ act-order|--method gptq --act-order"
    "GPTQ clip 20|--method gptq --clip-grid 20"
    "GPTQ act-order clip 20|--method gptq --act-order --clip-grid 20"
    "AWQ|--method awq"
    "AWQ+GPTQ|--method awq --awq-rounding gptq"
    "AWQ+GPTQ clip 20|--method awq --awq-rounding gptq --clip-grid 20"
)
BUDGETS="2.5 3 3.5 4 4.5"
BUDGET_ARGS="--method gptq --clip-grid 20"

run() {  # ID ARGS...: WORK/ID.res = bits/weight|NLL|seconds
    local id=$1
    shift
    if "$BIN" quantize "${M[@]}" "$@" --calib "$CALIB" --quiet -o "$WORK/$id.qm" > "$WORK/$id.q" 2>&1 \
        && "$BIN" ppl --model "$WORK/$id.qm" --tokenizer "$DATA/tok512.bin" --threads 1 --text "$VALID" \
            > "$WORK/$id.p" 2>&1; then
        echo "$(sed -n 's/.*bits_per_weight=\([0-9.]*\).*/\1/p' "$WORK/$id.q")|$(sed -n 's/^nll: \([0-9.]*\).*/\1/p' "$WORK/$id.p")|$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$WORK/$id.q")" > "$WORK/$id.res"
    else
        echo "-|$(tail -n 1 "$WORK/$id.q" | cut -c 1-60)|-" > "$WORK/$id.res"
    fi
    rm -f "$WORK/$id.qm"
}
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }

i=0
for row in "${METHODS[@]}"; do
    IFS='|' read -r _ args <<< "$row"
    for b in 4 3 2; do
        for g in 32 128; do
            throttle
            # shellcheck disable=SC2086
            run "m$i-$b-$g" $args --bits "$b" --group "$g" &
        done
    done
    i=$((i + 1))
done
for t in $BUDGETS; do
    throttle
    # shellcheck disable=SC2086
    run "budget-$t" $BUDGET_ARGS --target-bpw "$t" &
done
wait

echo "| method | bits | group | bits/w | NLL | quantize s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
i=0
for row in "${METHODS[@]}"; do
    IFS='|' read -r label _ <<< "$row"
    for b in 4 3 2; do
        for g in 32 128; do
            IFS='|' read -r bpw nll secs < "$WORK/m$i-$b-$g.res"
            echo "| $label | $b | $g | $bpw | $nll | $secs |"
        done
    done
    i=$((i + 1))
done
echo
echo "| --target-bpw ($BUDGET_ARGS) | bits/w | NLL | quantize s |"
echo "| ---: | ---: | ---: | ---: |"
for t in $BUDGETS; do
    IFS='|' read -r bpw nll secs < "$WORK/budget-$t.res"
    echo "| $t | $bpw | $nll | $secs |"
done
