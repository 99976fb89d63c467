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
