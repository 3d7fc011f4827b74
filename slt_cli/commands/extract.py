"""``slt extract``: MediaPipe Holistic landmarks from video clips into frame folders or
an ``.npz``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands.options import Json
from slt_cli.errors import DataError
from slt_cli.show import console


def extract(
    source: Annotated[Path, typer.Argument(
        help="A video file, or a folder of clips: CLIP.mp4, SIGN/CLIP.mp4 or "
             "SIGNER/SIGN/CLIP.mp4 (the folders name the classes and signers).",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", help="A folder for the frame folders (SIGN/CLIP/FRAME.npy and "
        "layout.json, read by mediapipe:OUT), or a .npz file.", show_default=False)],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Clips extracted at once.")] = 1,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace OUT when it is an existing .npz file.")] = False,
    json: Json = False,
) -> None:
    """Extract MediaPipe Holistic landmarks (pose, face, both hands) from video clips.

    Clips already in OUT are skipped, so a stopped run carries on; a clip that cannot be
    decoded is named and the others go on. Needs slt[video].
    """
    from slt_cli.show.progress import RichReporter
    from slt_cli.video import render
    from slt_cli.video.backend import load_backend
    from slt_cli.video.extract import extract_clips, plan_clips
    from slt_cli.video.outputs import FrameFolders, NpzFile

    backend = load_backend("slt extract (MediaPipe Holistic)")
    plan = plan_clips(source)
    output = NpzFile(out, overwrite=overwrite) if out.suffix == ".npz" else FrameFolders(out)
    reporter, started = RichReporter(), time.monotonic()
    with reporter.running():
        results = extract_clips(plan, output, backend, jobs=jobs, reporter=reporter)
    if json:
        console.print_json([result.to_dict() for result in results])
    else:
        console.out.print(render.extraction_table(results))
    console.err.print(render.extraction_summary(results, out, time.monotonic() - started),
                      highlight=False)
    failed = [r for r in results if r.error is not None]
    if failed:
        kept = (f"{out} is written once every clip is extracted" if out.suffix == ".npz"
                else f"the others are in {out}")
        raise DataError(f"{len(failed)} of {len(results)} clip(s) could not be decoded "
                        f"(named above); {kept}",
                        hint="Fix or remove them and run the same command again: the clips "
                             "done are skipped.")
