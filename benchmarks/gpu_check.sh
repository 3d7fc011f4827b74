#!/usr/bin/env bash
# One short pass on a GPU machine (torch, typer, rich, safetensors preinstalled there):
# the CPU suite, the GPU-marked tests, smoke and the main job timed on the GPU.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/slt-gpu}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, typer, rich, safetensors; print('torch', torch.__version__, 'typer', typer.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
echo "== gpu tests"; python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -5
echo "== smoke"; (cd "$(mktemp -d)" && /usr/bin/time -f "smoke wall %es" python3 -m slt_cli smoke --epochs 1 2>&1 | tail -3)
echo "== main job on the GPU"
work=$(mktemp -d); cd "$work"
/usr/bin/time -f "train wall %es" python3 -m slt_cli train --stages all --force > "$OUT/train_stdout.txt" 2> "$OUT/train_stderr.txt"
tail -3 "$OUT/train_stderr.txt"; cat "$OUT/train_stdout.txt"
python3 -m slt_cli evaluate best_model_stage_5 --split test --json | python3 -c "import json,sys; d=json.load(sys.stdin); print('test acc', d['accuracy'])"
cd - >/dev/null
echo "== cpu suite (GPU hidden)"; CUDA_VISIBLE_DEVICES= timeout 240 python3 -m pytest -q -x -p no:cacheprovider 2>&1 | tail -3
