"""``slt live``: recognise signs from a camera or a clip, as they are made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slt_cli.commands.options import CheckpointDir, Device, Model
from slt_cli.commands.shared import check_device, checkpoint_folder
from slt_cli.common.files import check_writable_output
from slt_cli.show import console


def live(
    model: Model,
    source: Annotated[str, typer.Option(
        "--source", help="A camera's number (0: the first) or a video file.")] = "0",
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Smoothed probability at which a sign is recognised.")] = 0.5,
    smooth: Annotated[int, typer.Option(
        "--smooth", min=1, help="Windows whose probabilities are averaged.")] = 5,
    window: Annotated[int | None, typer.Option(
        "--window", min=1, help="Frames the model sees at once [default: the checkpoint's "
        "frames].", show_default=False)] = None,
    max_frames: Annotated[int | None, typer.Option(
        "--max-frames", min=1, help="Stop after this many frames [default: the clip's end, "
        "or Ctrl-C].", show_default=False)] = None,
    jsonl: Annotated[Path | None, typer.Option(
        "--jsonl", help="Also write one JSON object per frame to this file.",
        show_default=False)] = None,
    video: Annotated[Path | None, typer.Option(
        "--video", help="Also write the frames, landmarks and recognised sign drawn, to this "
        ".mp4 or .avi file.", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the --jsonl or --video file if it exists.")] = False,
    checkpoint_dir: CheckpointDir = None,
    device: Device = "auto",
) -> None:
    """Recognise signs from a camera or a video file: a sliding window of the checkpoint's
    frames, smoothed, printed as the recognised sign changes; frames per second at the end.

    Headless: nothing is shown in a window. Ctrl-C ends a camera session (the files are
    kept). Needs slt[video].
    """
    from slt_cli.store.checkpoints import read_sidecar

    check_device(device)
    folder = checkpoint_folder(checkpoint_dir)
    read_sidecar(folder, model)
    for path in (p for p in (jsonl, video) if p is not None):
        check_writable_output(path, replace=force)
    from slt_cli.video.backend import load_backend

    backend = load_backend("slt live (MediaPipe Holistic)")
    from slt_cli.run.devices import resolve_device
    from slt_cli.use.inference import load_model
    from slt_cli.video import render
    from slt_cli.video.live import LiveTiming, live_steps
    from slt_cli.video.sinks import AnnotatedVideo, JsonLines

    loaded = load_model(folder, model, resolve_device(device))
    clip = backend.open_clip(int(source) if source.isdigit() else Path(source))
    sinks = ([JsonLines(jsonl)] if jsonl else []) + ([AnnotatedVideo(video, clip.fps)]
                                                     if video else [])
    timing, detector = LiveTiming(), backend.new_detector()
    try:
        steps = live_steps(loaded, clip, detector, window=window or loaded.preprocessing.frames,
                           smooth=smooth, threshold=threshold, max_frames=max_frames,
                           timing=timing)
        try:
            for step in steps:
                for sink in sinks:
                    sink.write(step)
                if step.changed:
                    console.out.print(render.live_line(step), highlight=False,
                                      markup=False)
        except KeyboardInterrupt:
            console.err.print("stopped (Ctrl-C)", highlight=False)
        for sink in sinks:
            sink.commit()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        detector.close()
        clip.close()
    console.err.print(render.live_summary(timing, [p for p in (jsonl, video) if p]),
                      highlight=False)
