#!/usr/bin/env bash
# GPTQ and AWQ with OpenBLAS and with the built-in linear algebra (make
# BLAS=none) agree, on deterministic LLM-like layers (agree layers) and on
# every quantized projection of the real model (stories260K, quantized by
# examples/llama2 as test/model/run.sh does; agree blobs):
#  - every AWQ tensor has the same codes, scales, zeros and input scales in
#    both builds, or quant errors within 1e-4 of each other (relative);
#  - every GPTQ tensor too, or else its quant errors differ by no more than
#    NOISE times the layer's own sensitivity to rounding, measured in the
#    same run with the OpenBLAS build: the largest change of its quant error
#    when the calibration activations change in their lowest bit (three
#    patterns) or OpenBLAS runs on 2 threads instead of 1. GPTQ amplifies any
#    rounding difference into flipped codes: OpenBLAS does not give 1e-4
#    against itself across thread counts, nor does any other rounding order;
#  - the NLL on the validation text of each quantized model is within 1e-4
#    (relative) in the two builds, or within the change that flipping the
#    lowest bit of every other fp32 weight of the model causes in the
#    OpenBLAS build (a model that differs from the first by rounding only).
# Usage: run.sh AGREE_OPENBLAS AGREE_NONE [LLAMA_OPENBLAS LLAMA_NONE]
# (test/agree/agree.c and examples/llama2 of each build); QLIB_DATA as for
# test/model/run.sh. Without the llama binaries or the data, the model part
# is skipped.
set -u
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ $# -eq 2 ] || [ $# -eq 4 ] || { echo "usage: $0 AGREE_OPENBLAS AGREE_NONE [LLAMA_OPENBLAS LLAMA_NONE]" >&2; exit 2; }
A_REF=$(from_caller "$1")
A_NEW=$(from_caller "$2")
L_REF=${3:+$(from_caller "$3")}
L_NEW=${4:+$(from_caller "$4")}
DATA=${QLIB_DATA:+$(from_caller "$QLIB_DATA")}
cd "$(dirname "$0")/../.." || exit 1
DATA=${DATA:-../shared/data}
TOL=1e-4    # relative: quant errors, NLL
# GPTQ: times the largest of the four rounding-level variations above. Four
# variations underestimate the spread of a process this chaotic: on a host
# whose OpenBLAS runs its Haswell kernels, one 3-bit layer with static groups
# (gptq-192x768-b3-g32-s0-ao0-sg1-c0) differed between the builds by 8.7
# times its measured variation (0.0013 against 0.00015, relative), while its
# 63 other layers and the model's NLL agreed; with 4 that failed.
NOISE=10
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-agree.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
trap 'jobs -p | xargs -r kill 2>/dev/null; exit 130' INT TERM
START=$(date +%s)
export OPENBLAS_NUM_THREADS=1
FAILED=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

# compare LABEL REF NEW [REF2]: lines "name hash error [variation errors...]"
# of the OpenBLAS build (REF, REF2: the same on 2 OpenBLAS threads) and the
# built-in one (NEW). Prints a FAIL line per tensor that does not agree, then
# "<same codes> <within tol> <within noise> <total> <largest relative difference>
#  <tensors REF2 has beyond tol of REF>".
compare() {
    awk -v tol="$TOL" -v noise="$NOISE" -v label="$1" '
        function abs(v) { return v < 0 ? -v : v }
        FILENAME == ARGV[1] { h[$1] = $2; e[$1] = $3; nf[$1] = 0
                              for (i = 4; i <= NF; i++) nf[$1] = nf[$1] > abs($i - $3) ? nf[$1] : abs($i - $3)
                              next }
        ARGC == 4 && FILENAME == ARGV[2] { d = abs($3 - e[$1]); nf[$1] = nf[$1] > d ? nf[$1] : d
                              if ($2 != h[$1] && d > tol * e[$1]) self++
                              next }
        {
            total++
            if (!($1 in h)) { printf "FAIL  %s: %s in one build only\n", label, $1; bad++; next }
            d = abs($3 - e[$1]); rel = e[$1] > 0 ? d / e[$1] : d
            if (rel > worst) worst = rel
            if ($2 == h[$1]) same++
            else if (rel <= tol) close_++
            else if ($1 ~ /^gptq/ && d <= noise * nf[$1]) noisy++
            else {
                printf "FAIL  %s: %s: quant error %s vs %s (relative difference %.2g; the layer varies by %.2g)\n",
                       label, $1, e[$1], $3, rel, (e[$1] > 0 ? nf[$1] / e[$1] : nf[$1])
                bad++
            }
        }
        END { printf "%d %d %d %d %.2g %d\n", same, close_, noisy, total, worst, self
              exit bad > 0 || total == 0 }' "$2" ${4:+"$4"} "$3"
}

summary() { # LABEL OUT: the last line of compare's output, in words
    local same close noisy total worst self
    read -r same close noisy total worst self <<< "$(tail -n 1 <<< "$2")"
    printf '%s: %s of %s tensors with the same codes, %s more with quant errors within %s, %s within %sx their own rounding noise; largest difference %s' \
        "$1" "$same" "$total" "$close" "$TOL" "$noisy" "$NOISE" "$worst"
}

# ---- deterministic layers
"$A_REF" layers > "$WORK/layers.ref" && OPENBLAS_NUM_THREADS=2 "$A_REF" layers 0 > "$WORK/layers.ref2" &&
    "$A_NEW" layers 0 > "$WORK/layers.new" || { fail "agree layers did not run"; exit 1; }
if out=$(compare layers "$WORK/layers.ref" "$WORK/layers.new" "$WORK/layers.ref2"); then
    pass "$(summary layers "$out")"
else
    printf '%s\n' "$out" | sed '$d'
    fail "$(summary layers "$out")"
fi
self=$(tail -n 1 <<< "$out" | awk '{ print $6 }')
echo "      (OpenBLAS on 2 threads against 1: $self GPTQ tensors differ beyond $TOL)"

# ---- the real model
MODEL=$DATA/stories260K.bin TOK=$DATA/tok512.bin VALID=$DATA/tinystories-valid.txt
CALIB=$DATA/tinystories-train-calib.txt
if [ -z "$L_NEW" ] || [ ! -f "$MODEL" ] || [ ! -f "$CALIB" ] || [ ! -f "$VALID" ]; then
    echo "agree: model part skipped (no qlib-llama binaries or no $DATA)"
    [ "$FAILED" -eq 0 ]
    exit
fi
ROWS=(
    "gptq4|--method gptq --bits 4 --group 32"
    "gptq4a|--method gptq --bits 4 --group 32 --act-order"
    "gptq3|--method gptq --bits 3 --group 32"
    "awq4|--method awq --bits 4 --group 32"
    "awq3|--method awq --bits 3 --group 32"
)
JOBS=${QLIB_MODEL_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }
quantize() { # BIN MODEL ARGS OUT
    # shellcheck disable=SC2086
    "$1" quantize --model "$2" --tokenizer "$TOK" --threads 1 $3 --calib "$CALIB" -o "$4" \
        > /dev/null 2> "$4.err"
}
nll() { # BIN QM OUT
    "$1" ppl --model "$2" --tokenizer "$TOK" --threads 1 --text "$VALID" |
        sed -n 's/^nll: \([0-9.]*\).*/\1/p' > "$3"
}
"$A_REF" perturb "$MODEL" "$WORK/perturbed.bin" || { fail "cannot write the perturbed model"; exit 1; }
for row in "${ROWS[@]}"; do
    IFS='|' read -r id args <<< "$row"
    throttle; quantize "$L_REF" "$MODEL" "$args" "$WORK/$id.ref.qm" &
    throttle; quantize "$L_NEW" "$MODEL" "$args" "$WORK/$id.new.qm" &
done
wait
declare -A SAME
for row in "${ROWS[@]}"; do
    IFS='|' read -r id args <<< "$row"
    if [ ! -s "$WORK/$id.ref.qm" ] || [ ! -s "$WORK/$id.new.qm" ]; then
        fail "$id: quantize: $(cat "$WORK/$id.ref.qm.err" "$WORK/$id.new.qm.err" | tail -n 1)"
        continue
    fi
    "$A_REF" blobs "$WORK/$id.ref.qm" > "$WORK/$id.ref" && "$A_NEW" blobs "$WORK/$id.new.qm" > "$WORK/$id.new" ||
        { fail "$id: cannot read the tensors"; continue; }
    # every tensor of an AWQ model; of a GPTQ model the NLL decides (below)
    out=$(compare "$id" "$WORK/$id.ref" "$WORK/$id.new")
    read -r same close _ total _ _ <<< "$(tail -n 1 <<< "$out")"
    SAME[$id]="$same of $total projections with the same codes, $close more with quant errors within $TOL"
    if [ "$same" = "$total" ]; then
        pass "$id: ${SAME[$id]}: the same model"
        SAME[$id]=done
    elif [ "${id#awq}" != "$id" ]; then
        printf '%s\n' "$out" | sed '$d'
        fail "$id: ${SAME[$id]}"
        SAME[$id]=done
    else
        throttle; nll "$L_REF" "$WORK/$id.ref.qm" "$WORK/$id.ref.nll" &
        throttle; nll "$L_NEW" "$WORK/$id.new.qm" "$WORK/$id.new.nll" &
    fi
done
wait
# NLL within TOL, else the perturbed model's NLL (OpenBLAS) tells the noise
close_nll() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d
                                                          exit !(a > 0 && d <= tol) }'; }
for row in "${ROWS[@]}"; do
    IFS='|' read -r id args <<< "$row"
    [ "${SAME[$id]:-done}" = done ] && continue
    a=$(cat "$WORK/$id.ref.nll" 2>/dev/null) b=$(cat "$WORK/$id.new.nll" 2>/dev/null)
    if [ -z "$a" ] || [ -z "$b" ]; then
        fail "$id: ppl did not run"
        SAME[$id]=done
    elif close_nll "$a" "$b" "$(awk -v a="$a" -v t="$TOL" 'BEGIN { print a * t }')"; then
        pass "$id: ${SAME[$id]}; NLL $a (OpenBLAS) vs $b (built-in)"
        SAME[$id]=done
    else
        throttle; { quantize "$L_REF" "$WORK/perturbed.bin" "$args" "$WORK/$id.pert.qm" &&
                    nll "$L_REF" "$WORK/$id.pert.qm" "$WORK/$id.pert.nll"; } &
    fi
done
wait
for row in "${ROWS[@]}"; do
    IFS='|' read -r id _ <<< "$row"
    [ "${SAME[$id]:-done}" = done ] && continue
    a=$(cat "$WORK/$id.ref.nll") b=$(cat "$WORK/$id.new.nll") p=$(cat "$WORK/$id.pert.nll" 2>/dev/null)
    msg="$id: ${SAME[$id]}; NLL $a (OpenBLAS) vs $b (built-in), beyond $TOL; OpenBLAS on the model with every other weight's lowest bit flipped: $p"
    if [ -n "$p" ] && close_nll "$a" "$b" "$(awk -v a="$a" -v p="$p" 'BEGIN { d = a - p; print d < 0 ? -d : d }')"; then
        pass "$msg"
    else
        fail "$msg"
    fi
done
echo "agree: $(( $(date +%s) - START )) s"
[ "$FAILED" -eq 0 ]
