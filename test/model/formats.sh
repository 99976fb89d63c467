#!/usr/bin/env bash
# Model files in and out of qlib-llama, on stories260K: Hugging Face
# directories made by test/model/make_hf.py (numpy, HF's rotary order for wq
# and wk; single file, shards, bf16), GGUF files made by test/model/make_gguf.py
# (numpy; F16, Q8_0 and Q4_0 projections) and by `qlib-llama convert`, and
# the same model back out as GGUF and HF. Environment: QLIB_DATA, QLIB_LLAMA.
set -u
. "$(dirname "$0")/env.sh"
model_data formats-check
PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' 2> /dev/null; then
    echo "formats-check: SKIPPED ($PY has no numpy)"
    exit 0
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-formats.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }
# the first 20 stories: enough for exact comparisons, quick
"$PY" -c "import sys; p = open(sys.argv[1]).read().split('<|endoftext|>'); sys.stdout.write('<|endoftext|>'.join(p[:20]) + '<|endoftext|>\n')" \
    "$VALID" > "$WORK/short.txt"

nll_of() {  # MODEL TEXT [args]: the nll line's value, or empty
    local m=$1 t=$2
    shift 2
    "$BIN" ppl --model "$m" --text "$t" --threads 1 "$@" 2> "$WORK/err" | sed -n 's/^nll: \([0-9.]*\).*/\1/p'
}
same_nll() {  # LABEL NLL_A NLL_B
    if [ -n "$2" ] && [ "$2" = "$3" ]; then pass "$1 ($2)"; else fail "$1: '$2' vs '$3' $(head -n 1 "$WORK/err")"; fi
}
REF=$(nll_of "$MODEL" "$WORK/short.txt" --tokenizer "$TOK")

# --- Hugging Face in: the acceptance check on the whole validation text
if "$PY" test/model/make_hf.py "$MODEL" "$WORK/hf" --shards 2 > "$WORK/log" 2>&1; then
    full=$(nll_of "$WORK/hf" "$VALID" --tokenizer "$TOK")
    if [ -n "$full" ] && awk -v n="$full" 'BEGIN { d = n - 1.2494; exit !(d < 0.001 && d > -0.001) }'; then
        pass "HF directory (2 shards, HF rotary order) ppl on tinystories-valid.txt: NLL $full, 1.2494 +- 0.001"
    else
        fail "HF directory NLL '$full' not within 0.001 of 1.2494: $(head -n 1 "$WORK/err")"
    fi
    same_nll "HF directory gives the checkpoint's NLL exactly" "$(nll_of "$WORK/hf" "$WORK/short.txt" --tokenizer "$TOK")" "$REF"
else
    fail "make_hf.py: $(tail -n 1 "$WORK/log")"
fi
"$PY" test/model/make_hf.py "$MODEL" "$WORK/hfbf" --dtype bf16 > /dev/null 2>&1
"$PY" test/model/make_hf.py "$MODEL" "$WORK/hf16" --dtype f16 > /dev/null 2>&1
bf=$(nll_of "$WORK/hfbf" "$WORK/short.txt" --tokenizer "$TOK")
if [ -n "$bf" ] && awk -v a="$bf" -v b="$REF" 'BEGIN { d = a - b; exit !(d < 0.01 && d > -0.01) }'; then
    pass "HF bf16 directory runs: NLL $bf (fp32 $REF)"
else
    fail "HF bf16: '$bf' vs $REF $(head -n 1 "$WORK/err")"
fi

# --- GGUF in: F16 and blocks decode to exactly the values make_gguf.py gives
# (Q8_0 / Q4_0 are imported as qlib tensors; --compute f32 multiplies them in
# fp32 like the decoded file, auto would quantize the activations)
for q in f16 q8_0 q4_0; do
    if "$PY" test/model/make_gguf.py checkpoint "$MODEL" "$TOK" "$WORK/$q.gguf" --proj $q \
            --dequantized "$WORK/$q-f32.gguf" > "$WORK/log" 2>&1; then
        same_nll "GGUF with $q projections equals its F32 decoding" \
            "$(nll_of "$WORK/$q.gguf" "$WORK/short.txt" --compute f32)" \
            "$(nll_of "$WORK/$q-f32.gguf" "$WORK/short.txt" --compute f32)"
    else
        fail "make_gguf.py $q: $(tail -n 1 "$WORK/log")"
    fi
done
# convert --type keep: the GGUF writer given Q8_0 / Q4_0 blocks as they are
for q in q8_0 q4_0; do
    if "$BIN" convert --model "$WORK/$q.gguf" --type keep -o "$WORK/$q-kept.gguf" > "$WORK/log" 2>&1 \
        && "$BIN" info --model "$WORK/$q-kept.gguf" | grep -q " ${q^^} "; then
        same_nll "GGUF with $q blocks rewritten by convert --type keep" \
            "$(nll_of "$WORK/$q-kept.gguf" "$WORK/short.txt")" "$(nll_of "$WORK/$q.gguf" "$WORK/short.txt")"
    else
        fail "convert --type keep of $q: $(tail -n 1 "$WORK/log")"
    fi
done
# an HF f16 directory converted to an F16 GGUF keeps its weights
"$BIN" convert --model "$WORK/hf16" --tokenizer "$TOK" --type f16 -o "$WORK/hf16.gguf" > "$WORK/log" 2>&1
same_nll "HF f16 directory and its F16 GGUF" "$(nll_of "$WORK/hf16" "$WORK/short.txt" --tokenizer "$TOK")" \
    "$(nll_of "$WORK/hf16.gguf" "$WORK/short.txt")"

# --- out: convert to GGUF and HF and back
if "$BIN" convert --model "$MODEL" --tokenizer "$TOK" -o "$WORK/c.gguf" > "$WORK/log" 2>&1; then
    same_nll "checkpoint -> GGUF F32 (vocabulary from the GGUF)" "$(nll_of "$WORK/c.gguf" "$WORK/short.txt")" "$REF"
else
    fail "convert to GGUF: $(tail -n 1 "$WORK/log")"
fi
if "$BIN" convert --model "$WORK/c.gguf" -o "$WORK/c-hf" --format hf > "$WORK/log" 2>&1 \
    && "$BIN" convert --model "$WORK/c-hf" --tokenizer "$WORK/c.gguf" -o "$WORK/c2.gguf" > "$WORK/log" 2>&1; then
    same_nll "GGUF -> HF -> GGUF" "$(nll_of "$WORK/c2.gguf" "$WORK/short.txt")" "$REF"
    # the HF directory qlib-llama wrote holds make_hf.py's tensors, rotary order included
    if "$PY" - "$WORK/c-hf/model.safetensors" "$WORK/hf" > "$WORK/cmp" 2>&1 <<'PYEOF'
import json, struct, sys, glob
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype={"F32": "<f4", "F16": "<f2"}[v["dtype"]]).reshape(v["shape"])
    return out
ours = load(sys.argv[1])
ref = {}
for f in sorted(glob.glob(sys.argv[2] + "/*.safetensors")): ref.update(load(f))
assert sorted(ours) == sorted(ref), "tensor names differ"
bad = [k for k in ref if ours[k].shape != ref[k].shape or not np.array_equal(ours[k], ref[k])]
assert not bad, "tensors differ: %s" % bad[:5]
print("%d tensors identical" % len(ref))
PYEOF
    then pass "HF written by convert equals make_hf.py's: $(cat "$WORK/cmp")"
    else fail "HF written by convert: $(tail -n 1 "$WORK/cmp")"; fi
else
    fail "convert to HF and back: $(tail -n 1 "$WORK/log")"
fi
if "$BIN" convert --model "$MODEL" --tokenizer "$TOK" -o "$WORK/c16.gguf" --type f16 > "$WORK/log" 2>&1; then
    same_nll "checkpoint -> GGUF F16 (round to nearest even) equals numpy's F16" "$(nll_of "$WORK/c16.gguf" "$WORK/short.txt")" \
        "$(nll_of "$WORK/f16.gguf" "$WORK/short.txt")"
else
    fail "convert --type f16: $(tail -n 1 "$WORK/log")"
fi

# --- quantize from GGUF and HF inputs: the same model as from the checkpoint
"$BIN" quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --bits 4 --group 32 --calib "$CALIB" \
    --threads 1 -o "$WORK/ck.qm" > /dev/null 2>&1
"$BIN" quantize --model "$WORK/hf" --tokenizer "$WORK/c.gguf" --method gptq --bits 4 --group 32 \
    --calib "$CALIB" --threads 1 -o "$WORK/hf.qm" > /dev/null 2> "$WORK/err"
if [ -s "$WORK/ck.qm" ] && cmp -s "$WORK/ck.qm" "$WORK/hf.qm"; then
    pass "GPTQ from the HF directory (vocabulary borrowed from a GGUF) writes the checkpoint's file byte for byte"
else
    fail "GPTQ from HF differs from GPTQ from the checkpoint: $(tail -n 1 "$WORK/err")"
fi
"$BIN" ppl --model "$WORK/c.gguf" --text "$CALIB" --tokens-out "$WORK/calib.ids" > /dev/null 2>&1
"$BIN" quantize --model "$WORK/c.gguf" --method gptq --bits 4 --group 32 --calib-tokens "$WORK/calib.ids" \
    --threads 1 -o "$WORK/ids.qm" > /dev/null 2> "$WORK/err"
if [ -s "$WORK/ids.qm" ] && grep -q "calibration: 8192 tokens" "$WORK/err"; then
    pass "GPTQ calibrated from --calib-tokens FILE ($(grep calibration: "$WORK/err" | cut -c 14-60))"
else
    fail "--calib-tokens FILE: $(tail -n 1 "$WORK/err")"
fi

# --- quantized Hugging Face checkpoints out, checked by an independent decoder
# (test/model/hf_decode.py, numpy, from the GPTQ v1 / AWQ gemm rules) against
# qlib's dequantized weights of the same files (convert --type f32), which
# quantize's own read-back has compared with the quantized tensors bit for bit
hf_round_trip() {  # LABEL MODEL_DIR OUT ARGS...
    local label=$1 model=$2 out=$3
    shift 3
    rm -rf "$out" "$out-f32"
    if "$BIN" quantize --model "$model" "$@" --threads 1 -o "$out" > "$WORK/log" 2>&1 \
        && grep -q "every tensor identical" "$WORK/log" \
        && "$BIN" convert --model "$out" -o "$out-f32" --format hf --type f32 >> "$WORK/log" 2>&1 \
        && "$PY" test/model/hf_decode.py "$out" "$out-f32/model.safetensors" > "$WORK/dec" 2>&1; then
        pass "$label: $(cat "$WORK/dec")"
    else
        fail "$label: $(tail -n 1 "$WORK/log") $(tail -n 1 "$WORK/dec" 2> /dev/null)"
    fi
}
if [ -d "$WORK/hf" ] && [ -f "$CALIB" ]; then
    CAL=(--tokenizer "$TOK" --calib "$CALIB")
    hf_round_trip "HF (make_hf.py) -> GPTQ 4-bit g32 act-order" "$WORK/hf" "$WORK/q-gptq" \
        --method gptq --bits 4 --group 32 --act-order "${CAL[@]}" --format gptq
    hf_round_trip "HF -> GPTQ 3-bit g32 symmetric" "$WORK/hf" "$WORK/q-gptq3" \
        --method gptq --bits 3 --group 32 --sym "${CAL[@]}" --format gptq
    hf_round_trip "HF -> AWQ 4-bit g32 (scales shared and folded)" "$WORK/hf" "$WORK/q-awq" \
        --method awq --bits 4 --group 32 "${CAL[@]}" --format awq
    # the quantized directories run, close to the same settings in qlib-llama's
    # own file (which keeps fp32 norms and embedding and quantizes w1/w2/w3 too)
    "$BIN" quantize --model "$WORK/hf" --method gptq --bits 4 --group 32 --act-order "${CAL[@]}" \
        --threads 1 -o "$WORK/q-gptq.qm" > /dev/null 2>&1
    a=$(nll_of "$WORK/q-gptq" "$WORK/short.txt" --tokenizer "$TOK")
    b=$(nll_of "$WORK/q-gptq.qm" "$WORK/short.txt" --tokenizer "$TOK")
    if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 0.01 && d > -0.01) }'; then
        pass "ppl runs the GPTQ directory: NLL $a (qlib-llama's file $b)"
    else
        fail "ppl of the GPTQ directory: '$a' vs '$b' $(head -n 1 "$WORK/err")"
    fi
fi
# every projection packed: a synthetic model whose shapes fill the words
if "$PY" test/model/make_gguf.py synthetic "$WORK/syn" --dim 128 --layers 2 --hidden 256 --vocab 300 \
        --heads 4 --kv-heads 2 --seq-len 64 --format hf > /dev/null 2>&1; then
    "$PY" -c "
import numpy as np
r = np.random.default_rng(3)
for _ in range(8): print(' '.join(map(str, r.integers(3, 300, 64))))" > "$WORK/syn.ids"
    hf_round_trip "synthetic (all 7 projections) -> GPTQ 4-bit g64" "$WORK/syn" "$WORK/syn-gptq" \
        --method gptq --bits 4 --group 64 --calib-tokens "$WORK/syn.ids" --format gptq
    hf_round_trip "synthetic -> GPTQ 2-bit g128 act-order" "$WORK/syn" "$WORK/syn-gptq2" \
        --method gptq --bits 2 --group 128 --act-order --calib-tokens "$WORK/syn.ids" --format gptq
    hf_round_trip "synthetic -> AWQ 4-bit g64" "$WORK/syn" "$WORK/syn-awq" \
        --method awq --bits 4 --group 64 --calib-tokens "$WORK/syn.ids" --format awq
else
    fail "make_gguf.py synthetic"
fi

echo "formats-check: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
