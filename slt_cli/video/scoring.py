"""A checkpoint on a video clip (``slt predict MODEL clip.mp4``): the clip's landmarks
picked by their MediaPipe meaning, then the whole clip and every window of the model's
frame count scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slt_cli.common.reporting import Reporter
from slt_cli.data.landmarks import match_landmarks, select_named
from slt_cli.use.inference import LoadedModel, predict_probabilities
from slt_cli.video.backend import Backend, VideoError, named_landmarks, read_clip


def pick_landmarks(model: LoadedModel, names: tuple[str, ...], what: str) -> list[int]:
    """Where the checkpoint's landmarks sit among a clip's (``names``): by the names it
    was trained on, else by its ``[data] landmarks`` selection.

    Raises:
        DataError: naming the landmarks the clip lacks.
    """
    if model.preprocessing.joints is not None:
        return match_landmarks(names, model.preprocessing.joints, what)
    kept = select_named(names, model.preprocessing.landmarks)
    return list(kept) if kept is not None else list(range(len(names)))


def top_classes(probabilities: np.ndarray, classes: tuple[str, ...],
                top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` most likely classes of one ``(K,)`` row, most likely first."""
    order = (-probabilities).argsort(kind="stable")[:top_k]
    return [{"class": classes[k], "probability": round(float(probabilities[k]), 6)}
            for k in order]


def clip_landmarks(model: LoadedModel, path: Path, backend: Backend,
                   reporter: Reporter | None = None) -> np.ndarray:
    """The clip's landmarks the checkpoint takes: float32 ``(T, J, 3)``, NaN = missing.

    Raises:
        DataError: when the clip cannot be decoded or lacks the checkpoint's landmarks.
    """
    reporter = reporter or Reporter()
    clip = backend.open_clip(path)
    detector = backend.new_detector()
    try:
        frames = read_clip(clip, detector, progress=lambda done, of: reporter.task_progress(
            task=path.name, done=done, total=of + 1, unit="frames"))
    except VideoError as exc:
        raise VideoError(f"{path}: {exc.message}", hint=exc.hint) from None
    finally:
        detector.close()
        clip.close()
    reporter.task_progress(task=path.name, done=len(frames), total=len(frames), unit="frames")
    x, names = named_landmarks(frames)
    kept = pick_landmarks(model, names, str(path))
    model.check_layout(len(kept), 3, str(path))
    return np.ascontiguousarray(x[:, kept])


def clip_rows(model: LoadedModel, path: Path, x: np.ndarray, label: str | None,
              top_k: int) -> list[dict[str, Any]]:
    """Rows as ``slt predict`` prints them: the whole clip (index 0, ``window`` null),
    then every window of the model's frame count, one frame apart (``window``: its
    ``start`` and ``end`` frame, end excluded). A clip or window without any landmark is
    not classified (``top`` empty)."""
    width = model.preprocessing.frames
    starts = range(len(x) - width + 1) if len(x) > width else range(0)
    whole = predict_probabilities(model, x[None], np.array([len(x)]))
    rows = [{"input": str(path), "index": 0, "label": label, "window": None,
             "top": [] if np.isnan(x).all() else top_classes(whole[0], model.classes, top_k)}]
    if not len(starts):
        return rows
    windows = np.stack([x[s:s + width] for s in starts])
    scores = predict_probabilities(model, windows, np.full(len(windows), width))
    empty = np.isnan(windows).all(axis=(1, 2, 3))
    rows += [{"input": str(path), "index": i + 1, "label": None,
              "window": {"start": s, "end": s + width},
              "top": [] if empty[i] else top_classes(scores[i], model.classes, top_k)}
             for i, s in enumerate(starts)]
    return rows


def shown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the table shows of a clip's rows: the whole clip and its most confident
    window (``--json`` gives every one); other inputs' rows as they are."""
    shown: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("window") is None:
            shown.append(row)
        elif row["top"] and (row["input"] not in best or row["top"][0]["probability"]
                             > best[row["input"]]["top"][0]["probability"]):
            best[row["input"]] = row
    out: list[dict[str, Any]] = []
    for row in shown:
        out.append(row)
        if "window" in row and row["input"] in best:
            out.append(best[row["input"]])
    return out
