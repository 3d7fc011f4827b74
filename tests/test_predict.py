"""``slt predict`` and the raw-landmark path of ``inference``: the torch preprocessing
equals the trainer's numpy one, predictions equal ``evaluate``'s, every input format
reads the landmarks training read, and bad input exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_cli.data import load_data, load_source
from slt_cli.data import preprocess as numpy_path
from slt_cli.data.inputs import read_sequences
from slt_cli.run.training import TensorSplit, predict_logits
from slt_cli.store.checkpoints import read_sidecar
from slt_cli.use.inference import load_model, normalise, resample
from tests.cli import slt

MODEL = "best_model_stage_1"


def raw_split(folder: Path, split: str):
    """The raw sequences of one split of the checkpoint's data, and that data prepared."""
    sidecar = read_sidecar(folder, MODEL)
    data, seed = sidecar.config.data, sidecar.config.run.seed
    raw = load_source(data.source)
    labels = numpy_path.assign_splits(raw, data.val_fraction, seed)
    prepared = load_data(data.source, frames=data.frames, motion=data.motion,
                         val_fraction=data.val_fraction, seed=seed,
                         normalise_mode=data.normalise, coordinates=data.coordinates)
    rows = labels == split
    return raw.x[rows], raw.lengths[rows], raw.y[rows], prepared


def test_torch_preprocessing_equals_the_numpy_one_on_hard_sequences() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.2, size=(6, 25, 7, 3)).astype(np.float32)
    x[rng.random((6, 25, 7)) < 0.3] = np.nan  # missing landmarks
    x[1, 3] = np.nan  # a whole missing frame
    x[2, :, :, :] = np.nan  # nothing detected at all
    x[3, :, 0] = 5.0  # one landmark fixed, others missing: tiny spread
    x[3, :, 1:] = np.nan
    lengths = np.array([25, 1, 10, 13, 7, 2])
    x[4, 7:] = np.nan  # padding
    for frames in (12, 7, 32):
        expected = numpy_path.resample(numpy_path.normalise(x), lengths, frames)
        grid = torch.from_numpy(np.linspace(0.0, 1.0, frames))
        got = resample(normalise(torch.from_numpy(x)),
                       torch.from_numpy(lengths - 1).double(), grid).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)


def test_raw_path_logits_equal_the_trainers(tiny_checkpoint: Path) -> None:
    x, lengths, _, prepared = raw_split(tiny_checkpoint, "val")
    model = load_model(tiny_checkpoint, MODEL)
    with torch.no_grad():
        raw_logits = model.classifier(torch.from_numpy(x), torch.from_numpy(lengths))
    trainer_logits = predict_logits(model.classifier.network,
                                    TensorSplit.from_split(prepared.split("val"), "cpu"),
                                    prepared.motion, batch_size=7)
    assert raw_logits.shape == (len(x), 4)
    assert (raw_logits - trainer_logits).abs().max().item() < 1e-5


def test_predict_npz_agrees_with_evaluate(tiny_checkpoint: Path, tmp_path: Path) -> None:
    x, lengths, y, prepared = raw_split(tiny_checkpoint, "val")
    np.savez(tmp_path / "val.npz", x=x, y=y, classes=np.array(prepared.classes))
    np.savez(tmp_path / "unlabelled.npz", x=x[:2], lengths=lengths[:2])
    result = slt("predict", MODEL, str(tmp_path / "val.npz"), str(tmp_path / "unlabelled.npz"),
                 "--checkpoint-dir", str(tiny_checkpoint), "--top-k", "3")
    assert result.exit_code == 0, result.output
    evaluation = slt("evaluate", MODEL, "--split", "val", "--json",
                     "--checkpoint-dir", str(tiny_checkpoint))
    accuracy = json.loads(evaluation.stdout)["accuracy"]
    assert f"top-1 accuracy {accuracy:.4f} on {len(y)} labelled sequence(s)" in result.stderr
    assert "predictions of best_model_stage_1" in result.stdout
    assert "true label" in result.stdout and "unlabelled.npz" in result.stdout
    assert result.stdout.count("✓") == round(accuracy * len(y))


def test_predict_json_and_top_k(tiny_checkpoint: Path, tmp_path: Path) -> None:
    x, _, _, _ = raw_split(tiny_checkpoint, "test")
    np.savez(tmp_path / "clips.npz", x=x[:3])
    args = ["predict", MODEL, str(tmp_path / "clips.npz"), "--checkpoint-dir",
            str(tiny_checkpoint), "--json"]
    two = json.loads(slt(*args, "--top-k", "2").stdout)
    assert [row["index"] for row in two] == [0, 1, 2]
    assert all(row["input"].endswith("clips.npz") and row["label"] is None for row in two)
    assert all(len(row["top"]) == 2 for row in two)
    every = json.loads(slt(*args, "--top-k", "10").stdout)  # 4 classes: all of them
    for short, full in zip(two, every, strict=True):
        probabilities = [t["probability"] for t in full["top"]]
        assert len(probabilities) == 4 and abs(sum(probabilities) - 1) < 1e-5
        assert probabilities == sorted(probabilities, reverse=True)
        assert short["top"] == full["top"][:2]
        assert {t["class"] for t in full["top"]} == {f"sign_{k:03d}" for k in range(4)}


@pytest.fixture(scope="module")
def holistic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained on a tiny GISLR corpus (96 Holistic landmarks x 3)."""
    pytest.importorskip("pyarrow")
    from tests.conftest import TINY_TOML
    from tests.corpora import write_gislr

    root = tmp_path_factory.mktemp("holistic")
    corpus = write_gislr(root / "asl", signers=3, signs=3, repeats=1)
    (root / "tiny.toml").write_text(TINY_TOML, encoding="utf-8")
    result = slt("train", "--config", str(root / "tiny.toml"), "--data", f"gislr:{corpus}",
                 "--stages", "1", "--epochs-per-stage", "1", "--checkpoint-dir",
                 str(root / "checkpoints"))
    assert result.exit_code == 0, result.output
    return root / "checkpoints"


def test_one_sign_as_parquet_and_as_pose_gets_one_prediction(holistic_checkpoint: Path,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("pose_format")
    import pyarrow.parquet as pq

    from slt_cli.data.landmarks import select_landmarks
    from tests.corpora import gislr_table, holistic_frames, write_pose_file

    points = holistic_frames(1, 17, np.random.default_rng(5))  # GISLR order
    pq.write_table(gislr_table(points), tmp_path / "sign.parquet")
    # pose-format's Holistic order: pose, face, left hand, right hand, world pose
    write_pose_file(tmp_path / "sign.pose", np.concatenate(
        [points[:, 489:522], points[:, :468], points[:, 468:489], points[:, 522:],
         points[:, 489:522]], axis=1))
    parquet = read_sequences(tmp_path / "sign.parquet", landmarks="hands+pose+lips", classes=())
    pose = read_sequences(tmp_path / "sign.pose", landmarks="hands+pose+lips", classes=())
    assert parquet.x.shape == pose.x.shape == (1, 17, 96, 3)
    np.testing.assert_array_equal(parquet.x, pose.x)
    # The landmarks are the ones training kept, in its order: the right hand's wrist is
    # joint 21 (left hand first), pose_left_shoulder is joint 42 (pose row 11).
    names = [landmark.name for landmark in select_landmarks("hands+pose+lips")]
    assert names[21] == "right_hand_0" and names[42] == "pose_left_shoulder"
    np.testing.assert_allclose(parquet.x[0, :, 21], points[:, 522], rtol=1e-6)
    np.testing.assert_allclose(parquet.x[0, :, 42], points[:, 468 + 21 + 11], rtol=1e-6)

    outputs = []
    for name in ("sign.parquet", "sign.pose"):
        result = slt("predict", MODEL, str(tmp_path / name), "--json", "--checkpoint-dir",
                     str(holistic_checkpoint))
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)
        outputs.append(row["top"])
    assert outputs[0] == outputs[1]
    assert {t["class"] for t in outputs[0]} == {"sign0", "sign1", "sign2"}


def _write(tmp_path: Path, kind: str) -> Path:
    x = np.random.default_rng(0).normal(size=(2, 9, 53, 3)).astype(np.float32)
    if kind == "garbage.npz":
        (tmp_path / kind).write_bytes(b"this is not a zip file")
    elif kind == "no_x.npz":
        np.savez(tmp_path / kind, y=np.zeros(2, np.int64))
    elif kind == "flat.npz":
        np.savez(tmp_path / kind, x=x[:, :, 0])
    elif kind == "ten_landmarks.npz":
        np.savez(tmp_path / kind, x=x[:, :, :10])
    elif kind == "bad_lengths.npz":
        np.savez(tmp_path / kind, x=x, lengths=np.array([3, 12]))
    elif kind == "garbage.parquet":
        (tmp_path / kind).write_bytes(b"PAR1 nothing")
    elif kind == "holistic.parquet":
        import pyarrow.parquet as pq

        from tests.corpora import gislr_table, holistic_frames

        pq.write_table(gislr_table(holistic_frames(0, 5, np.random.default_rng(0))),
                       tmp_path / kind)
    elif kind != "missing.npz":
        (tmp_path / kind).write_text("1,2,3\n")
    return tmp_path / kind


@pytest.mark.parametrize(("kind", "message"), [
    ("garbage.npz", "not a readable .npz file"),
    ("no_x.npz", "missing array 'x'"),
    ("flat.npz", "'x' must be a float array (N, T, J, C)"),
    ("ten_landmarks.npz", "10 landmarks x 3 channels do not fit checkpoint best_model_stage_1, "
                          "which takes 53 landmarks x 2 channels (x and y; a z is dropped)"),
    ("bad_lengths.npz", "'lengths' must be (2,) integers in 1..9"),
    ("garbage.parquet", "not a readable parquet file"),
    # matched by name: the generated data's pose has the nose, GISLR's selection not
    ("holistic.parquet", "lacks 3 of the 53 landmarks the checkpoint takes: pose_nose"),
    ("clips.csv", "cannot classify a .csv file"),
    ("missing.npz", "no such file"),
])
def test_bad_input_exits_2_naming_the_file(tiny_checkpoint: Path, tmp_path: Path, kind: str,
                                           message: str) -> None:
    if kind.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = _write(tmp_path, kind)
    result = slt("predict", MODEL, str(path), "--checkpoint-dir", str(tiny_checkpoint))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_unknown_checkpoint_and_bad_top_k_exit_2(tiny_checkpoint: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((1, 4, 53, 3), np.float32))
    unknown = slt("predict", "best_model_stage_9", str(tmp_path / "a.npz"),
                  "--checkpoint-dir", str(tiny_checkpoint))
    assert unknown.exit_code == 2
    assert "no checkpoint named 'best_model_stage_9'" in unknown.stderr
    assert "Did you mean: best_model_stage_1" in unknown.stderr
    zero = slt("predict", MODEL, str(tmp_path / "a.npz"), "--top-k", "0",
               "--checkpoint-dir", str(tiny_checkpoint))
    assert zero.exit_code == 2 and "--top-k" in zero.stderr


def test_an_ensemble_checkpoint_predicts_its_members_mean(tiny_checkpoint: Path,
                                                          tmp_path: Path) -> None:
    from tests.conftest import TINY_TOML

    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints"))
    # any lower validation loss counts, so the continued network is another one on such
    # tiny data (where accuracy moves in steps that one epoch may not take)
    (tmp_path / "tiny.toml").write_text(TINY_TOML.replace(
        "[run]\n", '[run]\nselection_margin = 0.0\nmonitor = "val_loss"\n'), encoding="utf-8")
    tuned = slt("continue", MODEL, "--type", "exploration", "--config",
                str(tmp_path / "tiny.toml"), "--checkpoint-dir", str(folder))
    assert tuned.exit_code == 0, tuned.output
    members = [MODEL, f"{MODEL}_exploration"]
    made = slt("ensemble", *members, "--name", "pair", "--checkpoint-dir", str(folder))
    assert made.exit_code == 0, made.output
    x, _, _, _ = raw_split(folder, "test")
    np.savez(tmp_path / "clips.npz", x=x[:4])

    def probabilities(name: str) -> np.ndarray:
        result = slt("predict", name, str(tmp_path / "clips.npz"), "--json", "--top-k", "4",
                     "--checkpoint-dir", str(folder))
        assert result.exit_code == 0, result.output
        return np.array([[t["probability"] for t in sorted(row["top"], key=lambda t: t["class"])]
                         for row in json.loads(result.stdout)])

    first, second = (probabilities(member) for member in members)
    assert np.abs(first - second).max() > 1e-3  # two different networks
    np.testing.assert_allclose(probabilities("pair"), (first + second) / 2, atol=2e-6)
    exported = slt("export", "pair", "--format", "torchscript", "--samples", "4",
                   "--checkpoint-dir", str(folder))  # a composite network exports too
    assert exported.exit_code == 0, exported.output
    assert (folder / "exports" / "pair.pt").is_file()


HOLISTIC = (tuple(f"pose_{i}" for i in range(33)) + tuple(f"left_hand_{i}" for i in range(21))
            + tuple(f"right_hand_{i}" for i in range(21)))


def holistic_npz(path: Path, n: int = 36) -> Path:
    """Recorder-style MediaPipe data: 75 named landmarks, undetected hands as zeros, three
    signs told apart by the right hand's path; a train and a val split."""
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    x = rng.normal(0.5, 0.05, size=(n, 10, 75, 3)).astype(np.float32)
    x[:, :, 11], x[:, :, 12] = [0.4, 0.5, 0.0], [0.6, 0.5, 0.0]
    x[:, :, 23:] += [0.0, 1.5, 0.0]  # legs off-screen
    time = np.linspace(0, 1, 10)
    path_of = np.zeros((n, 10, 3))
    path_of[..., 0] = 0.1 * np.sin(3 * time * (1 + y[:, None]))
    path_of[..., 1] = 0.1 * time
    x[:, :, 54:] = (x[:, :, 16:17] + path_of[:, :, None]
                    + rng.normal(0, 0.02, size=(n, 10, 21, 3))).astype(np.float32)
    x[::4, :, 33:54] = 0.0  # left hand not detected, written as zeros
    split = np.where(np.arange(n) < 24, "train", "val")
    np.savez(path, x=x, y=y, split=split, classes=np.array(["a", "b", "c"]),
             joints=np.array(HOLISTIC))
    return path


def train_npz(data: Path, folder: Path, normalise: str) -> None:
    from tests.conftest import TINY_TOML

    config = folder / "tiny.toml"
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(TINY_TOML.replace('normalise = "sequence"',
                                        f'normalise = "{normalise}"'), encoding="utf-8")
    result = slt("train", "--config", str(config), "--data", str(data), "--stages", "1",
                 "--epochs-per-stage", "1", "--checkpoint-dir", str(folder / "checkpoints"))
    assert result.exit_code == 0, result.output
    assert "kept 56 of 75 landmarks (hands+pose+lips)" in result.stderr


def test_hand_shapes_are_each_hand_in_its_own_frame_after_the_cloud() -> None:
    """``sequence+hands``: the sequence as one cloud, then each hand's points but the
    wrist relative to the wrist and divided by its palm: a hand moved and grown in the
    image keeps its shape; missing points stay missing; the names mirror."""
    from slt_cli.data.landmarks import normalisation_layout
    from slt_cli.data.parts import normalise_sequence
    from slt_cli.data.transforms import mirror_permutation

    layout = normalisation_layout(HOLISTIC, "sequence+hands")
    names = layout.prepared_joints
    assert names[:75] == HOLISTIC and len(names) == 75 + 2 * 20
    assert names[75] == "left_hand_shape_1" and names[-1] == "right_hand_shape_20"
    mirror = mirror_permutation(names)
    assert names[mirror[75]] == "right_hand_shape_1" and names[mirror[-1]] == "left_hand_shape_20"
    x = torch.rand(2, 6, 75, 3, dtype=torch.float64)
    left = slice(33, 54)
    x[1, :, left] = 2.5 * (x[0, :, left] - x[0, :, 33:34]) + x[0, :, 33:34] + 0.3
    x[1, 2, 40] = float("nan")
    out = normalise(x, layout)
    torch.testing.assert_close(out[:, :, :75], normalise_sequence(x), rtol=0, atol=0,
                               equal_nan=True)
    assert not torch.allclose(out[0, :, :75], out[1, :, :75])
    shape = out[:, :, 75:95]  # the left hand's points 1-20
    seen = ~torch.isnan(shape[1])
    assert torch.isnan(shape[1, 2, 40 - 34]).all() and seen.sum() == 6 * 20 * 3 - 3
    assert torch.allclose(shape[0][seen], shape[1][seen])
    palm = torch.linalg.vector_norm(shape[0, :, 9 - 1, :2], dim=-1)  # landmark 9 of the hand
    assert torch.allclose(palm.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert normalisation_layout(None, "sequence+hands") is None  # no names: one cloud


@pytest.mark.parametrize(("normalise_mode", "landmarks"), [("parts", 58),  # two hand positions
                                                            ("sequence+hands", 96)])  # 2 x 20
def test_named_npz_predicts_with_the_trained_selection_and_normalisation(
        tmp_path: Path, normalise_mode: str, landmarks: int) -> None:
    data = holistic_npz(tmp_path / "holistic.npz")
    train_npz(data, tmp_path, normalise_mode)
    folder = tmp_path / "checkpoints"
    sidecar = read_sidecar(folder, MODEL)
    assert len(sidecar.joints) == 56 and sidecar.config.data.normalise == normalise_mode
    assert sidecar.model["in_features"] == landmarks * 3 * 2 + landmarks
    with np.load(data) as arrays:  # the val sequences, every landmark, zeros and all
        val = arrays["split"] == "val"
        np.savez(tmp_path / "val.npz", x=arrays["x"][val], y=arrays["y"][val],
                 classes=arrays["classes"], joints=arrays["joints"])
    result = slt("predict", MODEL, str(tmp_path / "val.npz"), "--checkpoint-dir", str(folder))
    assert result.exit_code == 0, result.output
    assert "val.npz: took 56 of 75 landmarks by name" in result.stderr
    assert "were exactly zero and are treated as missing" in result.stderr
    evaluation = slt("evaluate", MODEL, "--json", "--checkpoint-dir", str(folder))
    accuracy = json.loads(evaluation.stdout)["accuracy"]
    assert f"top-1 accuracy {accuracy:.4f} on 12 labelled sequence(s)" in result.stderr
    model = load_model(folder, MODEL)
    prepared = load_data(str(data), frames=12, motion=True, val_fraction=0.2, seed=0,
                         normalise_mode=normalise_mode,
                         coordinates=sidecar.config.data.coordinates)
    raw = load_source(str(data))
    rows = raw.split == "val"
    with torch.no_grad():
        raw_logits = model.classifier(torch.from_numpy(raw.x[rows]),
                                      torch.from_numpy(raw.lengths[rows]))
    trainer_logits = predict_logits(model.classifier.network,
                                    TensorSplit.from_split(prepared.split("val"), "cpu"),
                                    prepared.motion, batch_size=5)
    assert (raw_logits - trainer_logits).abs().max().item() < 1e-5
    np.savez(tmp_path / "short.npz", x=raw.x[:2, :, :40], joints=np.array(raw.joints[:40]))
    short = slt("predict", MODEL, str(tmp_path / "short.npz"), "--checkpoint-dir", str(folder))
    assert short.exit_code == 2 and "lacks 16 of the 56 landmarks the checkpoint takes: " \
        "right_hand_5" in short.stderr


def test_a_sidecar_from_before_normalise_predicts_as_one_cloud(tmp_path: Path) -> None:
    from slt_cli.use.inference import Preprocessing

    data = holistic_npz(tmp_path / "holistic.npz")
    train_npz(data, tmp_path, "sequence")
    folder = tmp_path / "checkpoints"
    args = ["predict", MODEL, str(data), "--checkpoint-dir", str(folder), "--json"]
    before = json.loads(slt(*args).stdout)
    sidecar_file = folder / f"{MODEL}.json"
    old = json.loads(sidecar_file.read_text(encoding="utf-8"))
    del old["config"]["data"]["normalise"], old["joints"]  # as written before this change
    sidecar_file.write_text(json.dumps(old), encoding="utf-8")
    assert Preprocessing.of(read_sidecar(folder, MODEL)).normalise == "sequence"
    after = slt(*args)
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout) == before
    evaluation = slt("evaluate", MODEL, "--json", "--checkpoint-dir", str(folder))
    assert evaluation.exit_code == 0, evaluation.output
    again = slt("continue", MODEL, "--type", "fine_tune", "--epochs", "1",
                "--checkpoint-dir", str(folder))
    assert again.exit_code == 0, again.output
    assert read_sidecar(folder, f"{MODEL}_fine_tune").config.data.normalise == "sequence"


def test_a_model_of_an_npz_predicts_frame_folders_by_landmark_meaning(tmp_path: Path) -> None:
    """Trained on an .npz that names landmarks by index (pose_11), a model scores
    MediaPipe frame folders (whose reader names them pose_left_shoulder and orders them
    hands first) exactly as it scores the same clips in the .npz; a folder of many
    sequences is read whole, each labelled by its sign folder."""
    from tests.conftest import TINY_TOML

    data = holistic_npz(tmp_path / "holistic.npz")
    config = tmp_path / "tiny.toml"  # frame folders' part order, as a recorder states it
    config.write_text(TINY_TOML.replace('normalise = "sequence"', 'normalise = "parts"\n'
                                        'layout = "pose+left_hand+right_hand"\n'))
    folder = tmp_path / "checkpoints"
    trained = slt("train", "--config", str(config), "--data", str(data), "--stages", "1",
                  "--epochs-per-stage", "1", "--checkpoint-dir", str(folder))
    assert trained.exit_code == 0, trained.output
    with np.load(data) as arrays:
        val = arrays["split"] == "val"
        x, y, classes = arrays["x"][val], arrays["y"][val], arrays["classes"]
    np.savez(tmp_path / "val.npz", x=x, y=y, classes=classes, joints=np.array(HOLISTIC))
    root = tmp_path / "MP_Data"
    for i, (clip, label) in enumerate(zip(x, y, strict=True)):
        sequence = root / str(classes[label]).upper() / str(i)  # folder names in any case
        sequence.mkdir(parents=True)
        for t, frame in enumerate(clip):  # pose with visibility, then the hands: 258 values
            pose = np.concatenate([frame[:33], np.ones((33, 1), np.float32)], axis=1)
            np.save(sequence / f"{t}.npy", np.concatenate(
                [pose.ravel(), frame[33:54].ravel(), frame[54:].ravel()]).astype(np.float64))

    def scores(path: Path) -> list[dict]:
        result = slt("predict", MODEL, str(path), "--json", "--top-k", "3",
                     "--checkpoint-dir", str(folder))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    from_npz = scores(tmp_path / "val.npz")
    from_folders = sorted(scores(root), key=lambda row: int(Path(row["input"]).name))
    assert len(from_folders) == len(from_npz) == 12
    assert [row["label"] for row in from_folders] == [str(classes[k]) for k in y]
    for one, other in zip(from_npz, from_folders, strict=True):
        assert [t["class"] for t in one["top"]] == [t["class"] for t in other["top"]]
        for a, b in zip(one["top"], other["top"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    refused = slt("predict", MODEL, str(empty), "--checkpoint-dir", str(folder))
    assert refused.exit_code == 2 and "holds no sequence slt can classify" in refused.stderr


def test_evaluate_on_other_data_matches_landmarks_by_meaning(tmp_path: Path) -> None:
    """The same clips with MediaPipe's pose names instead of indices, hands first and two
    extra face points: `evaluate --data` scores them as the data the model trained on;
    without the right hand they are refused, the missing landmarks named."""
    from slt_cli.data.landmarks import POSE_NAMES

    data = holistic_npz(tmp_path / "holistic.npz")
    train_npz(data, tmp_path, "sequence")
    folder = tmp_path / "checkpoints"
    with np.load(data) as arrays:
        saved = {key: arrays[key] for key in arrays.files}
    renamed = [f"pose_{POSE_NAMES[int(n[5:])]}" if n.startswith("pose_") else n
               for n in HOLISTIC] + ["face_1", "face_2"]
    order = list(range(33, 75)) + list(range(33)) + [75, 76]  # hands, pose, face
    x = np.concatenate([saved["x"], saved["x"][:, :, :2]], axis=2)[:, :, order]
    np.savez(tmp_path / "renamed.npz", **{**saved, "x": x,
                                          "joints": np.array(renamed)[order]})

    def evaluate(*extra: str) -> object:
        return slt("evaluate", MODEL, "--json", *extra, "--checkpoint-dir", str(folder))

    own, other = evaluate(), evaluate("--data", str(tmp_path / "renamed.npz"))
    assert own.exit_code == 0 and other.exit_code == 0, other.output
    mine, theirs = json.loads(own.stdout), json.loads(other.stdout)
    assert theirs["accuracy"] == mine["accuracy"]
    assert theirs["loss"] == pytest.approx(mine["loss"], abs=1e-6)
    hands_gone = [i for i, name in enumerate(np.array(renamed)[order])
                  if not name.startswith("right_hand")]
    np.savez(tmp_path / "no_right.npz", **{**saved, "x": x[:, :, hands_gone],
                                           "joints": np.array(renamed)[order][hands_gone]})
    refused = evaluate("--data", str(tmp_path / "no_right.npz"))
    assert refused.exit_code == 2
    assert "lacks 21 of the 56 landmarks the checkpoint takes: right_hand_0" in refused.stderr


def test_evaluate_on_data_that_holds_only_a_test_split(tmp_path: Path) -> None:
    """Evaluating needs no validation split: a file of test clips alone is scored."""
    data = holistic_npz(tmp_path / "holistic.npz")
    train_npz(data, tmp_path, "sequence")
    folder = tmp_path / "checkpoints"
    with np.load(data) as arrays:
        saved = {key: arrays[key] for key in arrays.files}
    np.savez(tmp_path / "test_only.npz", **{**saved, "split": np.full(len(saved["y"]), "test")})
    scored = slt("evaluate", MODEL, "--data", str(tmp_path / "test_only.npz"), "--split", "test",
                 "--json", "--checkpoint-dir", str(folder))
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["count"] == len(saved["y"])
    trained = slt("train", "--data", str(tmp_path / "test_only.npz"), "--stages", "1",
                  "--checkpoint-dir", str(tmp_path / "other"))
    assert trained.exit_code == 2 and "has no 'train' split" in trained.stderr
