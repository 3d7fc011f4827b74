"""torchrun: two CPU processes (gloo) train one stage and write one set of checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slt_cli import Trainer, load_config
from slt_cli.errors import SltError
from slt_cli.run.distributed import World, shard, world_from_environment
from slt_cli.run.metrics import RunningMetrics
from slt_cli.store.checkpoints import load_weights, read_sidecar
from slt_cli.store.sidecar import SIDECAR_KEYS
from tests.conftest import TINY_TOML


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={processes}", "-m", "slt_cli", *args],
        env=env, capture_output=True, text=True, timeout=180)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_torchrun_trains_on_two_processes_and_writes_one_set_of_checkpoints(
        tmp_path: Path) -> None:
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY_TOML.replace("batch_size = 32", "batch_size = 8"))
    folder = tmp_path / "ddp"
    done = torchrun("train", "--config", str(config_path), "--checkpoint-dir", str(folder),
                    "--stages", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes, DistributedDataParallel" in done.stderr
    assert done.stderr.count("epoch  2/2") == 1  # rank 0 alone reports
    assert done.stdout.count("best_model_stage_1") == 1  # ... and prints the table

    # The same files, by name and keys, as a single process writes.
    single = tmp_path / "single"
    Trainer(load_config(config_path), checkpoint_dir=single, device="cpu").train([1])
    assert files(folder) == files(single) == [
        "best_model_stage_1.json", "best_model_stage_1.safetensors", "metrics.csv",
        "stage_1_baseline.json", "stage_1_baseline.safetensors"]
    assert (folder / "metrics.csv").read_text().count("\n") == 1 + 2  # rank 0's 2 epochs
    sidecar = read_sidecar(folder, "best_model_stage_1")
    written = json.loads((folder / "best_model_stage_1.json").read_text())
    assert set(SIDECAR_KEYS) <= set(written)
    assert written.keys() == json.loads((single / "best_model_stage_1.json").read_text()).keys()
    tensors = load_weights(folder, "best_model_stage_1", sidecar)
    assert tensors.keys() == load_weights(single, "best_model_stage_1",
                                          read_sidecar(single, "best_model_stage_1")).keys()
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())

    # The weights load in one process and score what the two processes measured.
    scored = Trainer(load_config(config_path), checkpoint_dir=folder,
                     device="cpu").evaluate("best_model_stage_1")
    assert scored.loss == pytest.approx(sidecar.val_loss, rel=1e-4)
    assert scored.accuracy == pytest.approx(sidecar.val_accuracy, abs=1.5 / scored.count)


def test_each_process_takes_a_disjoint_equal_share_of_the_epoch() -> None:
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    shares = [shard(order, World(rank=r, size=3)) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]  # the first item again, so all take 4 steps
    together = sorted(torch.cat(shares).tolist())
    assert together == sorted([*order.tolist(), int(order[0])])
    assert torch.equal(shard(order, World()), order)


def test_the_world_comes_from_torchruns_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_environment() == World()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = world_from_environment()
    assert (world.rank, world.size, world.local_rank, world.is_main) == (3, 4, 1, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(SltError, match="inconsistent"):
        world_from_environment()


def test_running_metrics_read_the_device_in_batches() -> None:
    metrics = RunningMetrics(torch.device("cpu"), World())
    metrics.add(torch.tensor([1.0, 3.0]), torch.tensor([True, False]))
    metrics.add(torch.tensor([float("nan"), 0.0]), torch.tensor([True, True]))
    losses, stop = metrics.settle(stop=True)
    assert losses[0] == 2.0 and losses[1] != losses[1] and stop  # NaN names its batch
    assert metrics.settle(stop=False) == ([], False)
    metrics.reset(5.0, 2.0)
    metrics.add(torch.tensor([1.0]), torch.tensor([True]))
    assert metrics.totals() == (6.0, 3.0)


@pytest.mark.slow  # three torchrun runs, about 30 s
def test_a_killed_torchrun_run_resumes_under_torchrun_to_the_same_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY_TOML.replace("batch_size = 32", "batch_size = 8"))
    args = ["train", "--config", str(config_path), "--force", "--device", "cpu"]
    straight = torchrun(*args, "--checkpoint-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    folder = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setenv("SLT_TEST_KILL_AT", "9")  # rank 0, the only writer, dies mid-run
        killed = torchrun(*args, "--checkpoint-dir", str(folder))
    assert killed.returncode != 0 and (folder / "resume").is_dir()
    resumed = torchrun(*args, "--checkpoint-dir", str(folder), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run" in resumed.stderr
    for name in ("best_model_stage_1", "stage_1_baseline", "best_model_stage_2",
                 "stage_2_augmentation"):
        got = load_weights(folder, name, read_sidecar(folder, name))
        want = load_weights(tmp_path / "straight", name,
                            read_sidecar(tmp_path / "straight", name))
        assert all(torch.equal(got[k], want[k]) for k in want), name


def test_smoke_refuses_torchrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from slt_cli.run.smoke import run_smoke

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SltError, match="not under torchrun"):
        run_smoke(1, tmp_path)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_two_torchrun_agents_on_two_nodes_write_what_one_agent_of_two_processes_writes(
        tmp_path: Path) -> None:
    # The multi-node path: two agents (one process each) meet at a c10d rendezvous on
    # 127.0.0.1, as two machines would; gloo between them. Same world, same checkpoints.
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY_TOML.replace("batch_size = 32", "batch_size = 8"))
    args = ["-m", "slt_cli", "train", "--config", str(config_path), "--stages", "1",
            "--device", "cpu", "--checkpoint-dir"]
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
         "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=slt-test",
         f"--node-rank={node}", *args, str(tmp_path / "nodes")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node in (0, 1)]
    outputs = [agent.communicate(timeout=240) for agent in agents]
    assert all(agent.returncode == 0 for agent in agents), outputs[0][1][-3000:]
    one = torchrun("train", "--config", str(config_path), "--stages", "1", "--device", "cpu",
                   "--checkpoint-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    assert files(tmp_path / "nodes") == files(tmp_path / "one")
    for name in ("best_model_stage_1", "stage_1_baseline"):
        got = load_weights(tmp_path / "nodes", name, read_sidecar(tmp_path / "nodes", name))
        want = load_weights(tmp_path / "one", name, read_sidecar(tmp_path / "one", name))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[key], want[key]) for key in want)
