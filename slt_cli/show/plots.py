"""Figures: training curves (``slt analyze --plot``) and a confusion matrix
(``slt evaluate --confusion``), drawn with matplotlib's optional extra.

matplotlib is imported inside the functions that draw, never at module level, and
without pyplot (a ``Figure`` renders with the Agg canvas; no display, no global
state). The series a figure shows are built first by pure functions, so they can be
checked without drawing anything. Images are written whole or not at all.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slt_cli.common.extras import require
from slt_cli.common.files import check_writable_output, readable_as_umask_allows
from slt_cli.errors import SltError, StorageError
from slt_cli.run.history import EpochRow
from slt_cli.run.results import Evaluation
from slt_cli.store.checkpoints import atomic_write_bytes, best_checkpoint_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from slt_cli.store.sidecar import Sidecar

IMAGE_TYPES = (".png", ".svg", ".pdf")
LABELLED_CLASSES = 40  # above this many classes the axes show indices, not names
ANNOTATED_CLASSES = 12  # up to this many, each cell of the matrix shows its share
IMPORTANCE_TRIALS = 10  # fANOVA over fewer complete trials ranks noise
_LOSS, _ACCURACY, _BEST = "#1f5fa8", "#2a8a3e", "#f2b705"


@dataclass(frozen=True)
class StageCurve:
    """One stage's epochs, placed on the run's cumulative epoch axis (a stage's epoch 0,
    its starting weights, takes a place of its own)."""

    stage_idx: int
    stage_name: str
    run_id: str
    x: tuple[int, ...]  # cumulative epoch over the stages plotted
    train_loss: tuple[float, ...]  # NaN at epoch 0 (no training yet)
    val_loss: tuple[float, ...]
    train_accuracy: tuple[float, ...]  # NaN at epoch 0
    val_accuracy: tuple[float, ...]
    best_x: int | None  # where the epoch saved as best_model_stage_N lies on x
    start_x: int | None = None  # where epoch 0 (the starting weights) lies, if recorded


@dataclass(frozen=True)
class TrainingCurves:
    stages: tuple[StageCurve, ...]
    missing: tuple[int, ...]  # stages with a best checkpoint but no recorded epochs


def check_output(path: Path, *, replace: bool = False) -> None:
    """Refuse, before any work, an image path that cannot be written (an existing file
    unless ``replace``; never a link, FIFO or device), or a missing matplotlib.

    Raises:
        SltError: naming what is wrong with ``path``, or how to install matplotlib.
    """
    if path.suffix.lower() not in IMAGE_TYPES:
        raise SltError(f"{path}: cannot tell the image type from {path.suffix or 'no suffix'!r}",
                       hint=f"Name the file with one of {', '.join(IMAGE_TYPES)}.")
    if path.is_dir():
        raise SltError(f"{path} is a folder", hint="Give a file name, e.g. curves.png.")
    folder = path.parent
    if not folder.is_dir():
        raise SltError(f"cannot write {path}: the folder {folder} does not exist",
                       hint="Create the folder first, or choose another path.")
    if not os.access(folder, os.W_OK):
        raise SltError(f"cannot write {path}: the folder {folder} is not writable",
                       hint="Choose a folder you can write to.")
    check_writable_output(path, replace=replace)
    _require_matplotlib()


def training_curves(records: Iterable[Sidecar],
                    rows: Iterable[EpochRow]) -> TrainingCurves:
    """The recorded epochs of the runs that produced the ``best_model_stage_N``
    checkpoints among ``records`` (sidecars with a ``name``), stage after stage: each
    stage's epochs from the run named by its checkpoint's ``run_id``."""
    best = sorted((r for r in records if r.name == best_checkpoint_name(r.stage_idx)),
                  key=lambda r: r.stage_idx)
    by_stage: dict[tuple[str, int], list[EpochRow]] = {}
    for row in rows:
        by_stage.setdefault((row.run_id, row.stage_idx), []).append(row)
    stages, missing, offset = [], [], 0
    for record in best:
        epochs = sorted(by_stage.get((str(record.run_id), record.stage_idx), []),
                        key=lambda row: row.epoch)
        if not epochs:
            missing.append(record.stage_idx)
            continue
        saved = [row.epoch for row in epochs if row.epoch == record.epoch]
        start = epochs[0].epoch == 0
        offset += int(start)  # epoch 0, when recorded, takes a place on x of its own
        stages.append(StageCurve(
            stage_idx=record.stage_idx, stage_name=record.stage_name,
            run_id=str(record.run_id), x=tuple(offset + row.epoch for row in epochs),
            train_loss=tuple(_value(row.train_loss) for row in epochs),
            val_loss=tuple(row.val_loss for row in epochs),
            train_accuracy=tuple(_value(row.train_accuracy) for row in epochs),
            val_accuracy=tuple(row.val_accuracy for row in epochs),
            best_x=offset + saved[0] if saved else None,
            start_x=offset if start else None))
        offset += epochs[-1].epoch
    return TrainingCurves(tuple(stages), tuple(missing))


def _value(number: float | None) -> float:
    return float("nan") if number is None else number


def row_normalised(confusion: Sequence[Sequence[int]]) -> list[list[float]]:
    """Each row of ``confusion`` as shares of its total (NaN where a class has none)."""
    return [[count / sum(row) if sum(row) else float("nan") for count in row]
            for row in confusion]


def save_training_curves(curves: TrainingCurves, path: Path) -> None:
    """Validation loss and accuracy (training lighter) over every epoch of every stage,
    with the stage boundaries and each stage's saved best epoch marked."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(figsize=(10, 7.5))
    loss_axes, accuracy_axes = figure.subplots(2, 1, sharex=True)
    starts = [curve for curve in curves.stages if curve.start_x is not None]
    for index, curve in enumerate(curves.stages):
        first = index == 0
        first_start = bool(starts) and curve is starts[0]
        for axes, train, val, colour, name in (
                (loss_axes, curve.train_loss, curve.val_loss, _LOSS, "loss"),
                (accuracy_axes, curve.train_accuracy, curve.val_accuracy, _ACCURACY,
                 "accuracy")):
            axes.plot(curve.x, train, color=colour, alpha=0.35, linewidth=1.2, marker="o",
                      markersize=2,
                      label=f"training {name} (as trained: augmented, smoothed)"
                      if first else None)
            axes.plot(curve.x, val, color=colour, linewidth=1.8, marker="o", markersize=3,
                      label=f"validation {name}" if first else None)
            if curve.start_x is not None:
                axes.plot([curve.start_x], [val[0]], linestyle="none", marker="o",
                          markersize=7, markerfacecolor="white", markeredgecolor=colour,
                          zorder=4, label="epoch 0: the weights the stage started from"
                          if first_start else None)
            if curve.best_x is not None:
                value = val[curve.x.index(curve.best_x)]
                axes.plot([curve.best_x], [value], linestyle="none", marker="*", markersize=14,
                          color=_BEST, markeredgecolor="black", zorder=5,
                          label="best epoch of the stage (saved)" if first else None)
                if axes is accuracy_axes:
                    axes.annotate(f"{value:.3f}", (curve.best_x, value), xytext=(0, 8),
                                  textcoords="offset points", ha="center", fontsize=8,
                                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                                        "edgecolor": "none", "alpha": 0.8})
        if not first:
            for axes in (loss_axes, accuracy_axes):
                axes.axvline(curve.x[0] - 0.5, color="0.55", linestyle="--", linewidth=1)
    _label_stages(loss_axes, curves.stages)
    loss_axes.set_ylabel("loss")
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_xlabel("epoch (cumulative over the stages)")
    accuracy_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axes.legend(loc="best", fontsize=8)
    accuracy_axes.legend(loc="best", fontsize=8)
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.25)
    runs = list(dict.fromkeys(curve.run_id for curve in curves.stages))
    figure.suptitle(f"best_model_stage_N: every epoch of run{'s' if len(runs) > 1 else ''} "
                    f"{', '.join(runs)}", fontsize=10)
    save_figure(figure, path)


def save_confusion(evaluation: Evaluation, path: Path) -> None:
    """The row-normalised confusion matrix of ``evaluation`` (true classes down,
    predictions across), class names on the axes up to ``LABELLED_CLASSES`` classes."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    classes = evaluation.classes
    shares = np.array(row_normalised(evaluation.confusion), dtype=float)
    side = min(14.0, max(6.0, 3.0 + 0.11 * len(classes)))
    figure = new_figure(figsize=(side + 1.5, side))
    axes = figure.subplots()
    image = axes.imshow(np.ma.masked_invalid(shares), vmin=0.0, vmax=1.0,
                        cmap=colormaps["Blues"].with_extremes(bad="0.88"),
                        interpolation="nearest")
    text = 10 if side < 10 else 13  # the big figures are shown scaled down
    bar = figure.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("share of the true class's sequences", fontsize=text)
    bar.ax.tick_params(labelsize=text - 1)
    if len(classes) <= LABELLED_CLASSES:
        size = 8 if len(classes) <= 20 else 6
        axes.set_xticks(range(len(classes)), classes, rotation=90, fontsize=size)
        axes.set_yticks(range(len(classes)), classes, fontsize=size)
        what = "class"
    else:
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        axes.tick_params(labelsize=text)
        what = f"class index; names omitted above {LABELLED_CLASSES} classes"
    if len(classes) <= ANNOTATED_CLASSES:
        for (true, predicted), share in np.ndenumerate(shares):
            if share > 0:
                axes.text(predicted, true, f"{share:.0%}", ha="center", va="center",
                          fontsize=8, color="white" if share > 0.6 else "black")
    axes.set_xlabel(f"predicted ({what})", fontsize=text)
    axes.set_ylabel(f"true ({what})", fontsize=text)
    axes.set_title(f"{evaluation.checkpoint}: {evaluation.split} split, accuracy "
                   f"{evaluation.accuracy:.3f} over {evaluation.count} sequences", fontsize=text)
    save_figure(figure, path)


def save_tune_figure(studies: Sequence[tuple[str, Sequence[Any], Mapping[str, float]]],
                     path: Path) -> None:
    """``slt tune --plot``: per study, the score of each trial in order (complete as
    dots, pruned as crosses at their last reported score, the best so far as a line)
    and, from ``IMPORTANCE_TRIALS`` complete trials on, each setting's importance
    (fANOVA); with fewer, the panel says so.

    Args:
        studies: (study name, its ``tune.TrialRow``s, setting -> importance) each.
        path: The image to write (.png, .svg or .pdf).
    """
    from matplotlib.ticker import MaxNLocator

    figure = new_figure((11.0, 3.2 * len(studies)))
    grid = figure.subplots(len(studies), 2, squeeze=False)
    for (name, rows, importances), (history, bars) in zip(studies, grid, strict=True):
        for state, marker, colour in (("complete", "o", _ACCURACY), ("pruned", "x", _LOSS)):
            shown = [row for row in rows if row.state == state and row.score is not None]
            history.scatter([row.number for row in shown], [row.score for row in shown],
                            marker=marker, color=colour, label=state, clip_on=False, zorder=3)
        best, line = float("-inf"), []
        for row in rows:
            if row.state == "complete" and row.score is not None:
                best = max(best, row.score)
            line.append((row.number, best))
        history.step([x for x, y in line if y > float("-inf")],
                     [y for _, y in line if y > float("-inf")], where="post", color=_BEST,
                     label="best so far")
        numbers = [row.number for row in rows] or [0]
        history.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)  # no dot on the frame
        history.xaxis.set_major_locator(MaxNLocator(integer=True))
        history.margins(y=0.12)
        history.set(title=f"{name}: trials", xlabel="trial", ylabel="val accuracy")
        # beside the points, never over them
        history.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                       borderaxespad=0.0)
        complete = sum(row.state == "complete" for row in rows)
        if importances and complete >= IMPORTANCE_TRIALS:
            keys = list(importances)[::-1]
            bars.barh(keys, [importances[key] for key in keys], color=_ACCURACY)
            bars.set(title=f"{name}: importance of each setting", xlabel="share (fANOVA)")
        else:
            bars.set_axis_off()
            bars.text(0.6, 0.5, f"importance of each setting: from {IMPORTANCE_TRIALS} "
                      f"complete trials\n(this study has {complete})", ha="center",
                      va="center")
    save_figure(figure, path)


def _label_stages(axes: Any, stages: Sequence[StageCurve]) -> None:
    """Stage names above the top panel; staggered on two lines when a stage is too
    narrow for its name."""
    total = max(stages[-1].x[-1], 1) if stages else 1
    inches_per_epoch = 9.0 / total
    narrow = any(len(f"{c.stage_idx} {c.stage_name}") * 0.075 > len(c.x) * inches_per_epoch
                 for c in stages)
    for index, curve in enumerate(stages):
        middle = (curve.x[0] + curve.x[-1]) / 2
        axes.text(middle, 1.02 + (0.07 if narrow and index % 2 else 0.0),
                  f"{curve.stage_idx} {curve.stage_name}", transform=axes.get_xaxis_transform(),
                  ha="center", va="bottom", fontsize=8, color="0.25")


def _require_matplotlib() -> None:
    require("plot", "drawing figures")


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure (no pyplot, no display); SltError when matplotlib is missing."""
    _require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=120, layout="constrained")


def save_figure(figure: Figure, path: Path) -> None:
    """Render in memory, then write the file atomically (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lower().lstrip("."))
    try:
        atomic_write_bytes(path, buffer.getvalue())
        readable_as_umask_allows(path)
    except OSError as exc:
        raise StorageError.writing(path, exc, elsewhere="with another image path") from None
    except StorageError as exc:
        raise StorageError(exc.message, "Choose another path for the image.",
                           machine_fault=exc.exit_code == 1) from None
