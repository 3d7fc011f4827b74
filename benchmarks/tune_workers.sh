#!/bin/bash
# Two `slt tune` workers share one SQLite study (stage 1, 12 trials, a generated set);
# then a worker is SIGKILLed mid-trial in a second study and `--resume` finishes it.
# Usage: benchmarks/tune_workers.sh [FOLDER]  (PYTHON=... for another interpreter)
export OMP_NUM_THREADS=1 COLUMNS=200
PY=${PYTHON:-python}
W=${1:-$(mktemp -d)}; mkdir -p "$W"; W=$(realpath "$W"); cd "$W"
DATA="synthetic:classes=8,signers=8,repeats=4,frames=16"
URL="sqlite:///$W/study.db"
cat > tiny.toml <<'T'
[run]
batch_size = 32
min_batches_per_epoch = 6
multi_gpu = false
[data]
frames = 12
[model]
name = "conv_transformer"
dim = 32
depth = 1
[[stages]]
name = "baseline"
epochs = 6
[tune]
startup_trials = 2
warmup_epochs = 1
stages = {}
[tune.space]
lr = { low = 1e-4, high = 3e-2, log = true }
dropout = { low = 0.0, high = 0.4 }
T
start=$(date +%s)
for w in a b; do
  $PY -m slt_cli tune --config tiny.toml --data $DATA --device cpu --trials 12 --storage $URL \
    --checkpoint-dir $W/$w --json > $w.json 2> $w.log &
done
wait
echo "two workers, 12 trials: $(( $(date +%s) - start )) s"
# kill one worker mid-trial, then carry on with --resume
$PY -m slt_cli tune --config tiny.toml --data $DATA --device cpu --trials 8 --storage $URL \
  --study killed --checkpoint-dir $W/k --json > k1.json 2> k1.log &
pid=$!
sleep 18; kill -9 $pid; wait $pid; echo "worker killed: rc=$?"
$PY -m slt_cli tune --config tiny.toml --data $DATA --device cpu --trials 8 --storage $URL \
  --study killed --checkpoint-dir $W/k --resume --json > k2.json 2> k2.log
echo "resume rc=$?"
$PY - "$W" <<'P'
import collections, sys
from pathlib import Path
import optuna
url = f"sqlite:///{sys.argv[1]}/study.db"
for name in ("slt.stage1", "killed.stage1"):
    trials = optuna.load_study(study_name=name, storage=url).trials
    states = collections.Counter(t.state.name for t in trials)
    folders = collections.Counter(Path(t.user_attrs["folder"]).relative_to(sys.argv[1]).parts[0] for t in trials)
    params = [tuple(sorted(t.params.items())) for t in trials]
    print(name, len(trials), "trials", dict(states), "by worker", dict(folders),
          "distinct numbers", len({t.number for t in trials}), "distinct params", len(set(params)))
P
