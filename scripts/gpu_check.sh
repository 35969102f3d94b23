#!/usr/bin/env bash
# The CUDA checks in one command, for a machine with an NVIDIA card (CI has none; run it by hand where one is).
#
#   bash scripts/gpu_check.sh [OUT]            # OUT: where the logs go (default: $OUT, else outputs/gpu_check)
#
# Stages, in order of need, each under its own time limit so that one slow stage cannot eat the others (about 9 min
# in all by default, to fit one 10-minute device call; override in seconds: DEEP_S, TESTS_S, TRAIN_S; 0 skips):
#   1. the card and the software (nvidia-smi, torch, CUDA);
#   2. `scripts/bench_deep.py --device cuda`: the depth figures' 100- and 1000-layer SGD step, the engine against a
#      plain loop, torch.compile (default and reduce-overhead), the whole step in one CUDA graph, stacked runs
#      (docs/performance.md, "Deep narrow MLPs"; the target is ≥ 3× the plain loop at L = 1000);
#   3. the test suite on the card: `runtime.device=auto` puts every network engine test on CUDA, and the CUDA-only
#      tests run instead of skipping (pytest-xdist when installed);
#   4. `scripts/bench_train.py --skip cpu`: VGG19 and ResNet-50 through the engine (bf16 autocast) against a
#      DataLoader fp32 loop (docs/performance.md, "CUDA").
# Each stage's output is in OUT/<stage>.log; report the card (stage 1) next to every number.
#
# Without network the machine needs bnexp's pure-Python dependencies beside the repository: a folder `.wheels/`
# (ignored by git) of `pip download hydra-core omegaconf antlr4-python3-runtime -d .wheels` is installed from when
# `import hydra` fails. torch, pandas, matplotlib, tqdm and pytest are expected to be there already.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-outputs/gpu_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 BNEXP_OUTPUTS="$out/runs"

if ! "$py" -c "import hydra, omegaconf" 2>/dev/null; then
    [ -d .wheels ] || { echo "hydra-core/omegaconf missing and no .wheels/ folder (see the header)"; exit 2; }
    "$py" -m pip install -q --no-index --find-links .wheels --target /tmp/bnexp-site hydra-core omegaconf || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/bnexp-site"
fi

stage() {  # stage NAME SECONDS COMMAND...: run COMMAND under SECONDS (0: skip), its output to OUT/NAME.log
    local name=$1 limit=$2; shift 2
    if [ "$limit" = 0 ]; then echo "== $name: skipped"; return; fi
    echo "== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.log"
    echo "== $name: rc $rc after $((SECONDS - start)) s"
}

stage card 30 bash -c "nvidia-smi; $py -c 'import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA device\")'"
"$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" || {
    echo "no CUDA device here: nothing more to check"; exit 3; }
stage bench_deep "${DEEP_S:-240}" "$py" scripts/bench_deep.py --device cuda \
    --variants plain,engine,compile,compile-ro,graph,stacked --depths 100,1000 --compile-timeout 60
xdist=$("$py" -c "import xdist" 2>/dev/null && echo "-n 8")
stage tests "${TESTS_S:-200}" "$py" -m pytest -q $xdist -p no:cacheprovider
stage bench_train "${TRAIN_S:-90}" "$py" scripts/bench_train.py --skip cpu --repeats 2
