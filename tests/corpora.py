"""Small corpora in their published formats, built in a folder for tests and benchmarks.

``write_gislr`` writes Kaggle's GISLR layout with its exact schema (frame int16,
row_id "20-face-0", type, landmark_index int16, x/y/z float64, 543 rows per frame,
NaN where a hand was not detected); ``write_pose_folder`` writes ``.pose`` files of
MediaPipe Holistic's layout and a ``labels.csv``. Each sign is a distinct movement of
the dominant hand, so a model can learn them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

TYPES = (("face", 468), ("left_hand", 21), ("pose", 33), ("right_hand", 21))
ROWS = sum(n for _, n in TYPES)  # 543
_TYPE_COLUMN = np.concatenate([np.full(n, name, dtype=object) for name, n in TYPES])
_INDEX_COLUMN = np.concatenate([np.arange(n) for _, n in TYPES]).astype(np.int16)
_ROW_SUFFIX = np.array([f"-{t}-{i}" for t, i in zip(_TYPE_COLUMN, _INDEX_COLUMN, strict=True)],
                       dtype=object)
_BASE = np.random.default_rng(1234).uniform(-0.05, 0.05, size=(ROWS, 3))


def holistic_frames(sign: int, frames: int, rng: np.random.Generator,
                    missing_hand: float = 0.3) -> np.ndarray:
    """(frames, 543, 3) float64 in GISLR's order: a still body, the right hand tracing
    sign-specific loops, the left hand mostly undetected (NaN), like real one-handed
    signing; ``missing_hand`` of the right hand's frames are NaN too."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    points = np.broadcast_to(_BASE, (frames, ROWS, 3)).copy()
    points[:, :468] += [0.5, 0.3, 0.0]  # face
    points[:, 489:522] += [0.5, 0.6, 0.0]  # pose
    turns = 1 + sign % 3
    hand = np.concatenate([0.5 + 0.15 * np.cos(2 * np.pi * turns * t + sign),
                           0.5 + 0.15 * np.sin(2 * np.pi * turns * t * (1 + sign // 3)),
                           0.02 * t], axis=1)
    points[:, 522:] += hand[:, None, :]  # right hand
    points[:, 468:489] += [0.7, 0.7, 0.0]  # left hand, resting
    points += rng.normal(0, 0.003, size=points.shape)
    points[rng.random(frames) < 0.8, 468:489] = np.nan
    points[rng.random(frames) < missing_hand, 522:] = np.nan
    return points


def gislr_table(points: np.ndarray, first_frame: int = 20):
    """The exact Kaggle schema for one sequence's (T, 543, 3) points."""
    import pyarrow as pa

    frames = len(points)
    frame = np.repeat(np.arange(first_frame, first_frame + frames, dtype=np.int16), ROWS)
    row_id = np.char.add(frame.astype(str).astype(object), np.tile(_ROW_SUFFIX, frames))
    flat = points.reshape(-1, 3)
    return pa.table({
        "frame": pa.array(frame, pa.int16()),
        "row_id": pa.array(row_id.astype(str), pa.string()),
        "type": pa.array(np.tile(_TYPE_COLUMN, frames), pa.string()),
        "landmark_index": pa.array(np.tile(_INDEX_COLUMN, frames), pa.int16()),
        "x": pa.array(flat[:, 0], pa.float64()),
        "y": pa.array(flat[:, 1], pa.float64()),
        "z": pa.array(flat[:, 2], pa.float64()),
    })


def write_gislr(root: Path, *, signers: int = 3, signs: int = 3, repeats: int = 2,
                lengths: tuple[int, int] = (8, 20), seed: int = 0,
                start: int = 0, count: int | None = None) -> Path:
    """A GISLR folder: train.csv, the sign map and one parquet file per sequence.

    ``start``/``count`` write only part of the parquet files (for parallel writers);
    the listing files are written when ``start == 0``.
    """
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    names = [f"sign{k}" for k in range(signs)]
    rows = [(10000 + p, 1000 * p + i, names[(i // repeats) % signs])
            for p in range(signers) for i in range(signs * repeats)]
    if start == 0:
        (root / "sign_to_prediction_index_map.json").write_text(
            json.dumps({name: k for k, name in enumerate(names)}), encoding="utf-8")
        with open(root / "train.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "participant_id", "sequence_id", "sign"])
            for participant, sequence, sign in rows:
                writer.writerow([f"train_landmark_files/{participant}/{sequence}.parquet",
                                 participant, sequence, sign])
    stop = len(rows) if count is None else min(len(rows), start + count)
    for n in range(start, stop):
        participant, sequence, sign = rows[n]
        rng = np.random.default_rng([seed, n])
        points = holistic_frames(names.index(sign), int(rng.integers(*lengths, endpoint=True)),
                                 rng)
        path = root / "train_landmark_files" / str(participant) / f"{sequence}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(gislr_table(points), path)
    return root


def holistic_components():
    """pose-format header components with MediaPipe Holistic's names and sizes."""
    from pose_format.pose_header import PoseHeaderComponent

    def component(name: str, points: list[str]) -> PoseHeaderComponent:
        return PoseHeaderComponent(name, points, [(0, 1)], [(255, 0, 0)], "XYZC")

    hand = [f"P{i}" for i in range(21)]
    return [component("POSE_LANDMARKS", [str(i) for i in range(33)]),
            component("FACE_LANDMARKS", [str(i) for i in range(468)]),
            component("LEFT_HAND_LANDMARKS", hand), component("RIGHT_HAND_LANDMARKS", hand),
            component("POSE_WORLD_LANDMARKS", [str(i) for i in range(33)])]


def write_pose_file(path: Path, points: np.ndarray, components=None) -> None:
    """A ``.pose`` file of one person; NaN points are written masked (confidence 0)."""
    import numpy.ma as ma
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    header = PoseHeader(0.2, PoseHeaderDimensions(640, 480, 1),
                        components or holistic_components())
    data = points[:, None].astype(np.float32)
    missing = np.isnan(data)
    confidence = (~missing.any(axis=-1)).astype(np.float32)
    body = NumPyPoseBody(25.0, ma.masked_array(np.nan_to_num(data), mask=missing), confidence)
    with open(path, "wb") as file:
        Pose(header, body).write(file)


def write_pose_folder(root: Path, *, signers: int = 3, signs: int = 3, repeats: int = 2,
                      lengths: tuple[int, int] = (8, 20), with_split: bool = False) -> Path:
    """``.pose`` files in Holistic layout (pose, face, hands, world pose) + labels.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(signers):
        for i in range(signs * repeats):
            sign = (i // repeats) % signs
            rng = np.random.default_rng([p, i])
            gislr = holistic_frames(sign, int(rng.integers(*lengths, endpoint=True)), rng)
            # GISLR order (face, left, pose, right) -> pose-format's (pose, face, l, r, world)
            points = np.concatenate([gislr[:, 489:522], gislr[:, :468], gislr[:, 468:489],
                                     gislr[:, 522:], gislr[:, 489:522]], axis=1)
            name = f"s{p}/clip{i}.pose"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            write_pose_file(root / name, points)
            split = "val" if p == signers - 1 else "train"
            rows.append([name, f"sign{sign}", f"person{p}"] + ([split] if with_split else []))
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "label", "signer"] + (["split"] if with_split else []))
        writer.writerows(rows)
    return root


# --- frame folders: MediaPipe vectors and OpenPose JSON -----------------------------------

MP_PART_ORDER = ("pose", "face", "left_hand", "right_hand")  # the tutorial's


def mediapipe_parts(sign: int, frames: int, rng: np.random.Generator, *,
                    face_points: int = 468) -> dict[str, np.ndarray]:
    """One person's MediaPipe Holistic parts, ``part -> (frames, points, values)`` as the
    Python API gives them: pose (x, y, z, visibility), face and hands (x, y, z); the face
    mesh's nose tip (point 1) on the pose nose, each hand's wrist on its own side's pose
    wrist; the right hand moves with the sign, the left rests and is mostly undetected
    (all zeros, as recorders write it)."""
    t = np.linspace(0.0, 1.0, frames)[:, None]
    pose = np.zeros((frames, 33, 4))
    pose[:, :, :2] = rng.uniform(0.3, 0.7, size=(33, 2))
    pose[:, 0, :2] = [0.5, 0.3]  # nose
    pose[:, 11, :2], pose[:, 12, :2] = [0.62, 0.5], [0.38, 0.5]  # shoulders (left on the right)
    pose[:, 15, :2] = [0.68, 0.8]  # left wrist, resting
    pose[:, 16, :2] = np.concatenate([0.35 + 0.1 * np.cos(2 * np.pi * (1 + sign) * t),
                                      0.6 + 0.1 * np.sin(2 * np.pi * t)], axis=1)
    pose[:, :, 2] = rng.normal(0, 0.3, size=(frames, 33))
    pose[:, :, 3] = rng.uniform(0.2, 1.0, size=(frames, 33))
    face = np.concatenate([np.broadcast_to([0.5, 0.3], (frames, face_points, 2))
                           + rng.uniform(-0.06, 0.06, size=(face_points, 2)),
                           rng.normal(0, 0.02, size=(frames, face_points, 1))], axis=2)
    face[:, 1] = [0.5, 0.3, -0.05]  # the nose tip
    hands = {}
    for part, wrist in (("left_hand", 15), ("right_hand", 16)):
        offsets = rng.uniform(-0.05, 0.05, size=(21, 2))
        offsets[0] = 0
        xy = pose[:, wrist, None, :2] + offsets
        hands[part] = np.concatenate([xy, rng.normal(0, 0.02, size=(frames, 21, 1))], axis=2)
    hands["left_hand"][rng.random(frames) < 0.7] = 0.0
    hands["right_hand"][rng.random(frames) < 0.2] = 0.0
    pose += rng.normal(0, 0.002, size=pose.shape)
    return {"pose": pose, "face": face, **hands}


def flat_frames(parts: dict[str, np.ndarray], order: tuple[str, ...],
                hand_values: int = 3) -> np.ndarray:
    """Parts as a recorder writes them: ``(frames, values)`` flat, in ``order``."""
    blocks = []
    for part in order:
        block = parts[part]
        if part.endswith("hand") and hand_values == 4:
            block = np.concatenate([block, np.zeros(block.shape[:2] + (1,))], axis=2)
        blocks.append(block.reshape(len(block), -1))
    return np.concatenate(blocks, axis=1)


def write_mediapipe(root: Path, *, order: tuple[str, ...] = MP_PART_ORDER, face_points: int = 468,
                    hand_values: int = 3, signs: tuple[str, ...] = ("Yes", "no", "Please"),
                    sequences: int = 2, frames: int = 6, seed: int = 0
                    ) -> dict[str, dict[str, np.ndarray]]:
    """The tutorial layout ``root/<sign>/<sequence>/<frame>.npy`` (float64 vectors).

    Returns:
        Each sequence folder (relative, e.g. ``Yes/0``) -> the parts written there.
    """
    written = {}
    for s, sign in enumerate(signs):
        for q in range(sequences):
            parts = mediapipe_parts(s, frames, np.random.default_rng([seed, s, q]),
                                    face_points=face_points)
            folder = root / sign / str(q)
            folder.mkdir(parents=True, exist_ok=True)
            for f, vector in enumerate(flat_frames(parts, order, hand_values)):
                np.save(folder / f"{f}.npy", vector)
            written[f"{sign}/{q}"] = parts
    return written


def openpose_person(parts: dict[str, np.ndarray], frame: int, scale: float = 640.0,
                    confidence: float = 0.9) -> dict:
    """One person of an OpenPose frame (the published keys), in pixels, from
    ``mediapipe_parts``: BODY_25 has MediaPipe's nose, shoulders, elbows and wrists at
    its own indices; undetected points are 0, 0, 0."""
    body = np.zeros((25, 3))
    for body_index, pose_index in ((0, 0), (2, 12), (3, 14), (4, 16), (5, 11), (6, 13), (7, 15)):
        body[body_index] = [*parts["pose"][frame, pose_index, :2] * scale, confidence]
    body[1] = [*(parts["pose"][frame, 11, :2] + parts["pose"][frame, 12, :2]) * scale / 2, 0.8]

    def hand(part: str) -> list[float]:
        points = parts[part][frame]
        if (points == 0).all():
            return [0.0] * 63
        return np.concatenate([points[:, :2] * scale, np.full((21, 1), confidence)],
                              axis=1).ravel().tolist()

    return {"person_id": [-1], "pose_keypoints_2d": body.ravel().tolist(),
            "face_keypoints_2d": [0.0] * 210, "hand_left_keypoints_2d": hand("left_hand"),
            "hand_right_keypoints_2d": hand("right_hand"), "pose_keypoints_3d": [],
            "face_keypoints_3d": [], "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": []}


def write_openpose(root: Path, *, signs: int = 3, clips: int = 2, frames: int = 6,
                   extra_person: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """OpenPose's output for clips (``root/<clip>/<clip>_<000000000012>_keypoints.json``)
    and ``labels.csv`` (folder, label, signer); with ``extra_person``, a faint second
    person is listed first in every frame."""
    written, rows = {}, []
    for s in range(signs):
        for c in range(clips):
            parts = mediapipe_parts(s, frames, np.random.default_rng([9, s, c]))
            name = f"clip_{s}_{c}"
            (root / name).mkdir(parents=True, exist_ok=True)
            for f in range(frames):
                people = [openpose_person(parts, f)]
                if extra_person:
                    people.insert(0, openpose_person(parts, f, scale=100.0, confidence=0.1))
                (root / name / f"{name}_{f:012d}_keypoints.json").write_text(
                    json.dumps({"version": 1.3, "people": people}), encoding="utf-8")
            written[name] = parts
            rows.append([name, f"sign{s}", f"person{c}"])
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["folder", "label", "signer"])
        writer.writerows(rows)
    return written
