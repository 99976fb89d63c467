#!/usr/bin/env bash
# `make awq-draws`: what AWQ's shared input scales cost on stories260K, over
# several draws of the calibration text. Each draw d = 1 .. DRAWS quantizes
# with --calib-seed d (the calibration stories in that seed's order, so a
# different 8192 tokens and samples), at 4 and 3 bits, groups of 32, with
# per-tensor scales, with --awq-shared and with --awq-fold, and measures the
# NLL on the validation stories; then prints each draw and, per bit width,
# the mean and standard deviation of each and the mean cost of sharing and
# of folding with its standard error. One draw moves AWQ's NLL by more than sharing costs, so a single
# pair of runs does not measure the cost. This is a measurement, not a test:
# it checks only that every run gave a number.
# Environment: DRAWS (default 16), SCALES (--awq-scales act|duo|both, default
# act), QLIB_DATA, QLIB_LLAMA, QLIB_MODEL_JOBS (parallel runs, default:
# online CPUs).
set -u
. "$(dirname "$0")/env.sh"
model_data awq-draws --bin
DRAWS=${DRAWS:-16}
case $DRAWS in '' | *[!0-9]* | 0 | 1) echo "awq-draws: DRAWS must be 2 or more"; exit 1 ;; esac
SCALES=${SCALES:-act}
case $SCALES in act | duo | both) ;; *) echo "awq-draws: SCALES must be act, duo or both"; exit 1 ;; esac
JOBS=${QLIB_MODEL_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qlib-draws.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
trap 'jobs -p | xargs -r kill 2>/dev/null; exit 130' INT TERM
export OPENBLAS_NUM_THREADS=1

# one run: draw bits kind (pt|shared) -> $WORK/<draw>-<bits>-<kind>.nll
run() {
    local d=$1 b=$2 kind=$3 id="$1-$2-$3" extra=()
    [ "$kind" = shared ] && extra=(--awq-shared)
    [ "$kind" = fold ] && extra=(--awq-fold)
    if "$BIN" quantize --model "$MODEL" --tokenizer "$TOK" --threads 1 --method awq --bits "$b" \
        --group 32 --awq-scales "$SCALES" "${extra[@]}" --calib "$CALIB" --calib-seed "$d" -o "$WORK/$id.qm" --quiet \
        > "$WORK/$id.log" 2>&1 &&
        "$BIN" ppl --model "$WORK/$id.qm" --tokenizer "$TOK" --threads 1 --text "$VALID" \
        >> "$WORK/$id.log" 2>&1; then
        sed -n 's/.*nll[=:] *\([0-9.]*\).*/\1/p' "$WORK/$id.log" | head -n 1 > "$WORK/$id.nll"
    fi
    rm -f "$WORK/$id.qm"
}

START=$(date +%s)
running=0
for d in $(seq 1 "$DRAWS"); do
    for b in 4 3; do
        for kind in pt shared fold; do
            run "$d" "$b" "$kind" &
            running=$((running + 1))
            if [ "$running" -ge "$JOBS" ]; then
                wait -n
                running=$((running - 1))
            fi
        done
    done
done
wait

missing=0
: > "$WORK/all"
for d in $(seq 1 "$DRAWS"); do
    for b in 4 3; do
        for kind in pt shared fold; do
            v=$(cat "$WORK/$d-$b-$kind.nll" 2>/dev/null)
            if [ -z "$v" ]; then
                echo "awq-draws: draw $d, $b bits, $kind gave no NLL: $(tail -n 1 "$WORK/$d-$b-$kind.log")"
                missing=$((missing + 1))
            fi
            echo "$d $b $kind ${v:-nan}" >> "$WORK/all"
        done
    done
done
[ "$missing" -eq 0 ] || exit 1

echo "AWQ on stories260K, groups of 32, NLL on tinystories-valid.txt, $DRAWS draws of the calibration"
echo "(quantize --method awq --bits B --group 32 --awq-scales $SCALES [--awq-shared | --awq-fold]"
echo " --calib-seed D --threads 1)"
echo
printf '| draw | 4-bit per-tensor | 4-bit shared | 4-bit folded | 3-bit per-tensor | 3-bit shared | 3-bit folded |\n'
printf '|---|---|---|---|---|---|---|\n'
awk '{ v[$1, $2, $3] = $4; if ($1 > n) n = $1 }
     END {
        for (d = 1; d <= n; d++)
            printf "| %d | %.6f | %.6f | %.6f | %.6f | %.6f | %.6f |\n", d,
                v[d, 4, "pt"], v[d, 4, "shared"], v[d, 4, "fold"], v[d, 3, "pt"], v[d, 3, "shared"],
                v[d, 3, "fold"]
     }' "$WORK/all"
echo
echo "shared: --awq-shared (one set of input scales, kept in the tensors); folded: --awq-fold"
echo "(shared, and folded into the RMSNorm weights and w3's rows); cost: against per-tensor"
echo
printf '| bits | scales | per-tensor mean (sd) | mean (sd) | cost: mean +- standard error | median | range | draws with cost <= 0.002 |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for b in 4 3; do
    for kind in shared fold; do
        awk -v b="$b" -v kind="$kind" '$2 == b { v[$1, $3] = $4; if ($1 > n) n = $1 }
            function sd(x, m, k,   i, s) { s = 0; for (i = 1; i <= k; i++) s += (x[i] - m) ^ 2; return sqrt(s / (k - 1)) }
            END {
                for (d = 1; d <= n; d++) {
                    p[d] = v[d, "pt"]; s[d] = v[d, kind]; c[d] = s[d] - p[d]
                    mp += p[d] / n; ms += s[d] / n; mc += c[d] / n; within += c[d] <= 0.002
                }
                for (i = 1; i <= n; i++) o[i] = c[i]
                for (i = 2; i <= n; i++) for (j = i; j > 1 && o[j - 1] > o[j]; j--) { t = o[j]; o[j] = o[j - 1]; o[j - 1] = t }
                med = n % 2 ? o[(n + 1) / 2] : (o[n / 2] + o[n / 2 + 1]) / 2
                printf "| %d | %s | %.6f (%.4f) | %.6f (%.4f) | %+.4f +- %.4f | %+.4f | %+.4f to %+.4f | %d of %d |\n",
                    b, kind == "fold" ? "folded" : "shared", mp, sd(p, mp, n), ms, sd(s, ms, n), mc,
                    sd(c, mc, n) / sqrt(n), med, o[1], o[n], within, n
            }' "$WORK/all"
    done
done
echo
echo "awq-draws: $((DRAWS * 6)) runs in $(( $(date +%s) - START )) s"
