"""``slt tune --auto``: pick the model (family and size) for the data by successive
halving, then tune the recipe for it, all within one wall-clock budget.

Successive halving: every candidate of ``CANDIDATES`` trains stage 1 for a third of
its epochs; the best third (at least two) train again for all of them; the best of
that round wins. Each run is an ordinary ``engine.Trainer`` run into
``CHECKPOINT_DIR/tune/STUDY/models/<candidate>/``, scored like a tuning trial (stage
1's best validation accuracy). The model search may use up to ``MODEL_SHARE`` of the
budget; what is left, at least the rest, goes to ``Tuner`` for the recipe.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slt_cli.cfg.config import ModelConfig
from slt_cli.tune.study import TUNE_FOLDER, Tuner, TuneReporter, TuneRequest, TuneResult

# (family, settings): small to large, each a size the builders accept for any data.
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("conv_transformer", {"dim": 32, "depth": 1, "heads": 4}),
    ("conv_transformer", {"dim": 64, "depth": 2, "heads": 4}),
    ("conv_transformer", {"dim": 128, "depth": 3, "heads": 4}),
    ("resnet1d", {"width": 32, "blocks": 2}),
    ("resnet1d", {"width": 64, "blocks": 3}),
    ("gru", {"hidden": 64, "layers": 1}),
    ("gru", {"hidden": 128, "layers": 2}),
    ("mlp", {}),
    # last: a graph network costs several times the others per step on a CPU, so a
    # short budget reaches it only after the cheap candidates
    ("gcn", {"dim": 16, "depth": 3}),
    ("gcn", {"dim": 32, "depth": 4}),
)
MODEL_SHARE = 0.4  # of the budget, at most, for choosing the model
REDUCTION = 3  # successive halving keeps the best 1/REDUCTION of each round


@dataclass(frozen=True)
class ModelScore:
    """One candidate in one round of successive halving."""

    model: str  # e.g. conv_transformer(dim=64, depth=2, heads=4)
    round: int  # 1-based
    epochs: int
    score: float
    seconds: float


@dataclass(frozen=True)
class AutoResult:
    model: ModelConfig
    scores: tuple[ModelScore, ...]
    tuning: TuneResult
    untried: tuple[str, ...] = ()  # candidates the budget left out of the first round

    @property
    def winner(self) -> str:
        """The chosen model, as its scores name it."""
        return describe(self.model.name, dict(self.model.settings))

    def to_dict(self) -> dict[str, Any]:
        return {"model": {"name": self.model.name, **self.model.settings},
                "winner": self.winner,
                "rounds": [dataclasses.asdict(score) for score in self.scores],
                "untried": list(self.untried),
                **self.tuning.to_dict()}


class AutoReporter(TuneReporter):
    def model_scored(self, score: ModelScore) -> None:
        """One candidate finished one round of successive halving."""


def describe(name: str, settings: dict[str, Any]) -> str:
    """``conv_transformer(dim=64, depth=2)``."""
    return f"{name}({', '.join(f'{key}={value}' for key, value in settings.items())})"


class AutoTuner:
    """Runs ``--auto``: a model by successive halving, then ``Tuner`` on the recipe.

    Args:
        request: As for ``Tuner``; ``timeout`` is the whole budget (required).
        reporter: Receives each candidate's score, then the tuner's events.
    """

    def __init__(self, request: TuneRequest, reporter: AutoReporter | None = None) -> None:
        if request.timeout is None:
            raise ValueError("--auto needs a budget")
        self.request = request
        self.reporter = reporter or AutoReporter()
        self.folder = request.checkpoint_dir / TUNE_FOLDER / request.study / "models"
        self._runner: Any = None
        self._stopped = False

    def request_stop(self) -> None:
        self._stopped = True
        if self._runner is not None:
            self._runner.request_stop()

    def run(self) -> AutoResult:
        request = self.request
        started = time.monotonic()
        budget = float(request.timeout or 0)
        model, scores = self._choose_model(started + MODEL_SHARE * budget)
        config = dataclasses.replace(request.config, model=model)
        left = max(budget - (time.monotonic() - started), 1.0)
        tuner = Tuner(dataclasses.replace(request, config=config, timeout=left), self.reporter)
        self._runner = tuner
        if self._stopped:
            tuner.request_stop()
        tried = {score.model for score in scores}
        untried = tuple(label for label in (describe(name, settings)
                                            for name, settings in CANDIDATES)
                        if label not in tried)
        return AutoResult(model=model, scores=tuple(scores), tuning=tuner.run(),
                          untried=untried)

    def _choose_model(self, deadline: float) -> tuple[ModelConfig, list[ModelScore]]:
        full = self.request.config.stages[0].epochs
        alive = [ModelConfig(name=name, settings=settings) for name, settings in CANDIDATES]
        scores: list[ModelScore] = []
        best: dict[str, float] = {}
        for round_, epochs in enumerate((max(1, full // REDUCTION), full), start=1):
            for model in alive:
                if time.monotonic() > deadline and best:
                    break
                score = self._score(model, epochs, round_)
                scores.append(score)
                self.reporter.model_scored(score)
                best[score.model] = score.score
            ranked = sorted((m for m in alive if describe(m.name, dict(m.settings)) in best),
                            key=lambda m: -best[describe(m.name, dict(m.settings))])
            alive = ranked[:max(2 if round_ == 1 else 1, math.ceil(len(ranked) / REDUCTION))]
            if time.monotonic() > deadline:
                break
        return alive[0], scores

    def _score(self, model: ModelConfig, epochs: int, round_: int) -> ModelScore:
        from slt_cli.run.engine import Trainer

        request = self.request
        config = request.config
        stage = dataclasses.replace(config.stages[0], epochs=epochs)
        config = dataclasses.replace(config, model=model, stages=(stage, *config.stages[1:]))
        label = describe(model.name, dict(model.settings))
        folder = self.folder / f"round{round_}_{label.replace('(', '_').rstrip(')')}"
        folder = Path(str(folder).replace(", ", "_").replace("=", ""))
        started = time.monotonic()
        trainer = Trainer(config, checkpoint_dir=folder, device=request.device)
        self._runner = trainer
        if self._stopped:
            trainer.request_stop()
        result = trainer.train([1], force=True)
        self._runner = None
        if not request.keep_all:
            shutil.rmtree(folder, ignore_errors=True)
        return ModelScore(model=label, round=round_, epochs=epochs,
                          score=result.stages[0].val_accuracy,
                          seconds=time.monotonic() - started)
