"""What ``slt tune`` shows: a line per finished trial on stderr (the live table) and,
at the end, one summary row per study on stdout: the best trial against the untuned
defaults on the same split, and the settings it changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.table import Table

from slt_cli.common.reporting import EpochMetrics
from slt_cli.show.console import duration, err
from slt_cli.tune.auto import AutoReporter, AutoResult, ModelScore
from slt_cli.tune.study import StudyResult, TrialRow, TuneResult

PROGRESS_SECONDS = 10.0  # a running trial says how far it got at most this often


class TuneConsole(AutoReporter):
    """Trials (and --auto's model rounds) as they finish, one plain line each, on stderr;
    a line every ``PROGRESS_SECONDS`` while a trial trains; each note once, not once per
    trial (every trial loads the same data and hears the same notes)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.noted: set[str] = set()
        self.trial: tuple[int, float] | None = None  # the running trial: number, last line

    def trial_started(self, *, study: str, number: int, defaults: bool) -> None:
        self.trial = (number, self.clock())

    def epoch_done(self, metrics: EpochMetrics) -> None:
        if self.trial is None or self.clock() - self.trial[1] < PROGRESS_SECONDS:
            return
        number, _ = self.trial
        self.trial = (number, self.clock())
        err.print(f"  trial {number:>3}  stage {metrics.stage_idx} epoch {metrics.epoch}/"
                  f"{metrics.epochs}  val acc {metrics.val_accuracy:.4f}", highlight=False,
                  markup=False)

    def model_scored(self, score: ModelScore) -> None:
        err.print(f"  round {score.round}  {score.model:<45} {score.epochs:>3} epochs  "
                  f"{score.score:.4f}  {duration(score.seconds):>8}", highlight=False,
                  markup=False)

    def study_started(self, *, study: str, finished: int, trials: int) -> None:
        carried = f" ({finished} finished before)" if finished else ""
        err.print(f"study {study}: {trials} trials{carried}", highlight=False, markup=False)

    def trial_done(self, row: TrialRow) -> None:
        self.trial = None
        score = "–" if row.score is None else f"{row.score:.4f}"
        label = " (defaults)" if row.defaults else ""
        err.print(f"  trial {row.number:>3}{label}  {row.state:<8} {score}  "
                  f"{duration(row.seconds or 0.0):>8}  {settings_text(row.params)}",
                  highlight=False, markup=False)

    def note(self, message: str) -> None:
        if message in self.noted:
            return
        self.noted.add(message)
        err.print(f"note: {message}", highlight=False, markup=False)


def settings_text(params: Mapping[str, Any]) -> str:
    """``lr=0.0012 dropout=0.21 augment.rotate=12.5``: compact, in the space's order."""
    return " ".join(f"{key}={_short(value)}" for key, value in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_table(result: AutoResult) -> Table:
    """--auto's successive halving: each candidate's score per round, the winner first and
    marked, then the candidates the budget did not reach."""
    untried = (f"not tried within the budget: {', '.join(result.untried)}" if result.untried
               else None)
    table = Table(title="slt tune --auto: models by successive halving", title_justify="left",
                  caption=untried, caption_justify="left")
    for column in ("model", "round", "epochs", "val acc", "time"):
        table.add_column(column, justify="left" if column == "model" else "right")
    marked = False
    for score in sorted(result.scores, key=lambda s: (-s.round, -s.score)):
        chosen = not marked and score.model == result.winner
        marked = marked or chosen
        table.add_row(f"{score.model} (chosen)" if chosen else score.model, str(score.round),
                      str(score.epochs), f"{score.score:.4f}", duration(score.seconds))
    return table


def tune_table(result: TuneResult) -> Table:
    """One row per study: trials by state, the defaults' score, the best's, what changed,
    whose settings go on; below, why a study kept its defaults."""
    kept = [f"{study.study}: the defaults are kept: {study.kept_defaults}"
            for study in result.studies if study.kept_defaults]
    table = Table(title=f"slt tune (study in {result.storage})", title_justify="left",
                  caption="\n".join(kept) or None, caption_justify="left")
    for column in ("study", "complete", "pruned", "failed", "defaults", "best", "trial",
                   "best settings", "promoted"):
        table.add_column(column, justify="left" if column in ("study", "best settings",
                                                              "promoted") else "right")
    for study in result.studies:
        promoted = study.promoted
        table.add_row(study.study, *_counts(study), _score(study.defaults),
                      _score(study.best), str(study.best.number),
                      settings_text(study.best.params),
                      "defaults" if promoted.defaults else f"trial {promoted.number}")
    return table


def _counts(study: StudyResult) -> list[str]:
    states = [row.state for row in study.trials]
    return [str(states.count(state)) for state in ("complete", "pruned", "fail")]


def _score(row: TrialRow | None) -> str:
    return "–" if row is None or row.score is None else f"{row.score:.4f}"
