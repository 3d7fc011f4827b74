#!/usr/bin/env bash
# One short pass on a GPU machine (torch, typer, rich, safetensors preinstalled there):
# the GPU-marked tests, smoke, the main job timed on the GPU, then the CPU suite.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/slt-gpu}"; mkdir -p "$OUT"
TIMEFORMAT="wall %Rs"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, typer, rich, safetensors; print('torch', torch.__version__, 'typer', typer.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
echo "== gpu tests"; python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_models.py 2>&1 | tail -5
work=$(mktemp -d); cd "$work"
echo "== smoke"; time (python3 -m slt_cli smoke --epochs 1 2>&1 | tail -2)
echo "== main job on the GPU"
time python3 -m slt_cli train --stages all --force > "$OUT/train_stdout.txt" 2> "$OUT/train_stderr.txt"
tail -2 "$OUT/train_stderr.txt"; cat "$OUT/train_stdout.txt"
python3 -m slt_cli evaluate best_model_stage_5 --split test --json > "$OUT/eval.json"
python3 -c "import json; d=json.load(open('$OUT/eval.json')); print('test acc', d['accuracy'])"
cd - >/dev/null
echo "== cpu suite (GPU hidden)"; CUDA_VISIBLE_DEVICES= timeout 200 python3 -m pytest -q -x -p no:cacheprovider 2>&1 | tail -3
