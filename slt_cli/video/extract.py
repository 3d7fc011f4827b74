"""``slt extract``: MediaPipe Holistic landmarks from video clips, into frame folders or
an ``.npz`` (``outputs.py``).

Clips are found in one of three layouts, each clip's place in the output mirroring it:

- ``VIDEO`` or ``DIR/<clip>.mp4``: a clip on its own, its class its name
  (``OUT/<clip>/<clip>/``);
- ``DIR/<sign>/<clip>.mp4``: the folder is the class (``OUT/<sign>/<clip>/``);
- ``DIR/<signer>/<sign>/<clip>.mp4``: one folder per signer (``OUT/<signer>/<sign>/<clip>/``,
  read back with one signer per top folder).

Each clip gets a fresh detector (Holistic tracks from frame to frame); ``jobs`` clips
run at once in threads (MediaPipe and OpenCV work outside Python's lock). A clip
already in the output is skipped, so a stopped run carries on where it was; a clip that
cannot be decoded is named once and the others go on. Progress goes to a ``Reporter``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from slt_cli.common.reporting import Reporter
from slt_cli.data.inputs import is_video
from slt_cli.errors import DataError
from slt_cli.video.backend import Backend, VideoError, detected, read_clip

MAX_CLIPS = 100_000
LAYOUTS = "VIDEO, DIR/<clip>.mp4, DIR/<sign>/<clip>.mp4 or DIR/<signer>/<sign>/<clip>.mp4"


@dataclass(frozen=True)
class ClipJob:
    """One clip to extract and where it goes."""

    source: Path
    key: str  # its sequence folder, relative to the output: "<sign>/<clip>", ...
    sign: str
    signer: str | None  # the top folder, in the <signer>/<sign>/<clip> layout


@dataclass(frozen=True)
class Plan:
    clips: tuple[ClipJob, ...]
    signer_from: str  # "top" for <signer>/<sign>/<clip>, else "csv" (no signers)


@dataclass(frozen=True)
class ClipResult:
    """What one clip gave: frames read, frames with each part, seconds; or why not."""

    job: ClipJob
    frames: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # reading and detecting its frames
    skipped: bool = False  # already in the output
    error: str | None = None  # could not be decoded

    @property
    def status(self) -> str:
        return ("cannot be decoded" if self.error is not None else "done before"
                if self.skipped else "extracted")

    def shares(self) -> dict[str, float]:
        """Per part, the share of the clip's frames in which it was found."""
        return {part: round(n / self.frames, 4) for part, n in self.seen.items()} \
            if self.frames else {}

    def to_dict(self) -> dict[str, object]:
        return {"clip": str(self.job.source), "output": self.job.key, "sign": self.job.sign,
                "signer": self.job.signer, "status": self.status, "error": self.error,
                "frames": self.frames, "detected": self.shares(),
                "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames / self.seconds, 2)
                if self.seconds > 0 else None}


class Output(Protocol):
    """Where extracted clips go (``outputs.FrameFolders``, ``outputs.NpzFile``)."""

    def prepare(self, plan: Plan) -> None: ...
    def done(self, job: ClipJob) -> bool: ...
    def write(self, job: ClipJob, frames: np.ndarray) -> None: ...
    def finish(self, plan: Plan, failed: int) -> None: ...


def plan_clips(path: Path) -> Plan:
    """The clips of ``path`` (a video file, or a folder in one of the layouts), sorted.

    Raises:
        DataError: for a path that is not a clip or holds none, clips at mixed depths,
            or two clips that would land in one folder.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not path.is_dir():
        if not is_video(path):
            raise DataError(f"{path}: not a video file (by its name)",
                            hint=f"Give {LAYOUTS}.")
        return Plan((ClipJob(path, f"{path.stem}/{path.stem}", path.stem, None),), "csv")
    found = _walk(path)
    if not found:
        raise DataError(f"{path}: holds no video clip", hint=f"Give {LAYOUTS}.")
    depths = {len(rel) for rel in found}
    if len(depths) > 1:
        shallow, deep = (next("/".join(r) for r in found if len(r) == d)
                         for d in (min(depths), max(depths)))
        raise DataError(f"{path}: clips at different depths ({shallow}, {deep})",
                        hint=f"Keep one layout: {LAYOUTS}.")
    jobs, keys = [], {}
    for rel in found:
        stem = Path(rel[-1]).stem
        folders = (stem,) if len(rel) == 1 else rel[:-1]
        key = "/".join((*folders, stem))
        if key.casefold() in keys:
            raise DataError(f"{path}: {keys[key.casefold()]} and {'/'.join(rel)} would both be "
                            f"extracted to {key}", hint="Rename one of them.")
        keys[key.casefold()] = "/".join(rel)
        jobs.append(ClipJob(path.joinpath(*rel), key, folders[-1],
                            rel[0] if len(rel) == 3 else None))
    return Plan(tuple(jobs), "top" if depths == {3} else "csv")


def _walk(root: Path) -> list[tuple[str, ...]]:
    """Relative paths (as parts) of the clips up to three folders down; hidden entries
    and links skipped; a clip deeper down is an error."""
    found: list[tuple[str, ...]] = []

    def visit(folder: Path, rel: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot be listed ({exc.strerror or exc})") from None
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            here = (*rel, entry.name)
            if entry.is_dir():
                visit(Path(entry.path), here)
            elif entry.is_file() and is_video(Path(entry.name)):
                if len(here) > 3:
                    raise DataError(f"{root}: {'/'.join(here)} is too deep",
                                    hint=f"Keep one layout: {LAYOUTS}.")
                found.append(here)
                if len(found) > MAX_CLIPS:
                    raise DataError(f"{root}: holds more than {MAX_CLIPS:,} clips",
                                    hint="Extract it folder by folder.")

    visit(root, ())
    return found


def extract_clips(plan: Plan, output: Output, backend: Backend, *, jobs: int = 1,
                  reporter: Reporter | None = None) -> list[ClipResult]:
    """Extract every clip of ``plan`` that ``output`` does not hold yet.

    Returns:
        One result per clip, in the plan's order.
    """
    reporter = reporter or Reporter()
    lock, stop = threading.Lock(), threading.Event()
    output.prepare(plan)
    results: dict[str, ClipResult] = {
        job.key: ClipResult(job, skipped=True) for job in plan.clips if output.done(job)}
    todo = [job for job in plan.clips if job.key not in results]
    total, finished = len(todo), [0]

    def report(**event: object) -> None:
        with lock:
            reporter.task_progress(**event)  # type: ignore[arg-type]

    def one(job: ClipJob) -> ClipResult:
        clip = None
        try:
            clip = backend.open_clip(job.source)
            detector = backend.new_detector()
            started = time.monotonic()  # the frames' time: not the detector's start-up
            try:
                frames = read_clip(clip, detector, stop=stop.is_set, progress=lambda done, of:
                                   report(task=job.key, done=done, total=of + 1, unit="frames"))
            finally:
                detector.close()
        except VideoError as exc:
            result = ClipResult(job, error=exc.message)
            with lock:
                reporter.note(f"skipped {job.source}: cannot be decoded ({exc.message})")
        else:
            report(task=job.key, done=len(frames), total=len(frames), unit="frames")
            output.write(job, frames)
            result = ClipResult(job, frames=len(frames), seen=detected(frames),
                                seconds=time.monotonic() - started)
        finally:
            if clip is not None:
                clip.close()
        with lock:
            finished[0] += 1
            reporter.task_progress(task="clips", done=finished[0], total=total, unit="clips")
        return result

    if todo:
        report(task="clips", done=0, total=total, unit="clips")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, job) for job in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                result = future.result()
                results[result.job.key] = result
        except BaseException:  # Ctrl-C, SIGTERM or a fault: stop the others at their next frame
            stop.set()
            for future in futures:
                future.cancel()
            raise
    output.finish(plan, sum(r.error is not None for r in results.values()))
    return [results[job.key] for job in plan.clips]
