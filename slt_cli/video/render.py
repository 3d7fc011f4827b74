"""What ``slt extract`` and ``slt live`` print: the extraction table and summary line,
the line of a newly recognised sign and the frames-per-second report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from slt_cli.show.console import _printable as printable
from slt_cli.show.console import duration


def extraction_table(results: Sequence[Any]) -> Table:
    """``slt extract``: per clip extracted now, its frames, the share of them with each
    part, seconds and frames per second (clips done before are only counted)."""
    table = Table(title="landmarks extracted (share of frames with each part)")
    for column in ("clip", "frames", "pose", "face", "left hand", "right hand", "seconds",
                   "frames/s"):
        table.add_column(column, justify="left" if column == "clip" else "right")
    for result in results:
        if result.skipped:
            continue
        if result.error is not None:
            table.add_row(escape(result.job.key), "[red]cannot be decoded[/]", *["–"] * 6)
            continue
        shares = result.shares()
        table.add_row(escape(result.job.key), str(result.frames),
                      *(f"{shares[part]:.2f}" for part in ("pose", "face", "left_hand",
                                                          "right_hand")),
                      f"{result.seconds:.1f}", f"{result.frames / max(result.seconds, 1e-9):.1f}")
    return table


def extraction_summary(results: Sequence[Any], out: Any, seconds: float) -> str:
    """``slt extract``'s last line: clips and frames extracted, how fast, what was done."""
    done = [r for r in results if not r.skipped and r.error is None]
    frames = sum(r.frames for r in done)
    before = sum(r.skipped for r in results)
    return (f"extracted {len(done)} clip(s), {frames:,} frames, in {duration(seconds)} "
            f"({frames / max(seconds, 1e-9):.1f} frames/s) into {out}"
            + (f"; {before} clip(s) were there already" if before else ""))


def live_line(step: Any) -> str:
    """``slt live``: the line printed when a sign is newly recognised."""
    return (f"{step.seconds:8.2f}s  frame {step.frame:>6}  {printable(step.sign)}  "
            f"{step.top[0][1]:.3f}")


def live_summary(timing: Any, written: Sequence[Any]) -> str:
    """``slt live``'s last line: frames, frames per second and where the time went."""
    per = 1000 / max(timing.frames, 1)
    return (f"{timing.frames:,} frames in {duration(timing.seconds)}: {timing.fps:.1f} "
            f"frames/s (landmarks {timing.landmarks * per:.0f} ms, model "
            f"{timing.model * per:.1f} ms per frame)"
            + (f"; wrote {', '.join(map(str, written))}" if written else ""))
