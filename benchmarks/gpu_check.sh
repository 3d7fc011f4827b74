#!/usr/bin/env bash
# One short pass on a GPU machine (under 5 minutes), from the repository root:
#     bash benchmarks/gpu_check.sh
# with torch, typer, rich and safetensors preinstalled (slt itself from PYTHONPATH;
# PYTHON=path/to/python picks another interpreter).
# Prints one JSON line per figure: the smoke test on CUDA, training throughput
# against a bare loop in fp32, bf16 and bf16 + torch.compile, a short run with
# DataParallel over every visible GPU (and, with several, torchrun + DDP), and every
# model family's step time on the GPU. Every step
# has its own time limit and its own line, so one failure does not hide the rest.
# CI never runs this: no test needs a GPU.
set -u -o pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COLUMNS=200
PY="${PYTHON:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# emit CHECK KEY=VALUE...: one JSON line (values that parse as JSON stay numbers).
emit() {
  "$PY" - "$@" <<'EOF'
import json, sys
record = {"check": sys.argv[1]}
for item in sys.argv[2:]:
    key, _, value = item.partition("=")
    try:
        record[key] = json.loads(value)
    except ValueError:
        record[key] = value
print(json.dumps(record))
EOF
}

# step NAME LIMIT COMMAND...: run with a time limit; keep its output in $work/NAME.*.
step() {
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.err"
  local status=$?
  echo "$status $((SECONDS - started))" >"$work/$name.status"
  return $status
}

report_failure() {  # NAME: a JSON line with the exit status and the error's last line
  read -r status seconds <"$work/$1.status"
  local error
  error=$(grep -m1 '^error:' "$work/$1.err" || tail -n 1 "$work/$1.err")
  emit "$1" ok=false status="$status" seconds="$seconds" error="$(echo "$error" | cut -c1-300)"
}

"$PY" - 2>/dev/null <<'EOF' || emit env ok=false error="torch, typer, rich or safetensors missing"
import json, torch, typer, rich, safetensors
cuda = torch.cuda.is_available()
print(json.dumps({"check": "env", "torch": torch.__version__, "cuda": cuda,
                  "gpus": torch.cuda.device_count(),
                  "gpu": torch.cuda.get_device_name(0) if cuda else None,
                  "bf16": cuda and torch.cuda.is_bf16_supported()}))
EOF
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

# 1. smoke on CUDA: every stage for one epoch, every checkpoint reloaded and re-scored.
if step smoke 60 "$PY" -m slt_cli smoke --epochs 1 --device cuda; then
  read -r _ seconds <"$work/smoke.status"
  emit smoke ok=true seconds="$seconds" result="$(tail -n 1 "$work/smoke.out")"
else
  report_failure smoke
fi

# 2. throughput: slt against a bare loop, default model and batch, on one GPU.
for variant in "fp32" "bf16" "bf16 --compile"; do
  set -- $variant
  name="throughput_$1${2:+_compile}"
  limit=50; [ $# -gt 1 ] && limit=110
  if step "$name" "$limit" "$PY" benchmarks/throughput.py --device cuda --precision "$@" \
       --repeats 4; then
    tail -n 1 "$work/$name.out"
  else
    report_failure "$name"
  fi
done

# 3. DataParallel over every visible GPU: two short stages of the main job.
run_args=(train --stages 1-2 --epochs-per-stage 2 --force --device cuda)
if step data_parallel 60 "$PY" -m slt_cli "${run_args[@]}" --multi-gpu \
     --checkpoint-dir "$work/dp"; then
  read -r _ seconds <"$work/data_parallel.status"
  emit data_parallel ok=true gpus="$gpus" seconds="$seconds" \
    line="$(grep -m1 '^training stages' "$work/data_parallel.err")" \
    stage_2="$(grep -m1 'saved best_model_stage_2' "$work/data_parallel.err" | sed 's/^ *//')"
else
  report_failure data_parallel
fi

# 4. With several GPUs, the same run under torchrun: one process per GPU, DDP.
if [ "$gpus" -gt 1 ]; then
  if step ddp 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$gpus" \
       -m slt_cli "${run_args[@]}" --checkpoint-dir "$work/ddp"; then
    read -r _ seconds <"$work/ddp.status"
    emit ddp ok=true gpus="$gpus" seconds="$seconds" \
      line="$(grep -m1 '^training stages' "$work/ddp.err")" \
      files="$(ls "$work/ddp" | grep -c '\.safetensors$')"
  else
    report_failure ddp
  fi
else
  emit ddp ok=null skipped="$gpus GPU(s) visible; torchrun + DDP needs two or more"
fi

# 5. Every model family on the GPU (the graph network is the CPU's slowest): step times.
if step families 60 "$PY" - <<'EOF'
import json, time, torch
import torch.nn.functional as F
from slt_cli.data.landmarks import select_landmarks
from slt_cli.data.transforms import feature_count
from slt_cli.models import MODEL_BUILDERS, build_model, takes_joints
names = [mark.name for mark in select_landmarks("hands+pose+lips")][:96]
features = feature_count(len(names), 3, motion=True)
clips = torch.randn(256, 30, features, device="cuda")
labels = torch.randint(0, 250, (256,), device="cuda")
for name in MODEL_BUILDERS:
    model = build_model(name, in_features=features, num_classes=250, num_frames=30,
                        joints=names if takes_joints(name) else None).cuda()
    times = []
    for _ in range(6):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(clips).float(), labels)
        loss.backward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    print(json.dumps({"check": "family", "model": name, "batch": 256, "landmarks": 96,
                      "ms_per_step": round(min(times[1:]) * 1e3, 2)}))
EOF
then
  cat "$work/families.out"
else
  report_failure families
fi
