"""``slt export``: a checkpoint as one self-contained file for deployment.

The exported graph is ``inference.SequenceClassifier``: one raw sequence ``(T, J, C)``
float32 (NaN = missing landmark, any ``T >= 1``) in, ``logits`` and ``probabilities``
``(K,)`` out, the checkpoint's normalisation, resampling and features inside it. Beside
it goes ``PATH.json``: class names, the input layout, the preprocessing facts and the
parity check. Before anything is written, the file is loaded back and compared with
PyTorch on random sequences and on the checkpoint's own held-out data; only a file
that agrees is written (atomically). Nothing here prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slt_cli import __version__
from slt_cli.common.extras import require
from slt_cli.common.files import abandoned_temps, check_writable_output, own_folder
from slt_cli.errors import DataError, SltError
from slt_cli.store.checkpoints import EXPORT_FOLDER, EXPORT_FORMATS, atomic_write_pair, check_name
from slt_cli.use.inference import LoadedModel, SequenceClassifier, layouts, load_model

INPUT_NAME = "landmarks"
OUTPUT_NAMES = ("logits", "probabilities")
TOLERANCE = 1e-3  # largest logit difference from PyTorch that a written file may have
Runner = Callable[[np.ndarray], np.ndarray]  # (T, J, C) float32 -> logits (K,)


class ExportError(SltError):
    """An export that cannot be made: unknown format, missing extra, bad output path."""


class ParityError(ExportError):
    """The exported file does not compute what PyTorch does: a bug, so exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class Parity:
    """How an exported file's logits compare with PyTorch's on one set of inputs."""

    inputs: str  # "random" or the split of the checkpoint's data, e.g. "val"
    count: int
    max_abs_diff: float
    top1_agreement: float


@dataclass(frozen=True)
class Exported:
    path: Path
    metadata_path: Path
    format: str
    size: int  # bytes
    parity: tuple[Parity, ...]
    note: str | None  # why a check was skipped, if one was


@dataclass(frozen=True)
class Reference:
    """Raw held-out sequences of a checkpoint's data, each at its own length."""

    split: str
    sequences: tuple[np.ndarray, ...]  # (T_i, J, C) float32
    joints: tuple[str, ...] | None


def default_path(checkpoint_dir: Path, name: str, fmt: str) -> Path:
    """``<checkpoint-dir>/exports/NAME.onnx`` (or ``.pt``)."""
    return checkpoint_dir / EXPORT_FOLDER / f"{check_name(name)}{EXPORT_FORMATS[fmt]}"


def metadata_path(path: Path) -> Path:
    """``FILE.json`` beside the exported ``FILE``."""
    return path.with_name(path.name + ".json")


def out_path(checkpoint_dir: Path, name: str, fmt: str, out: Path | None, *,
             force: bool = False) -> Path:
    """The file ``--out`` names (a folder gets ``NAME.onnx`` or ``.pt`` inside), checked
    before anything is computed; a killed earlier export to it is finished or tidied.

    Raises:
        ExportError: when it lies among the checkpoint folder's own files (anywhere in it
            but ``exports/``), or it or its ``.json`` exists and ``force`` is not set.
        SltError: when ``exports/`` is a symbolic link.
    """
    path = out or default_path(checkpoint_dir, name, fmt)
    if path.is_dir() and not path.is_symlink():
        path = path / default_path(checkpoint_dir, name, fmt).name
    exports = checkpoint_dir / EXPORT_FOLDER
    if path.parent.absolute() == exports.absolute():
        own_folder(checkpoint_dir, EXPORT_FOLDER)
    home, where = checkpoint_dir.resolve(), path.parent.resolve()
    if (where == home or home in where.parents) and where != exports.resolve():
        raise ExportError(f"{path}: exports do not go into the checkpoint folder itself, "
                          "where slt keeps its checkpoints and bookkeeping",
                          hint=f"Leave --out out (it writes to {exports}) or choose another "
                               "folder.")
    _finish_killed_export(path)
    for output in (path, metadata_path(path)):
        check_writable_output(output, replace=True)  # never a link, a FIFO or a device
    taken = [p for p in (path, metadata_path(path)) if p.exists()]
    if taken and not force:
        raise ExportError(f"{taken[0]} exists; slt export does not replace a file without "
                          "--force", hint="Pass --force to replace it (and its .json), or "
                                          "choose another --out.")
    return path


def _finish_killed_export(path: Path) -> None:
    """What an export killed while writing ``path`` left beside it: a ``FILE.json``
    waiting under its temporary name that names the hash of the ``FILE`` in place is
    renamed into place; slt's other temporary files for the pair are removed."""
    meta = metadata_path(path)
    for tmp in abandoned_temps(path.parent, meta.name):
        try:
            pending = json.loads(tmp.read_text(encoding="utf-8"))
            fits = isinstance(pending, dict) and pending.get("file_sha256") == (
                hashlib.sha256(path.read_bytes()).hexdigest())
        except (OSError, ValueError):
            fits = False
        if fits:
            os.replace(tmp, meta)
        else:
            tmp.unlink(missing_ok=True)
    for tmp in abandoned_temps(path.parent, path.name):
        tmp.unlink(missing_ok=True)


def require_onnx() -> None:
    """Raises: ExportError naming the extra when onnx, onnxruntime or onnxscript is missing."""
    require("onnx", "ONNX export", ExportError)


def export_checkpoint(checkpoint_dir: Path, name: str, fmt: str, out: Path | None = None,
                      *, samples: int = 64, seed: int = 0, force: bool = False) -> Exported:
    """Export checkpoint ``name`` to ``fmt`` after a parity check against PyTorch.

    Args:
        checkpoint_dir: Where the checkpoint is.
        name: The checkpoint's name.
        fmt: ``onnx`` or ``torchscript``.
        out: The file (or folder) to write to [default: ``default_path``].
        samples: Held-out sequences of the checkpoint's data to compare on (and as
            many random ones).
        seed: Seeds the random comparison sequences.
        force: Replace an existing file (and its ``.json``) at the output path.

    Raises:
        ExportError: for an unknown format, a missing ONNX extra, an output among the
            checkpoint folder's own files, or an existing output without ``force``.
        ParityError: when the exported file disagrees with PyTorch (nothing is written).
        CheckpointError: for a missing or damaged checkpoint.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}", hint="Use onnx or torchscript.")
    if fmt == "onnx":
        require_onnx()
    path = out_path(checkpoint_dir, name, fmt, out, force=force)
    model = load_model(checkpoint_dir, name)
    reference, note = reference_sequences(model, samples)
    joints, channels = _layout(model, reference)
    wrapper = SequenceClassifier(model.classifier).eval()
    example = torch.zeros(max(2, model.preprocessing.frames), joints, channels)
    blob = _torchscript(wrapper, example) if fmt == "torchscript" else _onnx(wrapper, example)
    check = runner(fmt, blob)
    parity = [compare(wrapper, check, "random",
                      random_sequences(samples, joints, channels, model.preprocessing.frames,
                                       seed))]
    if reference is not None:
        parity.append(compare(wrapper, check, reference.split, reference.sequences))
    worst = max(parity, key=lambda p: p.max_abs_diff)
    if not worst.max_abs_diff <= TOLERANCE:
        raise ParityError(f"the {fmt} file disagrees with PyTorch by up to "
                          f"{worst.max_abs_diff:.2e} on {worst.inputs} inputs; nothing written",
                          hint="This is a bug in slt or the exporter; please report it.")
    metadata = _metadata(model, fmt, blob, joints, channels, reference, parity)
    meta_path = metadata_path(path)
    # The model first, then FILE.json naming its hash: a kill between the two renames
    # leaves a pair a reader can tell apart, and the next export finishes it.
    atomic_write_pair(path, blob, meta_path,
                      (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode("utf-8"),
                      elsewhere="with --out")
    return Exported(path=path, metadata_path=meta_path, format=fmt, size=len(blob),
                    parity=tuple(parity), note=note)


def runner(fmt: str, blob: bytes) -> Runner:
    """A function that runs an exported file (bytes) on one raw sequence."""
    if fmt == "torchscript":
        with _quiet_exporters():
            module = torch.jit.load(io.BytesIO(blob), map_location="cpu")

        def run_torchscript(sequence: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(sequence))[0].numpy()

        return run_torchscript
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on stderr
    session = onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def run_onnx(sequence: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAMES[0]], {INPUT_NAME: sequence})[0]

    return run_onnx


def compare(wrapper: SequenceClassifier, run: Runner, inputs: str,
            sequences: tuple[np.ndarray, ...]) -> Parity:
    """Largest logit difference and top-1 agreement of ``run`` against ``wrapper``."""
    worst, agree = 0.0, 0
    with torch.no_grad():
        for sequence in sequences:
            expected = wrapper(torch.from_numpy(sequence))[0].numpy()
            got = run(sequence)
            worst = max(worst, float(np.abs(got - expected).max()))
            agree += int(got.argmax() == expected.argmax())
    return Parity(inputs=inputs, count=len(sequences), max_abs_diff=worst,
                  top1_agreement=agree / max(1, len(sequences)))


def random_sequences(count: int, joints: int, channels: int, frames: int,
                     seed: int) -> tuple[np.ndarray, ...]:
    """``count`` random sequences of 1 to 3 x ``frames`` frames, a fifth of the
    landmarks and some whole frames missing (NaN), one length 1 among them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        length = 1 if i == 0 else int(rng.integers(2, 3 * frames + 1))
        x = rng.normal(0.5, 0.2, size=(length, joints, channels)).astype(np.float32)
        x[rng.random((length, joints)) < 0.2] = np.nan
        if length > 2:
            x[rng.random(length) < 0.1] = np.nan
        out.append(x)
    return tuple(out)


def reference_sequences(model: LoadedModel, limit: int) -> tuple[Reference | None, str | None]:
    """Up to ``limit`` raw sequences of the checkpoint's test (else val) split, through
    the same source, landmarks and split as training; (None, why) when the data
    cannot be read any more."""
    from slt_cli.data import load_source
    from slt_cli.data.corpus import open_corpus
    from slt_cli.data.preprocess import split_labels
    from slt_cli.data.sources import ReadOptions, is_corpus_spec

    data, seed = model.sidecar.config.data, model.sidecar.config.run.seed
    source, options = data.source, ReadOptions.of(data)
    try:
        corpus = is_corpus_spec(source)
        landmarks = model.preprocessing.landmarks
        raw = (open_corpus(source, landmarks, options=options) if corpus
               else load_source(source, landmarks=landmarks, options=options))
        labels = split_labels(raw.y, raw.signer, raw.split, data.val_fraction,
                              seed)
    except DataError as exc:
        return None, f"no held-out check: the checkpoint's data cannot be read ({exc.message})"
    name = "test" if (labels == "test").any() else "val"
    rows = np.flatnonzero(labels == name)[:limit]
    # A corpus is read from its cache, only the rows asked for.
    x, lengths = raw.padded(rows) if corpus else (raw.x[rows], raw.lengths[rows])
    sequences = tuple(np.ascontiguousarray(x[i, :lengths[i]], np.float32)
                      for i in range(len(lengths)))
    return Reference(split=name, sequences=sequences, joints=raw.joints), None


def _layout(model: LoadedModel, reference: Reference | None) -> tuple[int, int]:
    """(joints, channels) of the raw input: from the data, else from the network's width
    (and the landmark names the checkpoint records)."""
    if reference is not None and reference.sequences:
        joints, channels = reference.sequences[0].shape[1:]
        model.check_layout(joints, channels, "the checkpoint's own data")
        return int(joints), int(channels)
    fits = layouts(model.sidecar.model["in_features"], model.preprocessing)
    if model.preprocessing.joints is not None:
        fits = [(c, j) for c, j in fits if j == len(model.preprocessing.joints)]
    if len(fits) != 1:
        raise ExportError(f"cannot tell how many landmarks {model.name} takes without its data",
                          hint="Make the data it was trained on readable again "
                               f"({model.sidecar.config.data.source}).")
    channels, joints = fits[0]
    return joints, channels


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Exporters warn at length about things that do not apply here (tracer notes on
    shapes that are fixed after resampling, optional torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _torchscript(wrapper: SequenceClassifier, example: torch.Tensor) -> bytes:
    with _quiet_exporters(), torch.no_grad():
        traced = torch.jit.trace(wrapper, (example,))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _interruption(exc: BaseException) -> BaseException | None:
    """A Ctrl-C or SIGTERM (a BaseException that is no Exception) that ``exc`` wraps:
    torch.export turns what interrupts its tracing into errors of its own."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, Exception):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _onnx(wrapper: SequenceClassifier, example: torch.Tensor) -> bytes:
    frames = torch.export.Dim("frames", min=1)
    try:
        with _quiet_exporters():
            program = torch.onnx.export(wrapper, (example,), dynamo=True, verbose=False,
                                        input_names=[INPUT_NAME],
                                        output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=({0: frames},))
    except Exception as exc:  # the exporter raises many kinds; say which network failed
        interrupt = _interruption(exc)
        if interrupt is not None:  # Ctrl-C or SIGTERM while it traced, wrapped by it
            raise interrupt from None
        raise ExportError(f"torch.onnx could not export this network ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})",
                          hint="Try --format torchscript.") from None
    return program.model_proto.SerializeToString()


def _metadata(model: LoadedModel, fmt: str, blob: bytes, joints: int, channels: int,
              reference: Reference | None, parity: list[Parity]) -> dict[str, Any]:
    from slt_cli.data.landmarks import parse_joint
    from slt_cli.data.sources import find_source

    pre = model.preprocessing
    source = model.sidecar.config.data.source
    names = pre.joints or (reference.joints if reference else None)
    # Corpora, and .npz files with MediaPipe names, take the selection.
    kind = find_source(source)
    selected = kind is not None and (kind.corpus or (
        kind.kind == "npz" and bool(names) and None not in map(parse_joint, names)))
    layout = pre.layout
    cloud = "centre on the mean landmark and scale to unit spread (NaN ignored)"
    if layout is None:
        normalise = [cloud]
    elif layout.shapes:
        shapes = layout.prepared_joints[len(layout.joints):]
        normalise = [cloud, f"then each hand's points but its wrist, relative to its wrist in "
                     f"every frame and divided by its mean wrist-to-knuckle (landmark 9) "
                     f"distance, appended as {len(shapes)} landmarks, {shapes[0]} to "
                     f"{shapes[-1]}" if shapes else "no hands"]
    else:
        normalise = ["body (all but hands and face): origin at the shoulders' midpoint, unit "
                     "the shoulder width, both averaged over the frames with both shoulders "
                     "(else the body points' mean and RMS spread)",
                     "each hand: relative to its wrist, divided by its mean wrist-to-knuckle "
                     "(landmark 9) distance; its wrist in the body frame appended as "
                     + ", ".join(hand.position_name for hand in layout.hands)
                     if layout.hands else "no hands",
                     "face: relative to its centre in each frame, divided by its RMS size",
                     "distances in the x-y plane; NaN ignored and kept"]
    return {
        "format": fmt,
        "file_sha256": hashlib.sha256(blob).hexdigest(),
        "checkpoint": model.name,
        "checkpoint_weights_sha256": model.sidecar.weights_sha256,
        "slt_version": __version__,
        "classes": list(model.classes),
        "input": {"name": INPUT_NAME, "shape": ["frames", joints, channels],
                  "dtype": "float32",
                  "missing": "NaN (a recorder's zero-filled landmarks: set them to NaN first)",
                  "joints": list(names) if names else None},
        "outputs": {"logits": "float32 (K,), in the order of classes",
                    "probabilities": "float32 (K,), softmax of the logits"},
        "preprocessing": {"inside_model": True, "frames": pre.frames, "motion": pre.motion,
                          # the Holistic selection, where the data was MediaPipe's
                          "landmarks": pre.landmarks if selected else None,
                          "normalise": pre.normalise, "coordinates": pre.coordinates,
                          "data_source": source,
                          "steps": [*(["x and y of each landmark: a third coordinate (z) "
                                       "is dropped"] if pre.channels < channels else []),
                                    *normalise,
                                    f"resample linearly to {pre.frames} frames",
                                    *(["dominant hand: a clip whose left hand is seen in more "
                                       "frames than its right is mirrored (x negated, "
                                       "left/right landmarks swapped)"]
                                      if model.classifier.right_handed else []),
                                    "features: coordinates, " + ("frame differences, "
                                                                 if pre.motion else "")
                                    + "presence flags (NaN -> 0)",
                                    *(["mirror averaging: the network also scores the clip's "
                                       "left/right mirror (x negated, left/right landmarks "
                                       "swapped); logits are the log of the two passes' mean "
                                       "probabilities"] if model.classifier.mirrored else [])],
                          "mirror_average": model.classifier.mirrored,
                          "dominant_hand": pre.dominant_hand},
        "parity": [asdict(p) for p in parity],
    }
