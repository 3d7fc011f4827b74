"""Everything a person sees: tables, JSON, errors (the live training display is
``progress.RichReporter``).

Data (tables, ``--json``) goes to stdout; progress, notes and errors to stderr,
so ``slt list --json | jq`` always works.
"""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader closed the pipe (``slt list | head``): let the CLI's boundary end
        the command quietly (rich would exit with status 1 itself)."""
        raise BrokenPipeError(errno.EPIPE, "the reader closed the pipe")


def _console(stderr: bool) -> Console:
    """A console that, when piped or logged, neither wraps lines nor crops tables."""
    console = _Console(stderr=stderr, soft_wrap=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def print_json(value: Any) -> None:
    """Plain JSON on stdout (no colour codes, whatever the terminal); a number that is
    not finite (NaN, infinity) becomes ``null``, since JSON has no such numbers."""
    if not out.quiet:
        print(json.dumps(finite_json(value), indent=2, sort_keys=True, allow_nan=False))


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


_error_prefix = ""  # names the process in errors of torchrun's ranks other than 0


def quiet_except_errors(prefix: str) -> None:
    """Print nothing but errors, each led by ``prefix`` (torchrun's other ranks)."""
    global _error_prefix
    out.quiet = err.quiet = True
    _error_prefix = prefix


def print_error(message: str, hint: str | None = None) -> None:
    target = err
    if _error_prefix:
        target = Console(stderr=True, soft_wrap=True)
    # Escaped: a message may hold brackets, e.g. a path or pip install 'slt[plot]'.
    target.print(f"{_error_prefix}[bold red]error:[/] {escape(message)}", highlight=False,
                 markup=True)
    if hint:
        target.print(f"{_error_prefix}[dim]hint:[/] {escape(hint)}", highlight=False)


def arrow(change: float | None, higher_is_better: bool, digits: int = 4) -> str:
    """``▲ +0.0312`` in green when better, ``▼ -0.0100`` in red when worse."""
    if change is None:
        return "[dim]–[/]"
    if change == 0:
        return f"= {change:+.{digits}f}"
    better = (change > 0) == higher_is_better
    symbol = "▲" if change > 0 else "▼"
    return f"[{'green' if better else 'red'}]{symbol} {change:+.{digits}f}[/]"


def duration(seconds: float) -> str:
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)}m{secs:04.1f}s" if minutes else f"{secs:.1f}s"


def stage_table(results: Sequence[Any], title: str) -> Table:
    """The end-of-run summary: one row per stage, with the change it brought."""
    table = Table(title=title, title_justify="left")
    for column in ("stage", "name", "val loss", "val acc", "Δ acc", "best epoch", "time",
                   "checkpoint"):
        table.add_column(column, justify="right" if column.startswith(("val", "best")) else "left")
    for result in results:
        table.add_row(str(result.stage_idx), result.name, f"{result.val_loss:.4f}",
                      f"{result.val_accuracy:.4f}", arrow(result.gain, higher_is_better=True),
                      best_epoch(result.best_epoch, result.epochs, result.epochs_run),
                      duration(result.training_time), result.checkpoint)
    return table


def best_epoch(epoch: int | None, epochs: int | None = None,
               epochs_run: int | None = None) -> str:
    """``7/15``; ``0/15 start kept`` when no epoch beat the starting weights; with
    ``, stopped at 9`` when patience ended the stage early."""
    if epoch is None:
        return "–"
    text = f"{epoch}/{epochs}" if epochs else str(epoch)
    if epoch == 0:
        text += " [yellow]start kept[/]"
    if epochs_run is not None and epochs and epochs_run < epochs:
        text += f", stopped at {epochs_run}"
    return text


def folds_table(result: Any) -> Table:
    """``slt train --folds K``: per stage, the best validation accuracy and loss across
    folds (mean ± sample standard deviation, min, max, and each fold's value)."""
    table = Table(title=f"{result.folds}-fold cross-validation (summary in "
                        f"{result.summary_path})", title_justify="left")
    people = any(row.people for row in result.stages)
    columns = ["stage", "name", "folds", "val acc mean ± std", "min", "max",
               "val loss mean ± std", "per fold val acc"]
    if people:
        columns += ["pooled (people)", "worst person"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "name") else "right")
    for row in result.stages:
        accuracy, loss = row.val_accuracy, row.val_loss
        cells = [str(row.stage_idx), row.name, f"{len(row.folds)}/{result.folds}",
                 f"{accuracy.mean:.4f} ± {accuracy.std:.4f}", f"{accuracy.min:.4f}",
                 f"{accuracy.max:.4f}", f"{loss.mean:.4f} ± {loss.std:.4f}",
                 " ".join(f"{value:.3f}" for value in accuracy.values)]
        if people:
            worst = row.worst_person
            pooled = "–" if row.pooled_accuracy is None else f"{row.pooled_accuracy:.4f}"
            cells += [f"{pooled} ({len(row.people)})",
                      f"{escape(worst[0])} {worst[1]:.3f}" if worst else "–"]
        table.add_row(*cells)
    return table


CHECKPOINT_COLUMNS = ("name", "stage", "val loss", "val acc", "stage time", "parent",
                      "created")


def checkpoint_table(records: Sequence[Mapping[str, Any]], folder: str) -> Table:
    table = Table(title=f"checkpoints in {folder}", title_justify="left")
    for column in CHECKPOINT_COLUMNS:
        table.add_column(column, justify="right" if column.startswith("val") else "left")
    for r in records:
        table.add_row(*checkpoint_cells(r))
    return table


def checkpoint_lines(records: Sequence[Mapping[str, Any]], folder: str) -> str:
    """``checkpoint_table``'s title, columns and cells as plain text aligned with spaces:
    for more rows than a screen holds, where measuring a rich table costs seconds."""
    rows = [CHECKPOINT_COLUMNS, *(tuple(map(_printable, checkpoint_cells(r))) for r in records)]
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    right = [column.startswith("val") for column in CHECKPOINT_COLUMNS]
    lines = [f"checkpoints in {_printable(folder)}"]
    lines += ["  ".join(cell.rjust(width) if flush else cell.ljust(width)
                        for cell, width, flush in zip(row, widths, right, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def checkpoint_cells(r: Mapping[str, Any]) -> tuple[str, ...]:
    """One listed row's cells under ``CHECKPOINT_COLUMNS``."""
    return (r["name"], f"{r.get('stage_idx')} {r.get('stage_name')}",
            _number(r.get("val_loss")), _number(r.get("val_accuracy")),
            duration(stage_seconds(r)),
            _teachers(r) if r.get("teachers") else r.get("parent") or "–",
            str(r.get("created_at", ""))[:19].replace("T", " "))


def _teachers(row: Mapping[str, Any]) -> str:
    """A student's teachers, each since archived one with where it went."""
    moved = row.get("teachers_moved") or {}
    shown = [name if name not in moved else
             f"{name} (now in {moved[name].rpartition('/')[0]})" if moved[name]
             else f"{name} (replaced since)" for name in row["teachers"]]
    return f"teachers: {', '.join(shown)}"


def stage_seconds(row: Mapping[str, Any]) -> float:
    """A listed checkpoint's stage time, as ``analyze`` shows it: the whole stage's
    (``stage_time``, which a best checkpoint records when its stage ends), else its
    ``training_time`` (end weights, older sidecars, students: the same)."""
    seconds = row.get("stage_time")
    return float(seconds if seconds is not None else row.get("training_time") or 0.0)


def print_plain(text: str) -> None:
    """Plain text on stdout (what ``--json`` and plain listings write)."""
    if not out.quiet:
        print(text)


def _printable(text: str) -> str:
    """``text`` with each control character shown as ``?``: a sidecar's names are the
    user's to choose, and must not move the cursor or recolour the terminal."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def analysis_table(analysis: Any) -> Table:
    table = Table(title="stage-by-stage analysis (best checkpoint of each stage)",
                  title_justify="left")
    for column in ("stage", "name", "val loss", "Δ loss", "val acc", "Δ acc", "best epoch",
                   "time to best", "stage time"):
        table.add_column(column, justify="left" if column in ("stage", "name") else "right")
    for row in analysis.stages:
        table.add_row(str(row.stage_idx), row.stage_name, f"{row.val_loss:.4f}",
                      arrow(row.loss_change, higher_is_better=False), f"{row.val_accuracy:.4f}",
                      arrow(row.accuracy_change, higher_is_better=True),
                      best_epoch(row.best_epoch), duration(row.training_time),
                      "–" if row.stage_time is None else duration(row.stage_time))
    return table


def evaluation_table(result: Any) -> Table:
    table = Table(title=f"{result.checkpoint} on the {result.split} split of {result.source} "
                        f"({result.count} sequences)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("loss", f"{result.loss:.4f}")
    table.add_row("accuracy", f"{result.accuracy:.4f}")
    if len(result.classes or result.per_class) > 5:  # of 5 classes or fewer it is always 1
        table.add_row("top-5 accuracy", f"{result.top5_accuracy:.4f}")
    worst = sorted(result.per_class.items(), key=lambda item: item[1])[:5]
    table.add_row("weakest classes", ", ".join(f"{name} {acc:.2f}" for name, acc in worst))
    if result.per_signer:
        people = sorted(result.per_signer.items(), key=lambda item: item[1])
        table.add_row("signers", f"{len(people)}, mean accuracy "
                      f"{sum(acc for _, acc in people) / len(people):.4f}")
        table.add_row("weakest signers", ", ".join(f"{who} {acc:.2f}" for who, acc in people[:5]))
    return table


def group_table(result: Any, by: str) -> Table:
    """``slt evaluate --by signer|class``: accuracy of each signer (or class), the
    weakest first, and the mean over them."""
    rows = result.by_group(by)
    mean = sum(acc for _, _, acc in rows) / max(1, len(rows))
    # a short title: rich wraps a title to the width of the table's three columns
    table = Table(title=f"accuracy by {by}, weakest first", title_justify="left")
    for column in (by, "sequences", "accuracy"):
        table.add_column(column, justify="left" if column == by else "right")
    for i, (name, count, acc) in enumerate(rows):
        mark = " ← worst" if i == 0 and len(rows) > 1 else ""
        table.add_row(name, f"{count:,}", f"{acc:.4f}{mark}", end_section=i == len(rows) - 1)
    plural = {"class": "classes"}.get(by, f"{by}s")
    table.add_row(f"mean of {len(rows)} {plural if len(rows) != 1 else by}",
                  f"{sum(count for _, count, _ in rows):,}", f"{mean:.4f}")
    return table


def confusion_table(pairs: Sequence[Any]) -> Table:
    """``slt evaluate``: the most-confused (true, predicted) pairs, most sequences first."""
    table = Table(title="most confused (true → predicted)", title_justify="left")
    for column in ("true class", "predicted as", "sequences", "share of true class"):
        table.add_column(column, justify="left" if column in ("true class", "predicted as")
                         else "right")
    for pair in pairs:
        table.add_row(pair.true, pair.predicted, str(pair.count), f"{pair.share:.1%}")
    return table


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def _spread(values: dict[str, float]) -> str:
    return f"min {values['min']:,} · median {values['median']:g} · max {values['max']:,}"


def summary_table(summary: Any) -> Table:
    """``slt data inspect``: one row per fact about a data source."""
    table = Table(title=f"{summary.source}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("sequences", f"{summary.sequences:,}")
    table.add_row("classes", f"{summary.classes:,}")
    table.add_row("signers", "–" if summary.signers is None else f"{summary.signers:,}")
    table.add_row("landmarks", f"{summary.landmarks} × {summary.channels}-D")
    table.add_row("sequences per class", _spread(summary.per_class))
    lengths = summary.lengths
    table.add_row("frames per sequence", " · ".join(
        f"{key} {value:.1f}" if key == "mean" else f"{key} {value:g}"
        for key, value in lengths.items()))
    if summary.splits:
        table.add_row("splits", ", ".join(f"{k} {v:,}" for k, v in summary.splits.items()))
    if summary.per_signer:
        table.add_row("sequences per signer", _spread(summary.per_signer))
        table.add_row("signers per class", _spread(summary.signers_per_class))
        few = summary.few_signers
        table.add_row("classes with < 2 signers",
                      "none" if not few else f"{len(few)}: " + ", ".join(few[:8])
                      + (" …" if len(few) > 8 else ""))
    for group, share in summary.missing.items():
        zeros = (summary.zero_filled or {}).get(group)
        table.add_row(f"missing {group}", f"{share:.1%}" + (
            "" if zeros is None else f" ({zeros:.1%} written as zeros)"))
    if summary.cache:
        table.add_row("cache", summary.cache)
    return table


def ensemble_table(result: Any) -> Table:
    """``slt ensemble``: each member's validation score, then the ensemble's on the same
    sequences."""
    table = Table(title=f"{result.name}: {result.method} ensemble, scored on the val split "
                        f"of {result.source} ({result.count} sequences)", title_justify="left")
    for column in ("checkpoint", "model", "val loss", "val acc"):
        table.add_column(column, justify="right" if column.startswith("val") else "left")
    for member in result.members:
        table.add_row(member.name, member.model, f"{member.val_loss:.4f}",
                      f"{member.val_accuracy:.4f}")
    best = max(member.val_accuracy for member in result.members)
    table.add_row(f"[bold]{result.name}[/]", f"{result.method} ensemble",
                  f"{result.val_loss:.4f}", f"[bold]{result.val_accuracy:.4f}[/] "
                  f"{arrow(result.val_accuracy - best, higher_is_better=True)}")
    return table


def _input_names(inputs: Sequence[str]) -> dict[str, str]:
    """How the table names each input: its file or folder name, or, when inputs of
    one name sit in other folders (``yes/0``, ``no/0``), its path below the folder
    they share."""
    distinct = sorted(set(inputs))
    names = {path: os.path.basename(path) for path in distinct}
    if len(set(names.values())) == len(distinct):
        return names
    try:
        shared = os.path.commonpath(distinct)
    except ValueError:  # absolute and relative paths mixed
        return {path: path for path in distinct}
    return {path: os.path.relpath(path, shared) if path != shared else names[path]
            for path in distinct}


def _row_index(row: Mapping[str, Any]) -> str:
    """A prediction's place in its input: the sequence's index, or a clip's frames."""
    if "window" not in row:
        return str(row["index"])
    window = row["window"]
    return "all frames" if window is None else f"frames {window['start']}–{window['end'] - 1}"


def prediction_table(rows: Sequence[Mapping[str, Any]], model: str) -> Table:
    """``slt predict``: per sequence the top label, its probability and the next ones."""
    table = Table(title=f"predictions of {model}")
    table.add_column("input")
    table.add_column("#", justify="right")
    labelled = any(row["label"] is not None for row in rows)
    if labelled:
        table.add_column("true label")
    table.add_column("top label")
    table.add_column("prob", justify="right")
    table.add_column("next labels")
    names = _input_names([row["input"] for row in rows])
    for row in rows:
        if not row["top"]:
            cells = [escape(names[row["input"]]), _row_index(row)]
            cells += [escape(row["label"] or "–")] if labelled else []
            table.add_row(*cells, "[dim]no landmark at all[/]", "–", "–")
            continue
        best, *rest = row["top"]
        mark = ""
        if row["label"] is not None:
            mark = " [green]✓[/]" if best["class"] == row["label"] else " [red]✗[/]"
        cells = [escape(names[row["input"]]), _row_index(row)]
        cells += [escape(row["label"] or "–")] if labelled else []
        cells += [f"{escape(best['class'])}{mark}", f"{best['probability']:.3f}",
                  escape(", ".join(f"{t['class']} {t['probability']:.3f}" for t in rest) or "–")]
        table.add_row(*cells)
    return table


def parity_table(result: Any, model: str) -> Table:
    """``slt export``: how closely the exported file agrees with PyTorch."""
    table = Table(title=f"{result.format} export of {model}: parity with PyTorch")
    for column in ("inputs", "sequences", "max |Δ logit|", "top-1 agreement"):
        table.add_column(column, justify="left" if column == "inputs" else "right")
    for check in result.parity:
        table.add_row(check.inputs, str(check.count), f"{check.max_abs_diff:.2e}",
                      f"{check.top1_agreement:.4f}")
    return table
