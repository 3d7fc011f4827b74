"""The noise-aware choice of a stage's best epoch (slt_cli/selection.py)."""

from __future__ import annotations

import torch

from slt_cli.run.selection import Scored, Selection, paired_difference


def scored(epoch: int, hits: list[int], loss: float = 1.0) -> Scored:
    values = torch.tensor(hits, dtype=torch.float64)
    return Scored(epoch, loss, float(values.mean()), values)


def hits(right: int, count: int = 100) -> list[int]:
    return [1] * right + [0] * (count - right)


def test_a_difference_within_the_noise_takes_the_trained_epoch() -> None:
    selection = Selection("val_accuracy", margin=1.0)
    assert selection.consider(scored(0, hits(90)))
    # 4 clips lost and 3 won: -1 of 100 with 7 disagreements, within the noise
    trained = hits(86)
    trained[95:98] = [1, 1, 1]
    assert sum(trained) == 89
    assert selection.consider(scored(1, trained))


def test_a_start_better_beyond_the_noise_is_kept_and_says_why() -> None:
    selection = Selection("val_accuracy", margin=1.0)
    selection.consider(scored(0, hits(95)))
    assert not selection.consider(scored(1, hits(80)))
    reason = selection.why_start_kept()
    assert reason is not None
    assert "beat the best epoch (epoch 1) by 15 clip(s) of 100, beyond the noise" in reason


def test_a_gain_beyond_the_noise_replaces_the_start() -> None:
    selection = Selection("val_accuracy", margin=1.0)
    selection.consider(scored(0, hits(80)))
    assert selection.consider(scored(1, hits(95)))


def test_of_epochs_validation_cannot_tell_apart_the_later_wins() -> None:
    selection = Selection("val_accuracy", margin=1.0)
    assert selection.consider(scored(1, hits(50)))
    assert selection.consider(scored(2, hits(80)))  # far better: the new peak
    tied = hits(77)
    tied[90:92] = [1, 1]  # 3 clips lost and 2 won against the peak: a tie
    assert selection.consider(scored(3, tied))
    assert not selection.consider(scored(4, hits(60)))  # clearly worse than the peak


def test_a_slow_decline_cannot_drift_past_the_noise_of_the_peak() -> None:
    selection = Selection("val_accuracy", margin=1.0)
    chosen = [selection.consider(scored(epoch, hits(80 - 2 * (epoch - 1))))
              for epoch in range(1, 12)]
    assert chosen[0] and not chosen[-1]  # 20 clips below the peak is beyond its noise


def test_margin_zero_is_the_plain_maximum() -> None:
    selection = Selection("val_accuracy", margin=0.0)
    assert selection.consider(scored(0, hits(90)))
    assert not selection.consider(scored(1, hits(89)))  # below the start
    assert selection.consider(scored(2, hits(91)))
    assert not selection.consider(scored(3, hits(91), loss=2.0))  # a tie, higher loss
    assert selection.consider(scored(4, hits(91), loss=0.5))  # a tie, lower loss


def test_the_paired_difference_counts_only_disagreements() -> None:
    same = scored(1, hits(50))
    assert paired_difference(same, same) == (0.0, 0.0)
    mean, error = paired_difference(scored(2, hits(60)), same)
    assert mean == 0.1 and 0.02 < error < 0.04  # 10 disagreements of 100


def test_a_resumed_selection_judges_as_the_uninterrupted_one() -> None:
    first = Selection("val_accuracy", margin=1.0)
    first.consider(scored(0, hits(70)))
    first.consider(scored(1, hits(90)))
    tensors, values = first.snapshot()
    second = Selection("val_accuracy", margin=1.0)
    second.restore(tensors, values)
    for epoch, right in ((2, 89), (3, 75)):
        assert second.consider(scored(epoch, hits(right))) == first.consider(
            scored(epoch, hits(right)))
