#!/usr/bin/env bash
# The GPU checks in one call: the CUDA tests, the GPU overhead benchmark,
# the streaming benchmark (resident vs streamed data), default fit time
# by sequence length and data-parallel throughput (1 vs 2 processes).
#
# On the team's lent GPU machines torch is installed but skorch is not, so
# skorch travels as a wheel, and scikit-learn too, so that the GPU run uses
# the version the CPU runs use. Once, on the developer machine, from the
# repo root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl skorch==1.4.0 scikit-learn==1.9.1
# then run this script on the GPU machine with `.whl` carried along:
#   bash benchmarks/gpu_check.sh
# Everything it prints also goes to $OUT/gpu_check.log when OUT is set.
# Record what it prints, with the card's name, in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${OUT:-}" ]; then
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1

python3 - <<'PY' || exit 1
import sys

import numpy
import sklearn
import skorch
import torch

if not torch.cuda.is_available():
    sys.exit("no CUDA device here: run this script on a GPU machine")
print(
    f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
    f"cuDNN {torch.backends.cudnn.version()}, numpy {numpy.__version__}, "
    f"scikit-learn {sklearn.__version__}, skorch {skorch.__version__}"
)
PY

# Each step has its own time limit, so a hung test cannot eat the
# benchmark's share of a short GPU lease; together they stay under the
# device tool's 600 s per command.
echo "## GPU tests"
timeout 150 python3 -m pytest -p no:cacheprovider -q -rs tests/test_gpu.py \
    tests/test_distributed.py
tests_status=$?

echo "## GPU overhead (hidden 256, T=100, F=32, N=100,000)"
timeout 120 python3 benchmarks/overhead.py --device cuda --rounds 1
bench_status=$?

echo "## Streaming (data too big for the GPU, forced)"
timeout 90 python3 benchmarks/streaming.py
stream_status=$?

echo "## Fit time and prediction by sequence length"
timeout 120 python3 benchmarks/scaling.py --device cuda --lengths 100 500 2000
scaling_status=$?

# With one GPU the two processes share it (over gloo), and the table says
# so: that row measures the gradient exchange's cost, not a speed-up.
echo "## Data-parallel training (torchrun, 1 vs 2 processes)"
timeout 100 python3 benchmarks/distributed.py --device cuda --processes 1 2 \
    --samples 20000 --timesteps 100 --features 32 --hidden 256 --batch 256 \
    --epochs 2
distributed_status=$?

echo "tests exit ${tests_status}, benchmark exit ${bench_status}," \
    "streaming exit ${stream_status}, scaling exit ${scaling_status}," \
    "distributed exit ${distributed_status}"
exit $(( tests_status || bench_status || stream_status || scaling_status \
    || distributed_status ))
