"""What the engine hands back: plain, frozen records of stages, runs and evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageResult:
    """What one stage achieved and where it was saved."""

    stage_idx: int
    name: str
    description: str
    val_loss: float  # of the best epoch
    val_accuracy: float
    best_epoch: int  # 0 = no epoch beat the starting weights, which were kept
    epochs: int
    training_time: float  # seconds for the whole stage
    checkpoint: str  # best weights: best_model_stage_N, or a continue checkpoint
    final_checkpoint: str | None  # weights at the end: stage_N_<name>
    parent: str | None
    gain: float | None  # improvement of the monitored metric over the starting point
    epochs_run: int | None = None  # < epochs when patience stopped it; None: not recorded

    @property
    def kept_start(self) -> bool:
        """No epoch beat the weights the stage started from: its best is those."""
        return self.best_epoch == 0


@dataclass(frozen=True)
class RunResult:
    run_id: str
    stages: tuple[StageResult, ...]
    stopped: str | None  # why the run ended before its last stage, or None
    archived: tuple[str, ...]  # earlier checkpoints moved aside into archive/<run_id>/


@dataclass(frozen=True)
class ConfusedPair:
    """Sequences of class ``true`` predicted as class ``predicted``."""

    true: str
    predicted: str
    count: int
    share: float  # of the sequences of class ``true``


@dataclass(frozen=True)
class Evaluation:
    checkpoint: str
    source: str
    split: str
    count: int
    loss: float
    accuracy: float
    top5_accuracy: float
    per_class: dict[str, float]  # accuracy per class name (classes present in the split)
    classes: tuple[str, ...] = ()  # every class of the model, in the order of its outputs
    confusion: tuple[tuple[int, ...], ...] = ()  # [true][predicted] counts, in that order
    per_signer: dict[str, float] = field(default_factory=dict)  # accuracy per signer (name)
    signer_sequences: dict[str, int] = field(default_factory=dict)  # sequences per signer

    @property
    def worst_signer(self) -> tuple[str, float] | None:
        """The signer scored lowest (fewest sequences first on a tie), or None."""
        if not self.per_signer:
            return None
        return min(self.per_signer.items(),
                   key=lambda item: (item[1], self.signer_sequences.get(item[0], 0), item[0]))

    def by_group(self, by: str) -> list[tuple[str, int, float]]:
        """(signer or class, sequences, accuracy) rows, the weakest first."""
        if by == "signer":
            rows = [(who, self.signer_sequences.get(who, 0), acc)
                    for who, acc in self.per_signer.items()]
        else:
            counts = {self.classes[i]: sum(row) for i, row in enumerate(self.confusion)}
            rows = [(name, counts.get(name, 0), acc) for name, acc in self.per_class.items()]
        return sorted(rows, key=lambda row: (row[2], row[1], row[0]))

    def most_confused(self, top: int = 10) -> tuple[ConfusedPair, ...]:
        return most_confused(self.confusion, self.classes, top)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``: every field but the K x K matrix, plus the most-confused pairs."""
        data = asdict(self)
        del data["confusion"], data["classes"]
        data["most_confused"] = [asdict(pair) for pair in self.most_confused()]
        worst = self.worst_signer
        data["worst_signer"] = None if worst is None else {
            "signer": worst[0], "accuracy": worst[1],
            "sequences": self.signer_sequences.get(worst[0], 0)}
        return data


def most_confused(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                  top: int = 10) -> tuple[ConfusedPair, ...]:
    """The ``top`` largest off-diagonal cells of ``confusion`` ([true][predicted]
    counts over ``classes``): most sequences first, then the larger share of the true
    class, then by name."""
    pairs = []
    for true, row in enumerate(confusion):
        total = sum(row)
        pairs += [ConfusedPair(classes[true], classes[predicted], count, count / total)
                  for predicted, count in enumerate(row) if count and predicted != true]
    pairs.sort(key=lambda p: (-p.count, -p.share, p.true, p.predicted))
    return tuple(pairs[:top])
