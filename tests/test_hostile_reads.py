"""Hostile reads and values (issue 13): what slt reads is bounded and checked before
it is used, and every bad value is an exit 2 with one ``error:`` line, never a hang,
a MemoryError or an exit 1 "This is a bug".

Reads: FIFOs, devices, folders, oversized, binary or deeply nested files; ``.npz``
headers that declare more than they hold; values: every numeric setting's range."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from slt_cli.common.files import READ_LIMITS, load_json, read_bounded
from slt_cli.errors import UnreadableFile
from tests.cli import slt
from tests.conftest import TINY_TOML


def assert_clean_error(result, message: str, status: int = 2) -> None:
    """Exit ``status``, the message on stderr, one ``error:`` line, no traceback."""
    assert result.exit_code == status, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert "This is a bug" not in result.output


@pytest.fixture
def folder(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint folder (best_model_stage_1), free to spoil."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ck"))


def snapshot(where: Path) -> dict[str, bytes]:
    return {str(p.relative_to(where)): p.read_bytes() for p in sorted(where.rglob("*"))
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".")}


# --- 1. bounded reads -----------------------------------------------------------------

SPOILERS: dict[str, Callable[[Path], None]] = {
    "fifo": lambda path: os.mkfifo(path),
    "dev-zero": lambda path: path.symlink_to("/dev/zero"),
    "folder": lambda path: path.mkdir(),
}


@pytest.mark.parametrize("kind", SPOILERS)
def test_list_skips_a_sidecar_that_is_no_regular_file(folder: Path, kind: str) -> None:
    SPOILERS[kind](folder / "x.json")
    before = snapshot(folder)
    result = slt("list", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "best_model_stage_1" in result.stdout  # the good checkpoint is still listed
    assert "warning: skipped x.json: unreadable sidecar: a " in result.stderr
    assert "not a regular file" in result.stderr
    assert snapshot(folder) == before


def test_a_fifo_as_the_lock_file_does_not_hang_list(folder: Path) -> None:
    (folder / ".slt.lock").unlink(missing_ok=True)  # the one training left
    os.mkfifo(folder / ".slt.lock")
    result = slt("list", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0 and "best_model_stage_1" in result.stdout


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_weights_that_are_no_regular_file_are_refused(folder: Path, kind: str) -> None:
    weights = folder / "best_model_stage_1.safetensors"
    weights.unlink()
    SPOILERS[kind](weights)
    result = slt("evaluate", "best_model_stage_1", "--checkpoint-dir", str(folder))
    assert_clean_error(result, "best_model_stage_1.safetensors: a ")


@pytest.mark.parametrize("key", ["a." * 60_000 + "b = 1", '"a".' * 40_000 + "b = 1",
                                 "x = {" + "a." * 60_000 + "b = 1}"])
def test_a_dotted_key_of_thousands_of_parts_is_refused_before_parsing(tmp_path: Path,
                                                                      key: str) -> None:
    """The TOML parser is quadratic in a dotted key's parts: 60,000 took 8 GB."""
    config = tmp_path / "deep.toml"
    config.write_text(f"[run]\n{key}\n", encoding="utf-8")
    assert_clean_error(slt("config", "show", "--config", str(config)),
                       f"{config}: not valid TOML: line 2 has a key of more than 64 dotted "
                       "parts")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_config_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    SPOILERS[kind](tmp_path / "c.toml")
    result = slt("train", "--config", str(tmp_path / "c.toml"), "--checkpoint-dir", "other")
    assert_clean_error(result, "c.toml: cannot read config (a ")
    assert not Path("other").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_local_stages_toml_that_is_no_file_stops_train_but_not_list(folder: Path,
                                                                     kind: str) -> None:
    SPOILERS[kind](Path.cwd() / "stages.toml")
    assert_clean_error(slt("train", "--checkpoint-dir", "other"), "stages.toml: cannot read")
    listed = slt("list", "--checkpoint-dir", str(folder))
    assert listed.exit_code == 0 and "best_model_stage_1" in listed.stdout


def test_read_bounded_reads_at_most_the_limit(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(READ_LIMITS, "json", 10)
    (tmp_path / "ok.json").write_text("[1, 2, 3]")
    (tmp_path / "big.json").write_text("[" + "1," * 10 + "1]")
    assert load_json(tmp_path / "ok.json") == [1, 2, 3]
    with pytest.raises(UnreadableFile, match="larger than 0 MiB, the limit for a JSON file"):
        read_bounded(tmp_path / "big.json", "json")


def test_an_oversized_sidecar_is_skipped_by_list(folder: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "huge.json").write_text(" " * (READ_LIMITS["json"] + 1) + "{}")
    result = slt("list", "--checkpoint-dir", str(folder))
    assert result.exit_code == 0 and "best_model_stage_1" in result.stdout
    assert "huge.json: unreadable sidecar: larger than 16 MiB" in result.stderr


# --- 4. text and nesting ----------------------------------------------------------------

BINARY = bytes(range(256)) * 4


def test_a_binary_config_is_an_error_for_train_and_ignored_by_list(folder: Path) -> None:
    Path("bin.toml").write_bytes(BINARY)
    assert_clean_error(slt("train", "--config", "bin.toml"),
                       "bin.toml: cannot read config (not UTF-8 text (byte 0x80 at offset 128))")
    Path("stages.toml").write_bytes(BINARY)
    assert_clean_error(slt("train"), "stages.toml: cannot read config (not UTF-8 text")
    listed = slt("list", "--checkpoint-dir", str(folder))
    assert listed.exit_code == 0 and "best_model_stage_1" in listed.stdout


@pytest.mark.parametrize("nesting", ["a = " + "[" * 100_000 + "]" * 100_000,
                                     "a = " + "{b = " * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_toml_is_an_error(nesting: str) -> None:
    Path("deep.toml").write_text(nesting)
    assert_clean_error(slt("train", "--config", "deep.toml"),
                       "deep.toml: not valid TOML: nested too deeply")


def test_deeply_nested_json_sidecar_is_skipped_by_list_and_refused_by_evaluate(
        folder: Path) -> None:
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    listed = slt("list", "--checkpoint-dir", str(folder))
    assert listed.exit_code == 0 and "best_model_stage_1" in listed.stdout
    assert "deep.json: unreadable sidecar: not valid JSON (nested too deeply)" in listed.stderr
    assert_clean_error(slt("evaluate", "deep", "--checkpoint-dir", str(folder)),
                       "unreadable sidecar: not valid JSON (nested too deeply)")


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "1e999"])
def test_json_without_finite_numbers_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(UnreadableFile, match="not valid JSON"):
        load_json(tmp_path / "x.json")


def test_a_resume_state_that_is_a_fifo_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ck" / "resume").mkdir(parents=True)
    os.mkfifo(tmp_path / "ck" / "resume" / "state.json")
    result = slt("train", "--resume", "--checkpoint-dir", str(tmp_path / "ck"))
    assert result.exit_code == 2 and "Traceback" not in result.output


def gislr_folder(root: Path, listing: bytes) -> Path:
    root.mkdir()
    (root / "sign_to_prediction_index_map.json").write_text('{"hello": 0}')
    (root / "train.csv").write_bytes(listing)
    return root


def test_a_listing_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    root = gislr_folder(tmp_path / "g", b"path,participant_id,sequence_id,sign\n"
                                        b"a.parquet,1,1,h\xe9llo\n")
    result = slt("data", "inspect", f"gislr:{root}")
    assert_clean_error(result, "train.csv: not UTF-8 text (byte 0xe9 at offset")


def test_a_corpus_file_that_is_a_fifo_is_refused_before_reading(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from tests.corpora import write_gislr

    root = tmp_path / "g"
    write_gislr(root)
    victim = sorted(root.rglob("*.parquet"))[0]
    victim.unlink()
    os.mkfifo(victim)
    assert_clean_error(slt("data", "inspect", f"gislr:{root}"),
                       f"{victim.name}: not a regular file (listed in")


def test_a_pose_listing_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    pytest.importorskip("pose_format")
    root = tmp_path / "p"
    root.mkdir()
    (root / "labels.csv").write_bytes(b"file,label\nx.pose,h\xe9llo\n")
    assert_clean_error(slt("data", "inspect", f"pose:{root}"),
                       "labels.csv: not UTF-8 text (byte 0xe9 at offset")


def test_a_checkpoint_name_past_the_limit_is_refused(folder: Path) -> None:
    assert_clean_error(slt("evaluate", "a" * 300, "--checkpoint-dir", str(folder)),
                       "is 300 characters long; the limit is 180")


def test_a_stage_name_too_long_for_a_file_name_is_refused() -> None:
    Path("long.toml").write_text(TINY_TOML.replace('name = "baseline"', f'name = "{"b" * 250}"'))
    assert_clean_error(slt("train", "--config", "long.toml", "--checkpoint-dir", "other"),
                       "long.toml: stages[0].name: must be at most 64 characters long")


# --- 2. npz headers and arrays -------------------------------------------------------------


def lying_npz(path: Path, shape: tuple[int, ...] = (40, 10**7, 5, 2)) -> Path:
    """A tiny .npz whose ``x`` header declares ``shape`` (float32) but holds no data."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = shape
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", buffer.getvalue())
    return path


DECLARED = ("'x' declares shape (40, 10000000, 5, 2) of float32 (16000000000 bytes) but "
            "holds 0 bytes")


def test_a_lying_npz_header_is_refused_before_allocating(folder: Path, tiny_toml: Path) -> None:
    path = lying_npz(Path("lie.npz"))
    assert path.stat().st_size < 400
    assert_clean_error(slt("train", "--config", str(tiny_toml), "--data", "lie.npz",
                           "--checkpoint-dir", "other"), DECLARED)
    assert_clean_error(slt("data", "inspect", "lie.npz"), DECLARED)
    assert_clean_error(slt("predict", "best_model_stage_1", "lie.npz", "--checkpoint-dir",
                           str(folder)), DECLARED)


def train_npz(name: str, **change: object) -> list[str]:
    """A small valid training .npz with ``change`` applied; the train command on it."""
    rng = np.random.default_rng(0)
    arrays: dict[str, object] = {"x": rng.normal(size=(40, 10, 3, 2)).astype(np.float32),
                                 "y": np.arange(40) % 4,
                                 "split": np.array((["train"] * 4 + ["val"]) * 8)}
    arrays.update(change)
    np.savez(name, **arrays)
    Path("tiny.toml").write_text(TINY_TOML)
    return ["train", "--config", "tiny.toml", "--data", name, "--checkpoint-dir", "other"]


def test_labels_beyond_any_vocabulary_are_refused() -> None:
    y = np.arange(40) % 4
    y[5] = 10**9
    assert_clean_error(slt(*train_npz("y.npz", y=y)),
                       "'y' holds class 1000000000; slt takes at most 100000 classes")


def test_lengths_of_strings_are_refused() -> None:
    assert_clean_error(slt(*train_npz("l.npz", lengths=np.array(["7"] * 40))),
                       "'lengths' must be (40,) integers in 1..10")


def test_a_member_that_is_no_npy_array_is_refused() -> None:
    with zipfile.ZipFile("odd.npz", "w") as archive:
        archive.writestr("x", b"not an array")
    Path("tiny.toml").write_text(TINY_TOML)
    assert_clean_error(slt("train", "--config", "tiny.toml", "--data", "odd.npz"),
                       "holds 'x', which is not an .npy array")


# --- 5. coordinates and empty sequences -------------------------------------------------


def test_huge_coordinates_are_bad_data_with_their_place() -> None:
    x = np.random.default_rng(0).normal(size=(40, 10, 3, 2)).astype(np.float32)
    x[3, 4, 2, 1] = 1e30
    assert_clean_error(slt(*train_npz("far.npz", x=x)),
                       "'x' holds 1e+30 at sequence 3, frame 4, landmark 2, channel 1; "
                       "coordinates beyond ±1e+06 are not keypoints")
    assert not Path("other").exists()


def test_predict_refuses_huge_coordinates_and_leaves_empty_sequences_unclassified(
        folder: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 12, 53, 3)).astype(np.float32)
    x[1] = np.nan
    np.savez("clips.npz", x=x, y=np.array([0, 1, 2]))
    result = slt("predict", "best_model_stage_1", "clips.npz", "--json",
                 "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [bool(row["top"]) for row in rows] == [True, False, True]
    assert ("clips.npz: 1 sequence(s) hold no landmark at all (all NaN or zero) and are not "
            "classified, the first at index 1") in result.stderr
    table = slt("predict", "best_model_stage_1", "clips.npz", "--checkpoint-dir", str(folder))
    assert table.exit_code == 0 and "no landmark at all" in table.stdout
    x[2, 0, 5, 0] = -3e7
    np.savez("far.npz", x=x)
    assert_clean_error(slt("predict", "best_model_stage_1", "far.npz", "--checkpoint-dir",
                           str(folder)), "'x' holds -3e+07 at sequence 2, frame 0, landmark 5")


# --- 3. ranges -------------------------------------------------------------------------------

RANGE_CASES = [
    ("lr = 3e-3", "lr = inf", "stages[0].lr: must be a finite number, got inf"),
    ("lr = 3e-3", "lr = 3e-3\ngrad_clip = nan", "stages[0].grad_clip: must be a finite number"),
    ("jitter = 0.01", "jitter = 0.01\nshift = nan",
     "stages[1].augment.shift: must be a finite number, got nan"),
    ("seed = 0", "seed = 0\nimprovement_threshold = nan",
     "run.improvement_threshold: must be a finite number, got nan"),
    ("batch_size = 32", "batch_size = 1000000000",
     "run.batch_size: must be <= 65536, got 1000000000"),
    ("min_batches_per_epoch = 1", "min_batches_per_epoch = 1000000000",
     "run.min_batches_per_epoch: must be <= 1000000, got 1000000000"),
    ("dim = 16", "dim = 1000000000",
     "model.dim: must be an integer between 1 and 4096, got 1000000000"),
    ("frames = 12", "frames = 1000000000", "data.frames: must be <= 10000, got 1000000000"),
    ("epochs = 2\nlr = 3e-3", "epochs = 1000000000\nlr = 3e-3",
     "stages[0].epochs: must be <= 100000, got 1000000000"),
    ("seed = 0", "seed = -1", "run.seed: must be between 0 and 4294967295, got -1"),
]


@pytest.mark.parametrize(("old", "new", "message"), RANGE_CASES,
                         ids=[case[1].split("\n")[-1] for case in RANGE_CASES])
def test_a_value_out_of_range_is_named_at_load(old: str, new: str, message: str) -> None:
    Path("bad.toml").write_text(TINY_TOML.replace(old, new, 1))
    result = slt("train", "--config", "bad.toml", "--checkpoint-dir", "other")
    assert result.exit_code == 2, result.output
    assert f"error: bad.toml: {message}" in result.stderr
    assert "Traceback" not in result.output and not Path("other").exists()


def test_every_problem_is_reported_at_once() -> None:
    text = (TINY_TOML.replace("lr = 3e-3", "lr = inf").replace("batch_size = 32", "batch_size = 0")
            .replace("frames = 12", "frames = 99999"))
    Path("bad.toml").write_text(text)
    result = slt("train", "--config", "bad.toml")
    assert result.exit_code == 2
    for key in ("run.batch_size: must be > 0", "data.frames: must be <= 10000",
                "stages[0].lr: must be a finite number"):
        assert key in result.stderr


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_a_seed_flag_out_of_range_is_an_error(tiny_toml: Path, seed: str) -> None:
    result = slt("train", "--config", str(tiny_toml), "--seed", seed, "--checkpoint-dir", "o")
    assert_clean_error(result, f"seed: must be between 0 and 4294967295, got {seed}")


@pytest.mark.parametrize(("table", "key", "value", "message"), [
    ("data", "frames", -5, "config.data.frames: must be >= 1"),
    ("data", "frames", 10**9, "config.data.frames: must be <= 10000, got 1000000000"),
    ("run", "seed", "zero", "config.run.seed: must be an integer, got a string"),
    ("run", "seed", -1, "config.run.seed: must be between 0 and 4294967295, got -1"),
])
@pytest.mark.parametrize("command", ["evaluate", "continue"])
def test_a_sidecar_setting_out_of_range_is_named_with_its_file(
        folder: Path, table: str, key: str, value: object, message: str, command: str) -> None:
    path = folder / "best_model_stage_1.json"
    record = json.loads(path.read_text())
    record["config"][table][key] = value
    path.write_text(json.dumps(record))
    before = snapshot(folder)
    extra = ["--type", "fine_tune"] if command == "continue" else []
    result = slt(command, "best_model_stage_1", *extra, "--checkpoint-dir", str(folder))
    assert result.exit_code == 2, result.output
    key, _, problem = message.partition(": ")
    assert f"best_model_stage_1.json: sidecar key '{key}': {problem}" in result.stderr
    assert "Traceback" not in result.output and snapshot(folder) == before


def test_an_npz_that_unpacks_past_the_machines_memory_is_refused_before_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 32 MiB of zeros packs into a few dozen KiB: on a machine of 16 MiB it is a zip bomb.
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((64, 32, 64, 64), np.float32),
                        y=np.zeros(64, np.int64))
    assert bomb.stat().st_size < 1 << 20
    monkeypatch.setattr("slt_cli.data.npzfile.memory_bytes", lambda: 16 << 20)
    result = slt("data", "inspect", str(bomb))
    assert result.exit_code == 2, result.output
    assert f"error: {bomb}: its arrays unpack to 32 MiB" in result.stderr
    assert "more than this machine's 16 MiB of memory" in result.stderr


@pytest.mark.parametrize(("member", "kind"), [("manifest.json", "fifo"),
                                              ("manifest.json", "dev-zero"),
                                              ("index.npz", "fifo"), ("frames.f16", "fifo")])
def test_a_cache_file_that_is_no_regular_file_is_rebuilt_not_hung_on(
        tmp_path: Path, member: str, kind: str) -> None:
    """A corpus cache whose manifest, index or frames are a FIFO or /dev/zero: the store
    is stale and converted again (before, a FIFO hung the read and /dev/zero filled the
    memory). A fresh interpreter, with a timeout, so that a hang fails the test."""
    import subprocess
    import sys

    from tests.corpora import write_mediapipe

    root = tmp_path / "mp"
    write_mediapipe(root)
    assert slt("data", "inspect", f"mediapipe:{root}").exit_code == 0
    from slt_cli.data.cache import cache_root

    (store,) = cache_root(root).iterdir()
    (store / member).unlink()
    SPOILERS[kind](store / member)
    done = subprocess.run([sys.executable, "-m", "slt_cli", "data", "inspect", "--json",
                           f"mediapipe:{root}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sequences"] == 6


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc")
def test_weights_are_hashed_without_holding_them(folder: Path) -> None:
    """Weights replaced by a 512 MiB sparse file: refused by their hash, read block by
    block (before, read whole: an 8 GB one was a MemoryError). Half a gigabyte is enough
    to tell the two apart (the command alone peaks near 250 MiB) and hashes in half the
    time a gigabyte takes. The command runs in a fresh interpreter that reports its own
    peak memory as it exits."""
    import subprocess
    import sys

    weights = folder / "best_model_stage_1.safetensors"
    weights.unlink()
    with open(weights, "wb") as handle:
        handle.truncate(512 << 20)
    # VmHWM: the peak of this process's own memory (getrusage's ru_maxrss would carry
    # over the forking parent's, the whole test session's, across the exec)
    measured = ("import atexit, runpy, sys\n"
                "def peak():\n"
                "    with open('/proc/self/status') as status:\n"
                "        line = next(x for x in status if x.startswith('VmHWM:'))\n"
                "    print('peak', line.split()[1], file=sys.stderr)\n"
                "atexit.register(peak)\n"
                "sys.argv = ['slt', *sys.argv[1:]]\n"
                "runpy.run_module('slt_cli', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", measured, "evaluate", "best_model_stage_1",
                           "--checkpoint-dir", str(folder)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {weights}: weights do not match the sidecar's "
                                  "SHA-256"), done.stderr
    peak_kib = int(done.stderr.rsplit("peak ", 1)[1])
    assert peak_kib < 600 * 1024, peak_kib  # torch and the data, not the 512 MiB
