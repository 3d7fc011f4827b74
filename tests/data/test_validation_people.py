"""When validation is a weak judge of new people, a run says so (and how to fix it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slt_cli import RecordingReporter, Trainer, load_config
from slt_cli.data import load_data


def write(path: Path, signer: list[int] | None, split: list[str] | None = None) -> Path:
    rng = np.random.default_rng(0)
    n = 40
    arrays = {"x": rng.normal(size=(n, 6, 4, 2)).astype(np.float32), "y": np.arange(n) % 2}
    if signer is not None:
        arrays["signer"] = np.array(signer)
    if split is not None:
        arrays["split"] = np.array(split)
    np.savez(path, **arrays)
    return path


def caveat(path: Path) -> str | None:
    return load_data(str(path), frames=6, motion=True, val_fraction=0.2,
                     seed=0).validation_caveat()


def test_no_people_named(tmp_path: Path) -> None:
    text = caveat(write(tmp_path / "a.npz", None))
    assert text is not None and text.startswith("the data names no people")
    assert "--folds K" in text and "signer" in text


def test_too_few_people_in_validation(tmp_path: Path) -> None:
    text = caveat(write(tmp_path / "a.npz", [i % 10 for i in range(40)]))  # 2 of 10 hold out
    assert text is not None and text.startswith("validation holds only 2 people")


def test_people_shared_with_training(tmp_path: Path) -> None:
    signer = [i % 8 for i in range(40)]
    split = ["val" if i < 10 else "train" for i in range(40)]  # people 0-7 on both sides
    text = caveat(write(tmp_path / "a.npz", signer, split))
    assert text is not None and text.startswith("validation shares 8 of its 8 people")


def test_enough_people_of_their_own(tmp_path: Path) -> None:
    assert caveat(write(tmp_path / "a.npz", [i % 30 for i in range(40)])) is None  # 6 held out


@pytest.mark.parametrize("with_people", [False, True])
def test_a_run_says_it_as_a_note(tiny_toml: Path, tmp_path: Path, with_people: bool) -> None:
    import dataclasses

    data = write(tmp_path / "a.npz", [i % 30 for i in range(40)] if with_people else None)
    config = load_config(tiny_toml)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  source=str(data)))
    reporter = RecordingReporter()
    Trainer(config, checkpoint_dir=tmp_path / "c", reporter=reporter).train([1])
    notes = [n for n in reporter.named("note") if "names no people" in n]
    assert bool(notes) is not with_people
