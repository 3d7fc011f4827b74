"""Where ``slt extract`` writes: the tutorial's frame folders, or one ``.npz``.

Both write each clip whole or not at all, so a run stopped at any point (Ctrl-C,
SIGTERM, SIGKILL) leaves only finished clips, and the next run skips them:

- ``FrameFolders``: ``OUT/<sign>/<clip>/<frame>.npy`` (float32 vectors of 1662 values,
  zeros for a part not detected), each clip written into a hidden temporary folder and
  renamed into place; ``OUT/layout.json`` states the order of the parts (and, for
  ``<signer>/<sign>/<clip>``, that signers are the top folders), so ``mediapipe:OUT``
  is read without ``--layout``.
- ``NpzFile``: each clip's frames kept in ``.OUT.npz.slt-parts/`` as they finish, and
  ``OUT.npz`` (x ``(N, T, 543, 3)`` float32 NaN = missing, y, classes, lengths, joints
  named as MediaPipe's, signer) written from them once every clip is done; the parts
  are removed then.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from slt_cli import __version__
from slt_cli.common.files import (
    abandoned_temp_folders,
    abandoned_temps,
    create_new,
    fsync_directory,
    load_json,
    open_regular,
    temp_path,
)
from slt_cli.data.mediapipe import LAYOUT_FILE, LAYOUT_FORMAT
from slt_cli.errors import DataError, SltError, StorageError, UnreadableFile
from slt_cli.store.checkpoints import atomic_write_bytes
from slt_cli.video.backend import FRAME_VALUES, LAYOUT, MODEL_COMPLEXITY, named_landmarks
from slt_cli.video.extract import ClipJob, Plan

FRAME_NAME = re.compile(r"[0-9]+\.npy")


def _layout_record(signer_from: str) -> dict[str, object]:
    return {"format": LAYOUT_FORMAT, "schema_version": 1, "layout": LAYOUT,
            "values_per_frame": FRAME_VALUES, "signer_from": signer_from,
            "written_by": f"slt extract {__version__}",
            "extractor": {"name": "mediapipe holistic", "model_complexity": MODEL_COMPLEXITY,
                          "static_image_mode": False, "refine_face_landmarks": False}}


def _json_bytes(record: dict[str, object]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class FrameFolders:
    """The tutorial's frame folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self, plan: Plan) -> None:
        """Refuse a root slt may not write into; clean what a killed run left; write
        ``layout.json``.

        Raises:
            SltError: when the root is a link or a file, or holds files slt extract did
                not write (no layout.json of its own), or one of another layout.
        """
        root, layout = self.root, self.root / LAYOUT_FILE
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            raise SltError(f"{root} is {'a symbolic link' if root.is_symlink() else 'a file'}"
                           "; --out must be a folder slt extract writes",
                           hint="Give a new folder, or one an earlier slt extract wrote.")
        if root.is_dir() and any(root.iterdir()):
            record = self._record(layout)
            if record is None:
                raise SltError(f"{root} holds files slt extract did not write (no "
                               f"{LAYOUT_FILE} of its own); nothing was written",
                               hint="Give a new or empty folder.")
            if record.get("signer_from", "csv") != plan.signer_from:
                raise SltError(f"{root} holds clips of another layout (signers "
                               f"{record.get('signer_from')!r}, these {plan.signer_from!r})",
                               hint="Give another --out folder.")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.writing(root, exc, elsewhere="with another --out") from None
        parents = {(root / job.key).parent for job in plan.clips}
        for parent in sorted(parents):
            for tmp in abandoned_temp_folders(parent):
                _remove_frames(tmp)
        atomic_write_bytes(layout, _json_bytes(_layout_record(plan.signer_from)))

    @staticmethod
    def _record(path: Path) -> dict[str, object] | None:
        if not path.is_file() or path.is_symlink():
            return None
        try:
            record = load_json(path)
        except UnreadableFile:
            return None
        return record if isinstance(record, dict) and record.get("format") == LAYOUT_FORMAT \
            else None

    def done(self, job: ClipJob) -> bool:
        folder = self.root / job.key
        return folder.is_dir() and not folder.is_symlink()

    def write(self, job: ClipJob, frames: np.ndarray) -> None:
        """The clip's frames into a hidden temporary folder, then renamed into place.

        Raises:
            StorageError: when the folder cannot be written.
        """
        final = self.root / job.key
        tmp = temp_path(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(tmp)
        except OSError as exc:
            raise StorageError.writing(final, exc, elsewhere="with another --out") from None
        try:
            for number, vector in enumerate(frames):
                with os.fdopen(create_new(tmp / f"{number}.npy"), "wb") as handle:
                    handle.write(_npy_bytes(vector.astype(np.float32)))
                    handle.flush()
                    os.fsync(handle.fileno())
            fsync_directory(tmp)
            os.rename(tmp, final)  # a folder that appeared meanwhile is an error, not replaced
            fsync_directory(final.parent)
        except OSError as exc:
            _remove_frames(tmp)
            raise StorageError.writing(final, exc, elsewhere="with another --out") from None
        except BaseException:
            _remove_frames(tmp)
            raise

    def finish(self, plan: Plan, failed: int) -> None:
        """Nothing is left to do: every clip went into place as it finished."""


def _remove_frames(folder: Path) -> None:
    """Remove a temporary clip folder slt made: its ``<n>.npy`` files, then the folder
    (left in place if anything else is in it)."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for entry in folder.iterdir():
        if FRAME_NAME.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


class NpzFile:
    """One ``.npz`` of every clip, written once all of them are extracted."""

    def __init__(self, path: Path, *, overwrite: bool) -> None:
        self.path, self.overwrite = path, overwrite
        self.parts = path.with_name(f".{path.name}.slt-parts")

    def _part(self, job: ClipJob) -> Path:
        return self.parts.joinpath(*job.key.split("/")).with_suffix(".npy")

    def prepare(self, plan: Plan) -> None:
        """Raises: SltError for an OUT that exists (without ``overwrite``), a link, a
        FIFO or a folder, or a parts folder that is not a folder."""
        from slt_cli.data.summary import check_output

        check_output(self.path, overwrite=self.overwrite)
        if self.parts.is_symlink() or (self.parts.exists() and not self.parts.is_dir()):
            raise SltError(f"{self.parts} is not a folder; slt extract keeps the clips "
                           "done so far there", hint="Move it away, or give another --out.")
        for job in plan.clips:
            for tmp in abandoned_temps(self._part(job).parent, self._part(job).name):
                tmp.unlink(missing_ok=True)

    def done(self, job: ClipJob) -> bool:
        part = self._part(job)
        return part.is_file() and not part.is_symlink()

    def write(self, job: ClipJob, frames: np.ndarray) -> None:
        atomic_write_bytes(self._part(job), _npy_bytes(frames.astype(np.float32)))

    def finish(self, plan: Plan, failed: int) -> None:
        """Write the ``.npz`` from the parts, then remove them; with clips that could not
        be decoded, keep the parts and write nothing (a rerun writes it).

        Raises:
            DataError: when a part is damaged.
        """
        from slt_cli.data.summary import write_npz

        if failed:
            return
        clips = [(job, self._read_part(job)) for job in plan.clips]
        classes = tuple(sorted({job.sign for job in plan.clips}))
        longest = max(len(frames) for _, frames in clips)
        names: tuple[str, ...] = named_landmarks(clips[0][1][:1])[1]

        def blocks():
            for _, frames in clips:
                block = np.full((1, longest, len(names), 3), np.nan, np.float32)
                block[0, :len(frames)] = named_landmarks(frames)[0]
                yield block

        arrays: dict[str, object] = {
            "y": np.asarray([classes.index(job.sign) for job, _ in clips], np.int64),
            "classes": np.asarray(classes), "joints": np.asarray(names),
            "lengths": np.asarray([len(frames) for _, frames in clips], np.int64)}
        if plan.signer_from == "top":
            arrays["signer"] = np.asarray([job.signer for job, _ in clips])
        write_npz(self.path, (len(clips), longest, len(names), 3), blocks(), arrays)
        for job in plan.clips:
            self._part(job).unlink(missing_ok=True)
        for folder in sorted({p for job in plan.clips for p in self._part(job).parents
                              if self.parts in (p, *p.parents)}, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):  # only once empty: others' files stay
                folder.rmdir()

    def _read_part(self, job: ClipJob) -> np.ndarray:
        path = self._part(job)
        damaged = f"{path}: a damaged part"
        hint = f"Remove it; a rerun extracts {job.source} again."
        try:
            with open_regular(path) as handle:
                size = os.fstat(handle.fileno()).st_size
                version = np.lib.format.read_magic(handle)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)(handle)
                if (dtype != np.float32 or len(shape) != 2 or shape[1] != FRAME_VALUES
                        or not shape[0] or shape[0] * FRAME_VALUES * 4 > size):
                    raise DataError(f"{damaged} ({dtype} {tuple(shape)})", hint=hint)
                handle.seek(0)
                frames = np.lib.format.read_array(handle, allow_pickle=False)
        except (UnreadableFile, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{damaged} ({exc})", hint=hint) from None
        if not np.isfinite(frames).all():
            raise DataError(f"{damaged} (values that are not finite)", hint=hint)
        return frames



