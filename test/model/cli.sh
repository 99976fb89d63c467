#!/usr/bin/env bash
# Command-line checks of qlib-llama: rejected options exit 2 with the option
# named and leak nothing (under valgrind when it is installed), -o is checked
# before any work, --tokenizer is asked for only where it is used, temporary
# files of a killed run are named as such and removed by the next run.
# Environment: QLIB_DATA (default ../shared/data), QLIB_LLAMA (the binary).
set -u
. "$(dirname "$0")/env.sh"
model_data cli-check
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-cli.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$*"; }

VG=()
if command -v valgrind > /dev/null 2>&1; then
    VG=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99)
else
    echo "cli-check: valgrind not installed; leak checks run without it"
fi

# expect RC PATTERN ARGS...: exit status RC, stderr matching PATTERN, no leak
expect() {
    local want=$1 pat=$2 rc
    shift 2
    "${VG[@]}" "$BIN" "$@" > "$WORK/out" 2> "$WORK/err"
    rc=$?
    if [ "$rc" -eq "$want" ] && grep -qE -- "$pat" "$WORK/err"; then
        pass "$1 exits $rc: $(grep -E -- "$pat" "$WORK/err" | head -n 1 | sed 's/^qlib-llama: //' | cut -c 1-90)"
    else
        fail "$* -> exit $rc (want $want), stderr: $(head -n 3 "$WORK/err")"
    fi
}

Q=(quantize --model "$MODEL" --tokenizer "$TOK" -o "$WORK/q.qm")
expect 2 "--bits 5 is not valid for --method rtn" "${Q[@]}" --method rtn --bits 5
expect 2 "--bits 16 is not valid for --method rtn" "${Q[@]}" --method rtn --bits 16
expect 2 "--group 7 is not valid for --method rtn" "${Q[@]}" --method rtn --group 7
expect 2 "--bits 8 is not valid for --method none" "${Q[@]}" --method none --bits 8
expect 2 "--bits 4 is not valid for --method llm-int8" "${Q[@]}" --method llm-int8 --bits 4
expect 2 "--group is not an option of --method llm-int8" "${Q[@]}" --method llm-int8 --group 32
expect 2 "--sym is not an option of --method none" "${Q[@]}" --method none --sym
expect 2 "--awq-scales is not an option of --method gptq" "${Q[@]}" --method gptq --calib "$CALIB" \
    --awq-scales duo
expect 2 "bad value 'auto' for --awq-scales" "${Q[@]}" --method awq --calib "$CALIB" --awq-scales auto
expect 2 "--awq-fold applies to --method awq, without --target-bpw" "${Q[@]}" --method gptq \
    --calib "$CALIB" --awq-fold
expect 2 "--awq-fold applies to --method awq, without --target-bpw" "${Q[@]}" --method awq \
    --calib "$CALIB" --target-bpw 4.5 --awq-fold
expect 2 "needs --tokenizer" quantize --model "$MODEL" --method gptq --calib "$CALIB" -o "$WORK/q.qm"
expect 2 "needs --tokenizer" ppl --model "$MODEL" --text "$CALIB"
expect 2 "needs --tokenizer" generate --model "$MODEL"
[ -e "$WORK/q.qm" ] && fail "a rejected command left $WORK/q.qm" || pass "no output after rejected commands"

# -o is created before the work: a GPTQ run into a missing directory fails
# before its first layer.
expect 1 "cannot create" quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --calib "$CALIB" \
    -o "$WORK/missing/q.qm"
if grep -q "^layer\|calibration:" "$WORK/err"; then fail "bad -o was noticed only after quantizing"
else pass "bad -o rejected before quantizing"; fi

# --tokenizer is not needed where it is not used
if "$BIN" info --model "$MODEL" > "$WORK/info" 2>&1; then pass "info without --tokenizer"
else fail "info without --tokenizer: $(tail -n 1 "$WORK/info")"; fi
if "$BIN" quantize --model "$MODEL" --method rtn --bits 4 --group 32 -o "$WORK/rtn.qm" > "$WORK/rtn" 2>&1 \
    && [ -s "$WORK/rtn.qm" ]; then pass "quantize --method rtn without --tokenizer"
else fail "quantize --method rtn without --tokenizer: $(tail -n 1 "$WORK/rtn")"; fi
if "$BIN" --version | grep -qE "^qlib-llama [0-9]+\.[0-9]+\.[0-9]+ \(qlib [0-9.]+\)$"; then pass "--version"
else fail "--version: $("$BIN" --version 2>&1)"; fi

# --calib-seed: the calibration stories in the seed's order. The same seed
# gives the same file, another seed other stories (so other tensors), seed 0
# the file's order, as without the option; it needs --calib TEXT.
ids="$WORK/ids.txt"
printf '1 2 3 4\n5 6 7 8\n' > "$ids"
expect 2 "--calib-seed orders the stories of --calib TEXT; order the lines" \
    quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --calib-tokens "$ids" --calib-seed 3 \
    -o "$WORK/s.qm"
expect 2 "--calib-seed orders the stories of --calib TEXT; give --calib" \
    quantize --model "$MODEL" --tokenizer "$TOK" --method rtn --calib-seed 3 -o "$WORK/s.qm"
expect 2 "--calib-seed" quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --calib "$CALIB" \
    --calib-seed -1 -o "$WORK/s.qm"
seeded() {  # seed output: GPTQ 4-bit on 2048 calibration tokens
    local seed=()
    [ "$1" != none ] && seed=(--calib-seed "$1")
    "$BIN" quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --bits 4 --group 32 \
        --calib "$CALIB" --calib-budget 2048 "${seed[@]}" --threads 1 -o "$2" > /dev/null 2> "$2.err"
}
if seeded 5 "$WORK/s5a.qm" && seeded 5 "$WORK/s5b.qm" && seeded 6 "$WORK/s6.qm" \
    && seeded 0 "$WORK/s0.qm" && seeded none "$WORK/sn.qm"; then
    if cmp -s "$WORK/s5a.qm" "$WORK/s5b.qm" && ! cmp -s "$WORK/s5a.qm" "$WORK/s6.qm" \
        && ! cmp -s "$WORK/s5a.qm" "$WORK/s0.qm" && cmp -s "$WORK/s0.qm" "$WORK/sn.qm" \
        && grep -q "in the order of seed 5" "$WORK/s5a.qm.err" && ! grep -q "order of seed" "$WORK/s0.qm.err"
    then pass "--calib-seed: seed 5 twice the same file, seed 6 and seed 0 others, seed 0 as without it"
    else fail "--calib-seed: $(cmp "$WORK/s5a.qm" "$WORK/s5b.qm"; cmp "$WORK/s0.qm" "$WORK/sn.qm"; grep calibration: "$WORK"/s*.err)"; fi
else
    fail "--calib-seed runs: $(tail -n 1 "$WORK"/s*.err)"
fi

# A run killed with SIGKILL leaves a temporary file named for what it is; the
# next run writing the same output removes it.
"$BIN" quantize --model "$MODEL" --tokenizer "$TOK" --method gptq --calib "$CALIB" --threads 1 \
    -o "$WORK/k.qm" > /dev/null 2>&1 &
victim=$!
for _ in $(seq 100); do
    ls "$WORK"/k.qm.qlib-llama-tmp.* > /dev/null 2>&1 && break
    sleep 0.05
done
kill -9 $victim 2> /dev/null
wait $victim 2> /dev/null
left=$(ls "$WORK"/k.qm.qlib-llama-tmp.$victim 2> /dev/null)
if [ -n "$left" ]; then pass "killed run left $(basename "$left")"
else fail "killed run left no named temporary file: $(ls "$WORK")"; fi
"$BIN" quantize --model "$MODEL" --method rtn -o "$WORK/k.qm" > /dev/null 2> "$WORK/err"
if [ ! -e "$WORK/k.qm.qlib-llama-tmp.$victim" ] && grep -q "interrupted run" "$WORK/err" && [ -s "$WORK/k.qm" ]; then
    pass "the next run removed it: $(grep "interrupted" "$WORK/err" | sed "s|$WORK/||")"
else
    fail "stale temporary file: $(ls "$WORK"), $(cat "$WORK/err")"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
