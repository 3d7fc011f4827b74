"""Checks that need a CUDA device; run with `pytest -m gpu` on a GPU machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from slt_cli import Trainer, load_config
from slt_cli.store.checkpoints import load_weights, read_sidecar

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_data_parallel_training_saves_bare_weights_that_load_on_cpu(
        tiny_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(tiny_toml)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, multi_gpu=True))
    # DataParallel's scatter/gather path, even on a one-GPU machine
    monkeypatch.setattr("slt_cli.run.engine.device_count", lambda device, multi_gpu: 2)
    trainer = Trainer(config, checkpoint_dir=tmp_path, device="cuda")
    result = trainer.train(force=True)
    assert len(result.stages) == 2
    sidecar = read_sidecar(tmp_path, "best_model_stage_2")
    tensors = load_weights(tmp_path, "best_model_stage_2", sidecar)
    assert not any(key.startswith("module.") for key in tensors)
    assert all(t.device.type == "cpu" for t in tensors.values())
    on_cpu = Trainer(config, checkpoint_dir=tmp_path, device="cpu")
    scored = on_cpu.evaluate("best_model_stage_2", split="val")
    assert scored.accuracy == pytest.approx(sidecar.val_accuracy, abs=0.02)


def test_auto_device_picks_the_gpu(tiny_toml: Path, tmp_path: Path) -> None:
    trainer = Trainer(load_config(tiny_toml), checkpoint_dir=tmp_path)
    assert trainer.device.type == "cuda"


def test_a_gpu_run_stops_and_resumes(tiny_toml: Path, tmp_path: Path) -> None:
    from slt_cli.common.reporting import Reporter
    from slt_cli.errors import RunInterrupted

    config = load_config(tiny_toml)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, batch_size=8))

    class StopAtThirdBatch(Reporter):
        seen = 0

        def batch_done(self, **_: object) -> None:
            self.seen += 1
            if self.seen == 3:
                trainer.request_stop()

    trainer = Trainer(config, checkpoint_dir=tmp_path, device="cuda", reporter=StopAtThirdBatch())
    with pytest.raises(RunInterrupted):
        trainer.train(force=True)
    resumed = Trainer(config, checkpoint_dir=tmp_path, device="cuda").resume()
    straight = Trainer(config, checkpoint_dir=tmp_path / "straight", device="cuda").train(
        force=True)
    for mine, theirs in zip(resumed.stages, straight.stages, strict=True):
        # cuDNN/cuBLAS sums are not ordered alike run to run: close, not bit-identical.
        assert mine.val_loss == pytest.approx(theirs.val_loss, abs=0.05)


def test_bf16_autocast_is_the_cuda_default_and_checkpoints_stay_fp32(tiny_toml: Path,
                                                                      tmp_path: Path) -> None:
    from slt_cli.common.reporting import RecordingReporter

    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    reporter = RecordingReporter()
    Trainer(load_config(tiny_toml), checkpoint_dir=tmp_path, device="cuda",
            reporter=reporter).train([1])
    assert "bf16" in reporter.named("run_started")[0]["device"]
    sidecar = read_sidecar(tmp_path, "best_model_stage_1")
    tensors = load_weights(tmp_path, "best_model_stage_1", sidecar)
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())
    scored = Trainer(load_config(tiny_toml), checkpoint_dir=tmp_path, device="cuda").evaluate(
        "best_model_stage_1")
    assert scored.accuracy == pytest.approx(sidecar.val_accuracy, abs=1e-6)


def test_compiled_training_saves_unprefixed_weights(tiny_toml: Path, tmp_path: Path) -> None:
    config = load_config(tiny_toml)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, compile=True))
    Trainer(config, checkpoint_dir=tmp_path, device="cuda").train([1])
    tensors = load_weights(tmp_path, "stage_1_baseline",
                           read_sidecar(tmp_path, "stage_1_baseline"))
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in tensors)
