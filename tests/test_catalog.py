"""``slt list`` over the folder's index and its sidecars: the same rows either way, the
sidecars the truth whenever the index is stale or not slt's, and the list options."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from slt_cli.show import console
from slt_cli.store import catalog
from slt_cli.store.archive import archive_existing
from slt_cli.store.catalog import INDEX_FILE
from slt_cli.store.checkpoints import (
    in_run_order,
    read_sidecar,
    save_checkpoint,
    update_sidecar,
)
from slt_cli.store.lock import folder_lock
from slt_cli.store.sidecar import Distillation, Sidecar, Teacher
from tests.cli import slt
from tests.test_checkpoints import SIDECAR

# name -> stage, val_accuracy, val_loss, training_time
FOLDER = {"best_model_stage_1": (1, 0.50, 0.90, 30.0), "best_model_stage_2": (2, 0.80, 0.40, 5.0),
          "stage_2_augmentation": (2, 0.70, 0.60, 50.0), "best_model_stage_3": (3, 0.60, 0.30, 1.0)}


@pytest.fixture(autouse=True)
def _settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index sidecars however recently they changed (the tests need not wait 2 s)."""
    monkeypatch.setattr(catalog, "_SETTLED_NS", 0)


def save(folder: Path, name: str, stage: int = 1, accuracy: float = 0.75, loss: float = 0.5,
         seconds: float = 1.5, **extra: object) -> None:
    record = SIDECAR.replace(**{"stage_idx": stage, "stage_name": f"stage{stage}",
                                "val_accuracy": accuracy, "val_loss": loss,
                                "training_time": seconds, **extra})
    save_checkpoint(folder, name, {"w": torch.zeros(2)}, record)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four checkpoints and a distilled student, saved in this order (one per second of
    created_at is not needed: ties are broken by name)."""
    path = tmp_path / "checkpoints"
    for name, (stage, accuracy, loss, seconds) in FOLDER.items():
        save(path, name, stage, accuracy, loss, seconds,
             parent=None if stage == 1 else "best_model_stage_1")
    save(path, "student", 3, 0.65, 0.35, 2.0, distilled=Distillation(
        (Teacher("best_model_stage_2", read_sidecar(path, "best_model_stage_2").weights_sha256),),
        0.5, 2.0, 100))
    return path


def index_it(path: Path) -> None:
    """What every writing command does as it ends."""
    with folder_lock(path, "test-run"):
        pass


def listed(path: Path, *options: str) -> list[dict]:
    result = slt("list", "--json", "--checkpoint-dir", str(path), *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def expected(path: Path) -> list[dict]:
    """What `slt list --json` showed before the index: each sidecar's listed keys, by the
    full reader, oldest first."""
    keys = ("stage_idx", "stage_name", "val_loss", "val_accuracy", "training_time",
            "stage_time", "epoch", "parent", "created_at", "run_id")
    rows = []
    for name in sorted(p.stem for p in path.glob("*.json")):
        sidecar = read_sidecar(path, name).to_json()
        row = {"name": name, **{key: sidecar[key] for key in keys}}
        if sidecar.get("distilled"):
            row["teachers"] = [t["name"] for t in sidecar["distilled"]["teachers"]]
        rows.append(row)
    return in_run_order(rows, lambda row: (row["run_id"], row["created_at"], row["stage_idx"],
                                           row["name"]))


def sidecar_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the sidecars read (and checked) from now on."""
    reads: list[str] = []
    original = Sidecar.from_json.__func__

    def counted(cls: type, raw: object, name: str = "") -> Sidecar:
        reads.append(name)
        return original(cls, raw, name)

    monkeypatch.setattr(Sidecar, "from_json", classmethod(counted))
    return reads


def test_the_index_gives_the_rows_the_sidecars_give(folder: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before_json, before_table = listed(folder), slt("list", "--checkpoint-dir", str(folder))
    assert before_json == expected(folder)
    assert before_json[-1]["teachers"] == ["best_model_stage_2"]
    assert not (folder / INDEX_FILE).exists()  # a reader writes nothing
    index_it(folder)
    assert (folder / INDEX_FILE).is_file()
    reads = sidecar_reads(monkeypatch)
    assert listed(folder) == before_json
    assert slt("list", "--checkpoint-dir", str(folder)).stdout == before_table.stdout
    assert reads == []  # every row came from the index


def test_a_stale_index_never_hides_or_invents_a_checkpoint(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index_it(folder)
    save(folder, "added", 4, 0.9)  # a sidecar added after the index
    for suffix in (".json", ".safetensors"):  # one removed
        (folder / f"best_model_stage_3{suffix}").unlink()
    edited = folder / "best_model_stage_2.json"  # one edited to the same size and mtime
    status = edited.stat()
    text = edited.read_text()
    assert '"val_accuracy": 0.8,' in text
    edited.write_text(text.replace('"val_accuracy": 0.8,', '"val_accuracy": 0.1,'))
    os.utime(edited, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert edited.stat().st_size == status.st_size
    reads = sidecar_reads(monkeypatch)
    rows = listed(folder)
    assert sorted(reads) == ["added", "best_model_stage_2"]  # only what changed is read
    assert rows == expected(folder)
    assert {row["name"]: row["val_accuracy"] for row in rows}["best_model_stage_2"] == 0.1
    assert "best_model_stage_3" not in [row["name"] for row in rows]


def test_a_sidecar_damaged_after_indexing_is_skipped_with_the_usual_warning(
        folder: Path) -> None:
    index_it(folder)
    path = folder / "best_model_stage_2.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "val_loss": "low"}))
    result = slt("list", "--json", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0
    assert result.stderr.startswith(
        "warning: skipped best_model_stage_2.json: sidecar key 'val_loss': must be a finite "
        "number, got a string")
    assert "best_model_stage_2" not in [row["name"] for row in json.loads(result.stdout)]
    index_it(folder)  # not indexed either: it is named on every listing
    assert "warning: skipped best_model_stage_2.json" in slt(
        "list", "--checkpoint-dir", str(folder)).stderr


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot an index")


def _huge(path: Path) -> None:
    with path.open("wb") as handle:  # sparse: 17 MiB said, nothing stored
        handle.truncate(17 << 20)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _link(path: Path) -> None:  # to a real index of the folder's own, elsewhere
    (path.parent.parent / "elsewhere").write_bytes((path.parent / "saved").read_bytes())
    path.symlink_to(path.parent.parent / "elsewhere")


def _folder(path: Path) -> None:
    path.mkdir()


def _forged_rows(path: Path) -> None:  # identities right, rows wrong in every way
    index = json.loads((path.parent / "saved").read_text())
    bad = [{"val_accuracy": "0.99"}, {"val_loss": None}, {"stage_idx": True},
           {"extra": 1}, {"teachers": "x"}]
    for entry, change in zip(index["entries"].values(), bad, strict=True):
        entry["row"].update(change)
    path.write_text(json.dumps(index))


def _other_version(path: Path) -> None:
    index = json.loads((path.parent / "saved").read_text())
    for entry in index["entries"].values():
        entry["row"]["val_accuracy"] = 0.0
    path.write_text(json.dumps({**index, "slt_version": "0.0.1"}))


@pytest.mark.parametrize("plant", [_garbage, _huge, _fifo, _link, _folder, _forged_rows,
                                   _other_version])
def test_an_index_that_is_not_slts_is_ignored_and_left_alone(folder: Path, plant) -> None:
    index_it(folder)
    (folder / INDEX_FILE).rename(folder / "saved")
    plant(folder / INDEX_FILE)
    before = os.lstat(folder / INDEX_FILE)
    done: list[list[dict]] = []
    reader = threading.Thread(target=lambda: done.append(listed(folder)), daemon=True)
    reader.start()
    reader.join(timeout=30)  # a FIFO read would block for ever
    assert done and done[0] == expected(folder)
    if plant in (_forged_rows, _other_version):
        index_it(folder)  # slt's own index: a writer brings it up to date
        assert json.loads((folder / INDEX_FILE).read_text())["entries"] == json.loads(
            (folder / "saved").read_text())["entries"]
        return
    index_it(folder)  # a writer never replaces a file it cannot prove it wrote
    after = os.lstat(folder / INDEX_FILE)
    assert (after.st_ino, after.st_mode, after.st_size) == (
        before.st_ino, before.st_mode, before.st_size)


def test_a_sidecar_changed_within_two_seconds_is_not_indexed(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_SETTLED_NS", 2_000_000_000)
    index_it(folder)  # all were written just now: none is trusted yet
    assert not (folder / INDEX_FILE).exists()  # nothing to keep: no file made
    assert listed(folder) == expected(folder)


@pytest.mark.parametrize(("key", "order"), [
    ("created", ["best_model_stage_1", "best_model_stage_2", "stage_2_augmentation",
                 "best_model_stage_3", "student"]),  # one run: its stages in order
    ("name", ["best_model_stage_1", "best_model_stage_2", "best_model_stage_3",
              "stage_2_augmentation", "student"]),
    ("val_acc", ["best_model_stage_2", "stage_2_augmentation", "student",
                 "best_model_stage_3", "best_model_stage_1"]),
    ("val_loss", ["best_model_stage_3", "student", "best_model_stage_2",
                  "stage_2_augmentation", "best_model_stage_1"]),
    ("stage", ["best_model_stage_1", "best_model_stage_2", "stage_2_augmentation",
               "best_model_stage_3", "student"]),
    ("time", ["best_model_stage_3", "student", "best_model_stage_2", "best_model_stage_1",
              "stage_2_augmentation"]),
])
def test_sort(folder: Path, key: str, order: list[str]) -> None:
    default = [row["name"] for row in listed(folder)]
    rows = listed(folder, "--sort", key)
    assert default == [row["name"] for row in listed(folder, "--sort", "created")]
    assert [row["name"] for row in rows] == order
    table = slt("list", "--checkpoint-dir", str(folder), "--sort", key).stdout
    assert [line.split("│")[1].strip() for line in table.splitlines()
            if line.startswith("│")] == order


def test_unknown_sort_key_exits_2(folder: Path) -> None:
    result = slt("list", "--checkpoint-dir", str(folder), "--sort", "accuracy")
    assert result.exit_code == 2
    assert "error: unknown sort key 'accuracy'" in result.stderr
    assert "created, name, stage, val_acc, val_loss, time" in result.stderr


def test_stage_and_limit(folder: Path) -> None:
    rows = listed(folder, "--stage", "2", "--sort", "val_acc")
    assert [row["name"] for row in rows] == ["best_model_stage_2", "stage_2_augmentation"]
    result = slt("list", "--checkpoint-dir", str(folder), "--sort", "val_acc", "--limit", "2")
    assert result.exit_code == 0
    assert "best_model_stage_2" in result.stdout and "stage_2_augmentation" in result.stdout
    assert "student" not in result.stdout
    assert "showing 2 of 5 checkpoints (--limit 2); 3 left out" in result.stderr
    limited = slt("list", "--json", "--checkpoint-dir", str(folder), "--limit", "1")
    assert [row["name"] for row in json.loads(limited.stdout)] == ["best_model_stage_1"]
    assert "4 left out" in limited.stderr
    assert slt("list", "--checkpoint-dir", str(folder), "--limit", "9").stderr == ""
    none = slt("list", "--checkpoint-dir", str(folder), "--stage", "7")
    assert none.exit_code == 0 and none.stdout == ""
    assert f"no checkpoints of stage 7 in {folder} (5 of other stages)" in none.stderr
    assert listed(folder, "--stage", "7") == []
    for bad in (["--limit", "0"], ["--stage", "-1"], ["--limit", "x"]):
        assert slt("list", "--checkpoint-dir", str(folder), *bad).exit_code == 2


def test_past_a_screenful_the_same_cells_come_as_plain_columns(tmp_path: Path) -> None:
    path = tmp_path / "many"
    count = console.out.size.height  # one screen: the title, header and borders take 5
    for index in range(count):
        save(path, f"m{index:03d}", index % 5 + 1, parent="m000" if index else None,
             stage_name="<\x1b[31mred>")
    plain = slt("list", "--checkpoint-dir", str(path), "--stage", "1")  # fits: a rich table
    assert "┃ name" in plain.stdout
    shown = slt("list", "--checkpoint-dir", str(path))
    assert shown.exit_code == 0 and "┃" not in shown.stdout and "\x1b" not in shown.stdout
    lines = shown.stdout.splitlines()
    assert lines[0] == f"checkpoints in {path}"
    assert lines[1].split() == ["name", "stage", "val", "loss", "val", "acc", "stage", "time",
                                "parent", "created"]
    assert len(lines) == count + 2
    first, second = lines[2].split(), lines[3].split()
    assert first[:6] == ["m000", "1", "<?[31mred>", "0.5000", "0.7500", "1.5s"]
    assert first[6] == "–" and second[6] == "m000"
    assert lines[2].index("0.5000") + 6 == lines[1].index("val loss") + len("val loss")


def test_runs_list_oldest_first_each_with_its_stages_in_order(tmp_path: Path) -> None:
    """Sorted by the second each was saved in, a fast run's stage 3 best came above its
    stage 2 end weights, and a checkpoint of a second run between the first's."""
    path = tmp_path / "checkpoints"
    saved = {"best_model_stage_1": (1, "r1", "09:00:00"),
             "stage_1_baseline": (1, "r1", "09:00:01"),
             "best_model_stage_2": (2, "r1", "09:00:02"),
             "best_model_stage_3": (3, "r1", "09:00:04"),
             "stage_2_augmentation": (2, "r1", "09:00:04"),
             "stage_3_regularization": (3, "r1", "09:00:05"),
             "best_model_stage_1_fine_tune": (1, "r2", "09:00:03"),
             "ensemble": (0, None, "09:00:06")}
    for name, (stage, run, at) in saved.items():
        save(path, name, stage)
        update_sidecar(path, name, run_id=run, created_at=f"2026-01-01T{at}+00:00")
    order = ["best_model_stage_1", "stage_1_baseline", "best_model_stage_2",
             "stage_2_augmentation", "best_model_stage_3", "stage_3_regularization",
             "best_model_stage_1_fine_tune", "ensemble"]
    assert [row["name"] for row in listed(path)] == order
    index_it(path)  # the same from the index
    assert [row["name"] for row in listed(path)] == order
    table = slt("list", "--checkpoint-dir", str(path)).stdout
    assert [line.split("│")[1].strip() for line in table.splitlines()
            if line.startswith("│")] == order


def test_list_shows_the_stage_time_analyze_shows(tmp_path: Path) -> None:
    """A stage's best records the time to it (training_time) and the stage's
    (stage_time): list showed the first under "time", analyze the second as "stage time"."""
    path = tmp_path / "checkpoints"
    save(path, "best_model_stage_1", 1, seconds=0.2, stage_time=11.1)
    save(path, "stage_1_baseline", 1, seconds=11.1)
    table = slt("list", "--checkpoint-dir", str(path)).stdout
    assert "stage time" in table
    assert [line.split("│")[5].strip() for line in table.splitlines()
            if line.startswith("│")] == ["11.1s", "11.1s"]
    analyzed = slt("analyze", "--checkpoint-dir", str(path), "--table").stdout
    row = next(line for line in analyzed.splitlines() if line.startswith("│ 1"))
    assert row.split("│")[-2].strip() == "11.1s"  # the stage time column


def test_a_student_whose_teacher_was_archived_says_where_it_went(folder: Path) -> None:
    archive_existing(folder, ["best_model_stage_2"], "20260101T000000000000Z")
    # a later run's: another model of that name
    save_checkpoint(folder, "best_model_stage_2", {"w": torch.ones(2)}, SIDECAR)
    update_sidecar(folder, "best_model_stage_2", created_at="2999-01-01T00:00:00+00:00")
    (student,) = [row for row in listed(folder) if row["name"] == "student"]
    where = "archive/20260101T000000000000Z/best_model_stage_2"
    assert student["teachers"] == ["best_model_stage_2"]
    assert student["teachers_moved"] == {"best_model_stage_2": where}
    table = slt("list", "--checkpoint-dir", str(folder)).stdout
    assert "teachers: best_model_stage_2 (now in" in table  # rich may wrap the cell
    assert "archive/20260101T000000000000Z)" in table
    for archived in (folder / "archive").glob("*/*"):
        archived.unlink()  # the archive cleared by hand: the teacher is nowhere
    (student,) = [row for row in listed(folder) if row["name"] == "student"]
    assert student["teachers_moved"] == {"best_model_stage_2": None}
    assert "teachers: best_model_stage_2 (replaced since)" in slt(
        "list", "--checkpoint-dir", str(folder)).stdout
