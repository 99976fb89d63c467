# Sourced by the model, interop and agreement scripts before anything else:
# DATA (QLIB_DATA, default ../shared/data) and BIN (QLIB_LLAMA, default
# examples/llama2/qlib-llama), paths from the environment taken relative to
# the caller's directory, the defaults relative to the repository root; then
# the working directory becomes the repository root.
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
DATA=${QLIB_DATA:+$(from_caller "$QLIB_DATA")}
BIN=${QLIB_LLAMA:+$(from_caller "$QLIB_LLAMA")}
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
DATA=${DATA:-../shared/data}
BIN=${BIN:-examples/llama2/qlib-llama}

# model_data NAME: MODEL, TOK, VALID and CALIB, stories260K and its texts in
# DATA; when one is missing, NAME is skipped (exit 0, saying why). With
# --bin, BIN must be built too (else exit 1).
model_data() {
    MODEL=$DATA/stories260K.bin
    TOK=$DATA/tok512.bin
    VALID=$DATA/tinystories-valid.txt
    CALIB=$DATA/tinystories-train-calib.txt
    if [ ! -f "$MODEL" ] || [ ! -f "$TOK" ] || [ ! -f "$VALID" ] || [ ! -f "$CALIB" ]; then
        echo "$1: SKIPPED ($DATA does not hold stories260K.bin, tok512.bin and the texts)"
        exit 0
    fi
    if [ "${2:-}" = --bin ] && [ ! -x "$BIN" ]; then
        echo "$1: $BIN is not built (run make first)"
        exit 1
    fi
}
