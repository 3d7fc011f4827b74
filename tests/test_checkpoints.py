from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from slt_cli.cfg.config import DataConfig, RunConfig, StageConfig
from slt_cli.errors import CheckpointError
from slt_cli.run.devices import unwrap
from slt_cli.run.training import cpu_state
from slt_cli.store.archive import archive_existing
from slt_cli.store.checkpoints import (
    check_name,
    free_name,
    list_checkpoints,
    load_weights,
    read_sidecar,
    save_checkpoint,
    settle,
    update_sidecar,
)
from slt_cli.store.sidecar import Sidecar, TrainedWith


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))


SIDECAR = Sidecar(
    stage_idx=1, stage_name="baseline", stage_description="Plain", val_loss=0.5,
    val_accuracy=0.75, training_time=1.5, stage_time=None, epoch=2, classes=("a", "b", "c"),
    joints=None, parent=None, slt_version="test", run_id="r1",
    model={"name": "mlp", "settings": {}, "in_features": 4, "num_classes": 3, "num_frames": 1},
    config=TrainedWith(run=RunConfig(), data=DataConfig(), model={"name": "mlp"},
                       stage=StageConfig(name="baseline")))


def save(folder: Path, name: str, net: nn.Module, **extra: object) -> Sidecar:
    return save_checkpoint(folder, name, cpu_state(unwrap(net)), SIDECAR.replace(**extra))


def edit(folder: Path, name: str, **changes: object) -> None:
    """Change keys of a sidecar on disk, as a person with an editor would."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_round_trip_is_bit_identical_and_sidecar_is_stable_json(tmp_path: Path) -> None:
    model = small_model()
    written = save(tmp_path, "best_model_stage_1", model)
    sidecar = read_sidecar(tmp_path, "best_model_stage_1")
    loaded = load_weights(tmp_path, "best_model_stage_1", sidecar)
    original = model.state_dict()
    assert loaded.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype
    text = (tmp_path / "best_model_stage_1.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == written.to_json()
    assert text == json.dumps(written.to_json(), indent=2, sort_keys=True) + "\n"
    assert sidecar == written and sidecar.name == "best_model_stage_1"
    assert len(written.weights_sha256) == 64 and written.schema_version == 1
    assert written.created_at.endswith("+00:00")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best_model_stage_1.json", "best_model_stage_1.safetensors"]  # no temp files left


def test_data_parallel_weights_are_saved_without_module_prefix(tmp_path: Path) -> None:
    wrapped = nn.DataParallel(small_model())  # on a CPU-only machine it just delegates
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    save(tmp_path, "dp", wrapped)
    loaded = load_weights(tmp_path, "dp", read_sidecar(tmp_path, "dp"))
    assert set(loaded) == set(small_model().state_dict())
    fresh = small_model()
    fresh.load_state_dict(loaded)  # loads into a bare model, strictly


def test_tampered_weights_fail_the_hash_check(tmp_path: Path) -> None:
    save(tmp_path, "m", small_model())
    path = tmp_path / "m.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="do not match the sidecar's SHA-256"):
        load_weights(tmp_path, "m", read_sidecar(tmp_path, "m"))
    path.unlink()
    with pytest.raises(CheckpointError, match="weights file is missing"):
        load_weights(tmp_path, "m", read_sidecar(tmp_path, "m"))


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", ".hidden", "", "x..y"])
def test_names_never_leave_the_folder(name: str) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint name"):
        check_name(name)


def test_a_name_may_carry_its_file_suffix() -> None:
    assert check_name("best_model_stage_5.json") == "best_model_stage_5"


def test_unknown_name_suggests_the_closest(tmp_path: Path) -> None:
    save(tmp_path, "best_model_stage_5", small_model())
    save(tmp_path, "stage_5_polishing", small_model())
    with pytest.raises(CheckpointError) as caught:
        read_sidecar(tmp_path, "best_model_stage5")
    assert "no checkpoint named 'best_model_stage5'" in caught.value.message
    assert caught.value.hint == "Did you mean: best_model_stage_5?"


def test_list_reads_sidecars_and_skips_broken_ones(tmp_path: Path) -> None:
    save(tmp_path, "a", small_model())
    save(tmp_path, "b", small_model(), parent="a")
    (tmp_path / "broken.json").write_text("{not json")
    records, problems = list_checkpoints(tmp_path)
    assert [r.name for r in records] == ["a", "b"]
    assert records[1].parent == "a" and records[0].parent is None
    assert problems == ["broken.json: unreadable sidecar: not valid JSON (Expecting property "
                        "name enclosed in double quotes: line 1 column 2 (char 1))"]
    assert list_checkpoints(tmp_path / "absent") == ([], [])


def test_archive_moves_files_aside_and_free_name_never_overwrites(tmp_path: Path) -> None:
    save(tmp_path, "best_model_stage_1", small_model())
    assert free_name(tmp_path, "best_model_stage_1") == "best_model_stage_1_2"
    moved = archive_existing(tmp_path, ["best_model_stage_1", "best_model_stage_2"], "run1")
    assert moved == ["best_model_stage_1"]
    kept = tmp_path / "archive" / "run1"
    assert sorted(p.name for p in kept.iterdir()) == [
        "best_model_stage_1.json", "best_model_stage_1.safetensors"]
    assert not (tmp_path / "best_model_stage_1.json").exists()
    assert free_name(tmp_path, "best_model_stage_1") == "best_model_stage_1"


RECORDED = SIDECAR.to_json()["config"]


@pytest.mark.parametrize(("change", "message"), [
    ({"val_loss": "low"}, "sidecar key 'val_loss': must be a finite number, got a string"),
    ({"epoch": True}, "sidecar key 'epoch': must be an integer, got a boolean"),
    ({"model": {"name": "mlp"}}, "sidecar key 'model.settings': missing or of the wrong type"),
    ({"model": {**SIDECAR.model, "name": "resnet"}}, "sidecar key 'model.name': unknown model"),
    ({"model": {**SIDECAR.model, "name": "gcn"}},
     "sidecar key 'model.joints': must list the landmarks' names"),
    ({"model": {**SIDECAR.model, "name": "gcn", "joints": ["a", "b", "c"]}},
     "sidecar key 'model.joints': 3 landmarks do not divide in_features (4)"),
    ({"classes": [1, 2]}, "sidecar key 'classes': must be a list of names"),
    ({"colour": "red"}, "sidecar key 'colour': unknown key"),
    ({"config": {**RECORDED, "run": {**RECORDED["run"], "seed": "1"}}},
     "sidecar key 'config.run.seed': must be an integer, got a string"),
    ({"config": {key: value for key, value in RECORDED.items() if key != "data"}},
     "sidecar key 'config.data': must be a table, got NoneType"),
    ({"config": {**RECORDED, "data": {**RECORDED["data"], "extra": 1}}},
     "sidecar key 'config.data.extra': unknown key"),
    ({"config": {**RECORDED, "data": {**RECORDED["data"], "frames": -5}}},
     "sidecar key 'config.data.frames': must be >= 1, or 0"),
    ({"config": {**RECORDED, "stage": [1]}}, "sidecar key 'config.stage': must be a table"),
    ({"config": "all"}, "sidecar key 'config': must be a table, got a string"),
])
def test_edited_sidecars_are_reported_by_key_not_crashed_on(tmp_path: Path, change: dict,
                                                            message: str) -> None:
    save(tmp_path, "m", small_model())
    edit(tmp_path, "m", **change)
    with pytest.raises(CheckpointError) as caught:
        read_sidecar(tmp_path, "m")
    assert message in caught.value.message
    records, problems = list_checkpoints(tmp_path)
    assert records == [] and message in problems[0]


def test_a_sidecar_without_keys_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bare.json").write_text('{"stage_idx": 1}\n')
    with pytest.raises(CheckpointError, match="sidecar lacks classes, config, created_at, "
                                              "epoch, model, slt_version, stage_name,"):
        read_sidecar(tmp_path, "bare")


def test_an_older_sidecar_without_stage_time_still_loads(tmp_path: Path) -> None:
    save(tmp_path, "old", small_model())
    path = tmp_path / "old.json"  # as sidecars written before stage_time was recorded
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                if k not in ("stage_time", "joints")}))
    assert read_sidecar(tmp_path, "old").stage_time is None
    assert list_checkpoints(tmp_path)[1] == []


def test_update_sidecar_changes_keys_and_leaves_the_weights(tmp_path: Path) -> None:
    written = save(tmp_path, "m", small_model(), stage_time=1.5)
    weights = (tmp_path / "m.safetensors").read_bytes()
    update_sidecar(tmp_path, "m", stage_time=42.7)
    sidecar = read_sidecar(tmp_path, "m")
    assert sidecar.stage_time == 42.7
    assert sidecar == written.replace(stage_time=42.7)
    assert (tmp_path / "m.safetensors").read_bytes() == weights
    load_weights(tmp_path, "m", sidecar)  # the hash still holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    with pytest.raises(CheckpointError, match="unreadable sidecar"):
        update_sidecar(tmp_path, "absent", stage_time=1.0)


def test_nan_weights_are_never_saved(tmp_path: Path) -> None:
    model = small_model()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="holds NaN or infinity"):
        save(tmp_path, "m", model)
    assert list(tmp_path.iterdir()) == []


def left_by_a_dead_process(final: str) -> str:
    """The name of a temporary file of slt's scheme whose writer is gone (a pid above
    the kernel's largest)."""
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    return f".{final}.slt-{dead}-0123abcd.tmp"


def test_a_save_killed_between_its_two_renames_reads_whole_and_is_settled(
        tmp_path: Path) -> None:
    save(tmp_path, "m", small_model())
    old = read_sidecar(tmp_path, "m")
    # What a kill between the renames leaves: new weights in place, new sidecar pending.
    other = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    new = save(tmp_path / "next", "m", other)
    (tmp_path / "next" / "m.safetensors").replace(tmp_path / "m.safetensors")
    (tmp_path / "next" / "m.json").replace(tmp_path / left_by_a_dead_process("m.json"))
    (tmp_path / left_by_a_dead_process("m.safetensors")).write_bytes(b"half a file")
    before = sorted(p.name for p in tmp_path.iterdir())
    # A reader sees the finished save, and changes nothing.
    seen = read_sidecar(tmp_path, "m")
    assert seen.weights_sha256 == new.weights_sha256 != old.weights_sha256
    load_weights(tmp_path, "m", seen)
    assert [r.weights_sha256 for r in list_checkpoints(tmp_path)[0]] == [new.weights_sha256]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    settle(tmp_path)  # what the next writing command does, holding the folder
    assert read_sidecar(tmp_path, "m") == seen
    assert not list(tmp_path.glob(".*.tmp"))


def test_settle_drops_a_pending_sidecar_whose_weights_never_landed(tmp_path: Path) -> None:
    written = save(tmp_path, "m", small_model())
    pending = {**written.to_json(), "weights_sha256": "0" * 64}
    (tmp_path / left_by_a_dead_process("m.json")).write_text(json.dumps(pending))
    assert read_sidecar(tmp_path, "m").weights_sha256 == written.weights_sha256
    settle(tmp_path)
    assert read_sidecar(tmp_path, "m").weights_sha256 == written.weights_sha256
    assert not list(tmp_path.glob(".*.tmp"))


def test_settle_touches_only_slts_own_temporary_files_of_gone_processes(
        tmp_path: Path) -> None:
    save(tmp_path, "m", small_model())
    others = [".draft.tmp", ".m.json.x1y2.tmp", ".notes.txt.slt-12-zz.tmp",
              f".m.safetensors.slt-{os.getpid()}-0123abcd.tmp.bak"]
    for name in others:
        (tmp_path / name).write_text("someone else's")
    live = tmp_path / f".m.safetensors.slt-{os.getppid()}-0123abcd.tmp"  # a live process
    live.write_text("a write in progress")
    gone = tmp_path / left_by_a_dead_process("m.safetensors")
    gone.write_text("half a file")
    settle(tmp_path)
    assert all((tmp_path / name).exists() for name in others)
    assert live.exists() and not gone.exists()


def test_read_only_folder_is_a_storage_error(tmp_path: Path) -> None:
    import os

    from slt_cli.errors import StorageError

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(StorageError, match="cannot write") as caught:
            save(folder, "m", small_model())
        assert caught.value.exit_code == 2
    finally:
        folder.chmod(0o700)


def test_a_file_in_place_of_the_folder_is_a_storage_error(tmp_path: Path) -> None:
    from slt_cli.errors import StorageError

    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot write") as caught:
        save(tmp_path / "taken", "m", small_model())
    assert caught.value.exit_code == 2


def test_readers_never_change_the_folder(tmp_path: Path) -> None:
    save(tmp_path, "m", small_model())
    leftover = tmp_path / left_by_a_dead_process("m.safetensors")
    leftover.write_bytes(b"what a killed run left")
    (tmp_path / ".draft.tmp").write_text("another program's")
    read_sidecar(tmp_path, "m")
    list_checkpoints(tmp_path)
    assert leftover.exists() and (tmp_path / ".draft.tmp").exists()


@pytest.mark.parametrize(("code", "status", "words"), [
    (errno.ENOSPC, 1, "Free some space"), (errno.EIO, 1, "Free some space"),
    (errno.EACCES, 2, "Choose a place you can write to"),
    (errno.EROFS, 2, "Choose a place you can write to"),
    (errno.ENOTDIR, 2, "Choose a place you can write to"),
])
def test_a_failed_write_is_the_machines_fault_only_when_the_disk_is(code: int, status: int,
                                                                     words: str) -> None:
    from slt_cli.errors import StorageError

    error = StorageError.writing(Path("out/x"), OSError(code, os.strerror(code)),
                                 elsewhere="with --checkpoint-dir")
    assert error.exit_code == status
    assert error.message == f"cannot write out/x: {os.strerror(code)}"
    assert words in error.hint and error.hint.endswith("with --checkpoint-dir.")
