#!/usr/bin/env bash
# Real-model check of examples/llama2 on stories260K (see ../shared/data/PROVENANCE.md):
# quantizes every projection with each method, measures NLL and perplexity on
# the TinyStories validation stories, prints one table and checks the numbers.
# Environment: QLIB_DATA (default ../shared/data), QLIB_LLAMA (the binary),
# QLIB_MODEL_JOBS (parallel runs, default: online CPUs).
set -u
. "$(dirname "$0")/env.sh"
model_data model-check --bin

# Targets: the unquantized model's NLL measured by an independent numpy forward pass
# (PROVENANCE.md), and the start of llama2.c's greedy sample.
FP32_NLL=1.2494
FP32_TOKENS=142182
GREEDY="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
ACT_ORDER_SLACK=0.002   # nats/token act-order may lose to plain GPTQ on a model this small

JOBS=${QLIB_MODEL_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-model.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
trap 'jobs -p | xargs -r kill 2>/dev/null; exit 130' INT TERM
START=$(date +%s)
# Runs share the CPUs: one thread each, OpenBLAS included.
export OPENBLAS_NUM_THREADS=1
RUN=("$BIN")
COMMON=(--model "$MODEL" --tokenizer "$TOK" --threads 1)

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { printf 'skip  %s\n' "$*"; }

# ------------------------------------------------------------------ the runs
# id | label | bits | group | quantize arguments ("" = the fp32 checkpoint itself)
ROWS=(
    "fp32|fp32|32|-|"
    "int8|INT8 (RTN)|8|0|--method rtn --bits 8 --group 0"
    "rtn4|RTN|4|32|--method rtn --bits 4 --group 32"
    "rtn3|RTN|3|32|--method rtn --bits 3 --group 32"
    "gptq4|GPTQ|4|32|--method gptq --bits 4 --group 32"
    "gptq4a|GPTQ act-order|4|32|--method gptq --bits 4 --group 32 --act-order"
    "gptq3|GPTQ|3|32|--method gptq --bits 3 --group 32"
    "gptq3a|GPTQ act-order|3|32|--method gptq --bits 3 --group 32 --act-order"
    "awq4|AWQ|4|32|--method awq --bits 4 --group 32"
    "awq3|AWQ|3|32|--method awq --bits 3 --group 32"
    "awq4s|AWQ shared scales|4|32|--method awq --bits 4 --group 32 --awq-shared"
    "awq3s|AWQ shared scales|3|32|--method awq --bits 3 --group 32 --awq-shared"
    "awq4f|AWQ folded scales|4|32|--method awq --bits 4 --group 32 --awq-fold"
    "awq3f|AWQ folded scales|3|32|--method awq --bits 3 --group 32 --awq-fold"
    "awq4d|AWQ duo scales|4|32|--method awq --bits 4 --group 32 --awq-scales duo"
    "awq4df|AWQ duo, folded|4|32|--method awq --bits 4 --group 32 --awq-scales duo --awq-fold"
    "gptq4c|GPTQ clip 20|4|32|--method gptq --bits 4 --group 32 --clip-grid 20"
    "gptq3c|GPTQ clip 20|3|32|--method gptq --bits 3 --group 32 --clip-grid 20"
    "awqg4c|AWQ+GPTQ clip 20|4|32|--method awq --bits 4 --group 32 --awq-rounding gptq --clip-grid 20"
    "awqg3c|AWQ+GPTQ clip 20|3|32|--method awq --bits 3 --group 32 --awq-rounding gptq --clip-grid 20"
    "budget425|GPTQ budget 4.25|mix|-|--method gptq --clip-grid 20 --target-bpw 4.25"
    "budget475|GPTQ budget 4.75|mix|-|--method gptq --clip-grid 20 --target-bpw 4.75"
    "gptq4e8|GPTQ, 8-bit emb.|4|32|--method gptq --bits 4 --group 32 --embed-bits 8"
    "llmint8|LLM.int8()|8|0|--method llm-int8"
)

field() { sed -nE "s/(^|.* )$1[=:] *([^ ]*).*/\2/p" "$2" | head -n 1; }

# Writes $WORK/<id>.res: status|bits|group|bits/weight|bytes|nll|ppl|tokens|message
run_row() {
    local id=$1 args=$2 model=$MODEL rc bits=32 group=- bpw=32 bytes
    bytes=$(wc -c < "$MODEL")
    if [ -n "$args" ]; then
        # shellcheck disable=SC2086
        "${RUN[@]}" quantize "${COMMON[@]}" $args --calib "$CALIB" -o "$WORK/$id.qm" \
            > "$WORK/$id.q.out" 2> "$WORK/$id.q.err"
        rc=$?
        if [ $rc -eq 3 ]; then
            echo "na||||||||$(sed -n 's/.*not available: //p' "$WORK/$id.q.err" | head -n 1)" > "$WORK/$id.res"
            return
        elif [ $rc -ne 0 ]; then
            echo "error||||||||quantize exit $rc: $(tail -n 1 "$WORK/$id.q.err")" > "$WORK/$id.res"
            return
        fi
        model=$WORK/$id.qm
        bits=$(field bits "$WORK/$id.q.out")
        group=$(field group "$WORK/$id.q.out")
        case $args in *--target-bpw*) bits=mix; group=- ;; esac
        bpw=$(field bits_per_weight "$WORK/$id.q.out")
        bytes=$(field file_bytes "$WORK/$id.q.out")
    fi
    "${RUN[@]}" ppl --model "$model" --tokenizer "$TOK" --threads 1 --text "$VALID" \
        > "$WORK/$id.p.out" 2> "$WORK/$id.p.err"
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "error||||||||ppl exit $rc: $(tail -n 1 "$WORK/$id.p.err")" > "$WORK/$id.res"
        return
    fi
    echo "ok|$bits|$group|$bpw|$bytes|$(field nll "$WORK/$id.p.out")|$(field perplexity "$WORK/$id.p.out")|$(sed -n 's/.*, \([0-9]*\) predicted tokens.*/\1/p' "$WORK/$id.p.out")|" > "$WORK/$id.res"
}

greedy_run() {
    "${RUN[@]}" generate "${COMMON[@]}" -t 0 -n 256 > "$WORK/greedy.out" 2> "$WORK/greedy.err"
    echo $? > "$WORK/greedy.rc"
}

throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }

for row in "${ROWS[@]}"; do
    IFS='|' read -r id _ _ _ args <<< "$row"
    throttle
    run_row "$id" "$args" &
done
throttle
greedy_run &
wait

# ----------------------------------------------------------------- the table
res() {
    ST=error BITS='' GROUP='' BPW='' BYTES='' NLL='' PPL='' TOKENS='' MSG="no result"
    [ -f "$WORK/$1.res" ] && IFS='|' read -r ST BITS GROUP BPW BYTES NLL PPL TOKENS MSG < "$WORK/$1.res"
}
res fp32
REF_NLL=$NLL
REF_PPL=$PPL
[ "$ST" = ok ] || REF_NLL=

echo
echo "stories260K on $(basename "$VALID"), one story per sequence; quantized with group size 32"
echo "(K = 172 for w2 leaves a partial group), GPTQ/AWQ calibrated on $(basename "$CALIB")"
sed -n 's/^qlib /qlib /p' "$WORK/fp32.p.out"
printf '%-16s %4s %5s %7s %10s %9s %10s %10s %8s\n' method bits group "bits/w" "size KiB" NLL perplexity "ΔNLL" "Δppl"
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label bits group _ <<< "$row"
    res "$id"
    if [ "$ST" != ok ]; then
        [ "$ST" = na ] && MSG="not available: $MSG"
        printf '%-16s %4s %5s  %s\n' "$label" "$bits" "$group" "$MSG"
        continue
    fi
    awk -v l="$label" -v b="$BITS" -v g="$GROUP" -v w="$BPW" -v s="$BYTES" -v n="$NLL" \
        -v p="$PPL" -v rn="$REF_NLL" -v rp="$REF_PPL" 'BEGIN {
        dn = rn == "" ? "-" : sprintf("%+.4f", n - rn)
        dp = rn == "" ? "-" : sprintf("%+.2f%%", 100 * (p / rp - 1))
        printf "%-16s %4s %5s %7.3f %10.1f %9.4f %10.4f %10s %8s\n", l, b, g, w, s / 1024, n, p, dn, dp }'
done
echo

# ---------------------------------------------------------------- the checks
# cmp_check DESCRIPTION AWK-CONDITION ROW... : runs when every row is available
cmp_check() {
    local what=$1 cond=$2 r vars=()
    shift 2
    for r in "$@"; do
        res "$r"
        if [ "$ST" = na ]; then skip "$what ($r not available)"; return; fi
        if [ "$ST" != ok ]; then fail "$what ($r: $MSG)"; return; fi
        vars+=(-v "$r=$NLL")
    done
    if awk "${vars[@]}" -v ref="$REF_NLL" -v slack="$ACT_ORDER_SLACK" "BEGIN { exit !($cond) }"; then
        pass "$what"
    else
        fail "$what"
    fi
}

res fp32
if [ "$ST" = ok ] && awk -v n="$NLL" -v t="$FP32_NLL" 'BEGIN { d = n - t; exit !(d < 0.001 && d > -0.001) }'; then
    pass "fp32 NLL $NLL within 0.001 of $FP32_NLL"
else
    fail "fp32 NLL ${NLL:-?} not within 0.001 of $FP32_NLL ${MSG}"
fi
if [ "$ST" = ok ] && [ "$TOKENS" = "$FP32_TOKENS" ]; then
    pass "fp32 predicts $TOKENS tokens"
else
    fail "fp32 predicts ${TOKENS:-?} tokens, expected $FP32_TOKENS"
fi
if [ "$(cat "$WORK/greedy.rc")" = 0 ] && [ "$(head -c ${#GREEDY} "$WORK/greedy.out")" = "$GREEDY" ]; then
    pass "greedy text begins \"${GREEDY:0:40}...\""
else
    fail "greedy text: $(head -c 120 "$WORK/greedy.out") $(tail -n 1 "$WORK/greedy.err")"
fi

# qlib promises bit-identical results for any thread count.
if [ -f "$WORK/rtn4.qm" ]; then
    for t in 1 2; do
        "${RUN[@]}" generate --model "$WORK/rtn4.qm" --tokenizer "$TOK" --threads $t -t 0 -n 200 \
            > "$WORK/threads$t.out" 2> /dev/null
    done
    if [ -s "$WORK/threads1.out" ] && cmp -s "$WORK/threads1.out" "$WORK/threads2.out"; then
        pass "RTN 4-bit greedy text identical with 1 and 2 qlib threads"
    else
        fail "RTN 4-bit greedy text differs between 1 and 2 qlib threads"
    fi
fi

# Every row that ran must have succeeded; unavailable methods are reported, not failed.
for row in "${ROWS[@]}"; do
    IFS='|' read -r id label _ _ args <<< "$row"
    res "$id"
    case $ST in
        ok) if [ -n "$args" ]; then pass "$id: quantized, written, reloaded identically, evaluated"
            else pass "$id: evaluated"; fi ;;
        na) skip "$id: not available: $MSG" ;;
        *) fail "$id: $MSG" ;;
    esac
done
# perplexity ratio = exp(NLL - NLL of fp32)
cmp_check "INT8 (RTN per channel) perplexity within 1% of fp32" \
    "int8 > 0 && exp(int8 - ref) < 1.01 && exp(int8 - ref) > 0.99" int8
cmp_check "LLM.int8() perplexity within 1% of fp32" \
    "llmint8 > 0 && exp(llmint8 - ref) < 1.01 && exp(llmint8 - ref) > 0.99" llmint8
for b in 4 3; do
    cmp_check "GPTQ $b-bit NLL below RTN $b-bit" "gptq$b < rtn$b" "gptq$b" "rtn$b"
    cmp_check "GPTQ $b-bit act-order NLL below RTN $b-bit" "gptq${b}a < rtn$b" "gptq${b}a" "rtn$b"
    cmp_check "AWQ $b-bit NLL below RTN $b-bit" "awq$b < rtn$b" "awq$b" "rtn$b"
    cmp_check "GPTQ $b-bit act-order no worse than without (+$ACT_ORDER_SLACK nats slack)" \
        "gptq${b}a <= gptq$b + slack" "gptq${b}a" "gptq$b"
done
cmp_check "RTN 4-bit NLL below RTN 3-bit" "rtn4 < rtn3" rtn4 rtn3

# Clipping search and AWQ with GPTQ rounding: the better of the two must reach
# these NLLs (set from GPTQ's 4-bit 1.305937 and 3-bit 1.601 on another host;
# the lines below say how much of this host's GPTQ gap to fp32 each removes).
QUALITY_4=1.2999
QUALITY_3=1.5308
for b in 4 3; do
    res "gptq${b}c"; g=$NLL; gs=$ST
    res "awqg${b}c"; a=$NLL; as=$ST
    if [ "$gs" = ok ] && [ "$as" = ok ]; then
        awk -v b="$b" -v g="$g" -v a="$a" -v p="$(res "gptq$b"; echo "$NLL")" -v r="$REF_NLL" 'BEGIN {
            best = g < a ? g : a
            printf "quality %s-bit g32: GPTQ clip 20 %.6f, AWQ+GPTQ clip 20 %.6f, GPTQ %.6f, fp32 %.6f; best %.6f cuts the GPTQ gap by %.1f%%\n",
                   b, g, a, p, r, best, 100 * (p - best) / (p - r) }'
    fi
done
cmp_check "GPTQ clip 20 4-bit NLL below GPTQ 4-bit" "gptq4c < gptq4" gptq4c gptq4
cmp_check "GPTQ clip 20 3-bit NLL below GPTQ 3-bit" "gptq3c < gptq3" gptq3c gptq3
cmp_check "AWQ+GPTQ clip 20 4-bit NLL below AWQ 4-bit" "awqg4c < awq4" awqg4c awq4
cmp_check "AWQ+GPTQ clip 20 3-bit NLL below AWQ 3-bit" "awqg3c < awq3" awqg3c awq3
cmp_check "better of GPTQ clip 20 and AWQ+GPTQ clip 20, 4-bit g32, NLL <= $QUALITY_4" \
    "(gptq4c < awqg4c ? gptq4c : awqg4c) <= $QUALITY_4" gptq4c awqg4c
cmp_check "better of GPTQ clip 20 and AWQ+GPTQ clip 20, 3-bit g32, NLL <= $QUALITY_3" \
    "(gptq3c < awqg3c ? gptq3c : awqg3c) <= $QUALITY_3" gptq3c awqg3c

# The bit budget (--target-bpw): within the budget; at the bits/weight of
# uniform GPTQ clip 20 4-bit g32 (4.756) it must do at least as well as that
# uniform setting; the issue's target (4.25 bits/weight at today's uniform
# GPTQ 4-bit g32's NLL) is printed with its outcome.
for id in budget425 budget475; do
    res "$id"
    target=$(awk -v t="${id#budget}" 'BEGIN { print t / 100 }')
    if [ "$ST" = ok ] && awk -v w="$BPW" -v t="$target" 'BEGIN { exit !(w <= t) }'; then
        pass "$id: $BPW bits/weight within the budget $target"
    else
        fail "$id: bits/weight '$BPW' over the budget $target ${MSG}"
    fi
done
cmp_check "bit budget 4.75 NLL <= uniform GPTQ clip 20 4-bit g32 (4.756 bits/weight)" \
    "budget475 <= gptq4c" budget475 gptq4c
res budget425; b425=$NLL; b425w=$BPW; res gptq4; g4=$NLL; g4w=$BPW
if [ -n "$b425" ] && [ -n "$g4" ]; then
    awk -v b="$b425" -v bw="$b425w" -v g="$g4" -v gw="$g4w" 'BEGIN {
        printf "budget: --target-bpw 4.25 NLL %.6f at %.4f bits/weight; uniform GPTQ 4-bit g32 %.6f at %.4f; target NLL <= uniform: %s\n",
               b, bw, g, gw, b <= g ? "met" : "NOT met" }'
fi
# AWQ with one set of input scales for q/k/v and for w1/w3 (what folding
# them into the RMSNorm weights needs, as GGUF and HF output do), kept in
# the tensors (--awq-shared) and folded (--awq-fold): reported against
# per-tensor AWQ, not asserted (one draw of the calibration moves them by
# more than sharing costs: make awq-draws, docs/LLAMA2.md)
for b in 4 3; do
    res "awq$b"; per=$NLL; res "awq${b}s"; sh=$NLL; res "awq${b}f"; fo=$NLL
    [ -n "$per" ] && [ -n "$sh" ] && [ -n "$fo" ] && awk -v b="$b" -v p="$per" -v s="$sh" -v f="$fo" 'BEGIN {
        printf "AWQ %d-bit g32: shared input scales NLL %.6f (%+.6f), folded %.6f (%+.6f), per-tensor %.6f\n",
               b, s, s - p, f, f - p, p }'
done
# The folded file computes what the shared one does but for float rounding
# and w2's scales (folded into w3's rows instead of kept): over 16
# calibration draws the two differed by at most 0.005 at 4 bits, while a
# wrong fold costs tenths
cmp_check "AWQ 4-bit folded scales NLL within 0.015 of shared scales kept in the tensors" \
    "awq4f - awq4s <= 0.015 && awq4s - awq4f <= 0.015" awq4f awq4s
# AutoAWQ's duo scales (--awq-scales duo), per-tensor and folded
res awq4; per=$NLL; res awq4d; du=$NLL; res awq4df; dfo=$NLL
[ -n "$per" ] && [ -n "$du" ] && [ -n "$dfo" ] && awk -v p="$per" -v d="$du" -v f="$dfo" 'BEGIN {
    printf "AWQ 4-bit g32, duo scales: per-tensor NLL %.6f, folded %.6f (%+.6f; %+.6f against the default scales per-tensor)\n",
           d, f, f - d, f - p }'
cmp_check "AWQ duo scales 4-bit NLL below RTN 4-bit" "awq4d < rtn4" awq4d rtn4
# --embed-bits 8: the NLL moves by at most +0.001 and the file shrinks by the
# embedding's fp32 bytes less its 8-bit storage (int8 codes and an fp16
# scale per 32), within a record's header and padding
cmp_check "8-bit embedding: NLL within +0.001 of fp32 embedding" "gptq4e8 <= gptq4 + 0.001" gptq4e8 gptq4
res gptq4; full=$BYTES; res gptq4e8; small=$BYTES
VOCAB=512 DIM=64
if [ -n "$full" ] && [ -n "$small" ]; then
    awk -v a="$full" -v b="$small" -v n="$((VOCAB * DIM))" 'BEGIN {
        want = n * 4 - n * 8.5 / 8; got = a - b
        printf "embedding: file %d -> %d bytes, %d smaller (fp32 %d bytes less 8-bit %d)\n", a, b, got, n * 4, n * 8.5 / 8
        exit !(got > want - 1024 && got < want + 1024) }' \
        && pass "8-bit embedding shrinks the file by the embedding's size change" \
        || fail "8-bit embedding: file sizes $full -> $small"
fi

# ------------------------------------------------------- damaged input files
# Each must end with a message and exit status 1: no crash, no success.
bad_input() {
    local what=$1 model=$2 tok=$3 rc
    "${RUN[@]}" info --model "$model" --tokenizer "$tok" > /dev/null 2> "$WORK/bad.err"
    rc=$?
    if [ $rc -eq 1 ] && grep -q "qlib-llama: " "$WORK/bad.err"; then
        pass "rejects $what: $(head -n 1 "$WORK/bad.err" | cut -c 1-90)"
    else
        fail "$what: exit $rc, $(head -n 1 "$WORK/bad.err")"
    fi
}
# poke FILE OFFSET BYTES: overwrite bytes in place (printf escapes)
poke() { printf '%b' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
B=$WORK/bad
head -c 27 "$MODEL" > "$B.short"; bad_input "a checkpoint shorter than its header" "$B.short" "$TOK"
head -c -1 "$MODEL" > "$B.trunc"; bad_input "a checkpoint one byte short" "$B.trunc" "$TOK"
{ cat "$MODEL"; printf 'x'; } > "$B.long"; bad_input "a checkpoint one byte long" "$B.long" "$TOK"
cp "$MODEL" "$B.neg"; poke "$B.neg" 0 '\xc0\xff\xff\xff'; bad_input "dim = -64" "$B.neg" "$TOK"
cp "$MODEL" "$B.huge"; poke "$B.huge" 8 '\xff\xff\xff\x7f'; bad_input "n_layers = 2^31-1" "$B.huge" "$TOK"
cp "$MODEL" "$B.min"; poke "$B.min" 20 '\x00\x00\x00\x80'; bad_input "vocab_size = INT32_MIN" "$B.min" "$TOK"
cp "$MODEL" "$B.seq"; poke "$B.seq" 24 '\x00\x00\x00\x40'; bad_input "seq_len = 2^30" "$B.seq" "$TOK"
cp "$MODEL" "$B.heads"; poke "$B.heads" 12 '\x07\x00\x00\x00'; bad_input "7 heads for dim 64" "$B.heads" "$TOK"
cp "$MODEL" "$B.sep"; poke "$B.sep" 20 '\x00\xfe\xff\xff'; bad_input "a separate classifier missing from the file" "$B.sep" "$TOK"
: > "$B.empty"; bad_input "an empty file" "$B.empty" "$TOK"
bad_input "a missing file" "$B.none" "$TOK"
head -c 3000 "$TOK" > "$B.tok"; bad_input "a truncated tokenizer" "$MODEL" "$B.tok"
cp "$TOK" "$B.tok0"; poke "$B.tok0" 0 '\x00\x00\x00\x00'; bad_input "max_token_length 0" "$MODEL" "$B.tok0"
cp "$TOK" "$B.toklen"; poke "$B.toklen" 8 '\xff\xff\xff\xff'; bad_input "a token of 2^32-1 bytes" "$MODEL" "$B.toklen"
{ cat "$TOK"; printf 'x'; } > "$B.toklong"; bad_input "a tokenizer with trailing bytes" "$MODEL" "$B.toklong"
if [ -f "$WORK/rtn4.qm" ]; then
    Q=$WORK/rtn4.qm
    size=$(wc -c < "$Q")
    head -c $((size - 64)) "$Q" > "$B.qtrunc"; bad_input "a truncated quantized model" "$B.qtrunc" "$TOK"
    head -c 100 "$Q" > "$B.qhead"; bad_input "a quantized model cut in its fp32 section" "$B.qhead" "$TOK"
    cp "$Q" "$B.qfloat"; poke "$B.qfloat" 1000 '\x55'; bad_input "a damaged fp32 section" "$B.qfloat" "$TOK"
    cp "$Q" "$B.qblob"; poke "$B.qblob" $((size - 200)) '\x55'; bad_input "a damaged tensor blob" "$B.qblob" "$TOK"
    cp "$Q" "$B.qver"; poke "$B.qver" 8 '\x09'; bad_input "an unknown file version" "$B.qver" "$TOK"
    cp "$Q" "$B.qdim"; poke "$B.qdim" 16 '\x00\x00\x00\x80'; bad_input "a quantized model with dim < 0" "$B.qdim" "$TOK"
fi

echo
echo "model-check: $(( $(date +%s) - START )) s with $JOBS parallel runs"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
