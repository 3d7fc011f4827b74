"""K-fold cross-validation: fold assignment, ``slt train --folds K``, its files and resume."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from slt_cli.cfg.config import Config, load_config, parse_config, with_overrides
from slt_cli.common.reporting import RecordingReporter
from slt_cli.data.preprocess import assign_folds, split_labels
from slt_cli.errors import ConfigError, DataError, RunInterrupted, SltError
from slt_cli.run.folds import CrossValidation
from slt_cli.run.resume import has_resume
from slt_cli.store.checkpoints import read_sidecar
from tests.cli import slt
from tests.conftest import TINY_TOML


def labelled(signers: int, classes: int = 3, repeats: int = 2,
             test_signers: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y, signer, split of ``signers`` people who each sign every class ``repeats`` times."""
    signer = np.repeat(np.arange(signers), classes * repeats)
    y = np.tile(np.repeat(np.arange(classes), repeats), signers)
    split = np.where(np.isin(signer, test_signers), "test",
                     np.where(signer == signers - 1, "val", "train"))
    return y, signer, split


# --- assignment -----------------------------------------------------------------------


def test_grouped_folds_validate_every_signer_exactly_once_and_never_touch_test() -> None:
    y, signer, split = labelled(12, test_signers=(0, 5))
    number, grouping = assign_folds(y, signer, split, 4, seed=3)
    assert grouping == "signer"
    assert (number[split == "test"] == 0).all() and (number[split != "test"] > 0).all()
    for person in set(signer[split != "test"].tolist()):
        assert len(set(number[signer == person].tolist())) == 1  # a signer stays together
    # 10 signers into 4 folds: 3, 3, 2, 2 signers (sequences balanced like GroupKFold).
    assert sorted(np.bincount(number)[1:] // 6) == [2, 2, 3, 3]
    validated: list[int] = []
    for fold in range(1, 5):
        labels = split_labels(y, signer, split, 0.2, 3, folds=4, fold=fold)
        assert (labels[split == "test"] == "test").all()
        val, train = set(signer[labels == "val"].tolist()), set(signer[labels == "train"].tolist())
        assert not val & train and val | train == set(range(12)) - {0, 5}
        validated += sorted(val)
    assert sorted(validated) == sorted(set(range(12)) - {0, 5})  # each exactly once
    again, _ = assign_folds(y, signer, split, 4, seed=3)
    other, _ = assign_folds(y, signer, split, 4, seed=4)
    assert (again == number).all() and (other != number).any()


def test_without_signers_folds_are_stratified_by_class() -> None:
    y, _, split = labelled(5, classes=4, repeats=3, test_signers=(4,))
    number, grouping = assign_folds(y, None, split, 3, seed=0)
    assert grouping == "class" and (number[split == "test"] == 0).all()
    for label in range(4):  # 12 per class outside test: 4 in every fold
        assert np.bincount(number[(y == label) & (split != "test")], minlength=4)[1:].tolist() \
            == [4, 4, 4]


def test_more_folds_than_signers_or_class_members_is_refused() -> None:
    y, signer, split = labelled(6, test_signers=(0, 1))
    with pytest.raises(DataError, match="5 folds need at least 5 signers .* has 4") as caught:
        assign_folds(y, signer, split, 5, seed=0)
    assert caught.value.hint == "Use at most 4 folds."
    with pytest.raises(DataError, match="at least 9 sequences of every class"):
        assign_folds(y, None, split, 9, seed=0)


def test_folds_and_fold_are_checked_as_config() -> None:
    def with_data(keys: str) -> Config:
        return parse_config(TINY_TOML.replace("[data]\n", f"[data]\n{keys}\n"), "x.toml")

    with pytest.raises(ConfigError, match=r"x.toml: data.folds: must be 0 \(no cross-valid"):
        with_data("folds = 1")
    with pytest.raises(ConfigError, match=r"x.toml: data.fold: must be between 1 and folds"):
        with_data("folds = 3\nfold = 4")
    assert with_data("folds = 3\nfold = 2").data.fold == 2


# --- slt train --folds ------------------------------------------------------------------


def test_train_folds_writes_a_folder_per_fold_and_a_summary(tiny_toml: Path) -> None:
    result = slt("train", "--folds", "2", "--config", str(tiny_toml), "--epochs-per-stage", "1",
                 "--force", "--checkpoint-dir", "cv", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "fold 1 of 2: checkpoints in cv/fold_1" in result.stderr
    assert "fold 2 of 2: checkpoints in cv/fold_2" in result.stderr
    assert "2-fold cross-validation" in result.stdout
    text = Path("cv/folds.json").read_text(encoding="utf-8")
    summary = json.loads(text)
    assert text == json.dumps(summary, indent=2, sort_keys=True) + "\n"
    assert summary["complete"] is True and summary["folds"] == 2
    assert [run["folder"] for run in summary["runs"]] == ["fold_1", "fold_2"]
    for stage in (1, 2):
        sidecars = [read_sidecar(Path(f"cv/fold_{fold}"), f"best_model_stage_{stage}")
                    for fold in (1, 2)]
        assert [s.config.data.fold for s in sidecars] == [1, 2]
        assert {s.config.data.folds for s in sidecars} == {2}
        accuracies = [s.val_accuracy for s in sidecars]
        row = summary["stages"][stage - 1]
        assert row["stage_idx"] == stage and row["folds"] == [1, 2]
        assert row["val_accuracy"]["values"] == accuracies
        assert row["val_accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies))
        assert row["val_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
        assert row["val_loss"]["mean"] == pytest.approx(
            statistics.mean(s.val_loss for s in sidecars))
        assert f"{statistics.mean(accuracies):.4f} ± " in result.stdout

    # Each fold's checkpoint is scored on its own fold's validation signers: 2 of the
    # 4 non-test signers, 12 sequences each, different people in each fold.
    scored = []
    for fold in (1, 2):
        shown = slt("evaluate", "best_model_stage_2", "--checkpoint-dir", f"cv/fold_{fold}",
                    "--json")
        assert shown.exit_code == 0, shown.output
        scored.append(json.loads(shown.stdout))
        sidecar = read_sidecar(Path(f"cv/fold_{fold}"), "best_model_stage_2")
        assert scored[-1]["accuracy"] == pytest.approx(sidecar.val_accuracy, abs=1e-6)
        assert scored[-1]["count"] == 24
    # The summary pools the folds' validation people: each person once, with the
    # accuracy evaluate gives them in their fold.
    pooled = summary["stages"][1]
    people = {who: acc for one in scored for who, acc in one["per_signer"].items()}
    assert len(people) == 4 and pooled["people"] == pytest.approx(people)
    assert pooled["pooled_accuracy"] == pytest.approx(
        sum(one["accuracy"] * one["count"] for one in scored) / 48)
    assert [sorted(run["people"]["2"]) for run in summary["runs"]] == [
        sorted(one["per_signer"]) for one in scored]
    assert "pooled (people)" in result.stdout and "(4)" in result.stdout
    listed = slt("list", "--checkpoint-dir", "cv/fold_2", "--json")
    assert len(json.loads(listed.stdout)) == 4
    parent = slt("list", "--checkpoint-dir", "cv")
    assert parent.exit_code == 0 and "warning" not in parent.stderr
    assert "--checkpoint-dir cv/fold_1" in parent.stderr

    # `continue` keeps the fold and the seed that dealt it (tiny.toml says seed 0): the
    # new checkpoint is scored on the same split.
    continued = slt("continue", "best_model_stage_2", "--type", "fine_tune", "--config",
                    str(tiny_toml), "--checkpoint-dir", "cv/fold_2")
    assert continued.exit_code == 0, continued.output
    child = read_sidecar(Path("cv/fold_2"), "best_model_stage_2_fine_tune")
    assert (child.config.data.folds, child.config.data.fold) == (2, 2)
    assert child.config.run.seed == 3
    again = json.loads(slt("evaluate", "best_model_stage_2_fine_tune", "--checkpoint-dir",
                           "cv/fold_2", "--json").stdout)
    assert again["accuracy"] == pytest.approx(child.val_accuracy, abs=1e-6)

    # An ensemble of a fold's checkpoints is scored on that fold's validation split too.
    made = slt("ensemble", "best_model_stage_1", "best_model_stage_2", "--name", "pair",
               "--checkpoint-dir", "cv/fold_2")
    assert made.exit_code == 0, made.output
    pair = read_sidecar(Path("cv/fold_2"), "pair")
    shown = json.loads(slt("evaluate", "pair", "--checkpoint-dir", "cv/fold_2", "--json").stdout)
    assert shown["count"] == 24
    assert shown["accuracy"] == pytest.approx(pair.val_accuracy, abs=1e-6)


@pytest.mark.parametrize(("folds", "words"), [
    ("1", "--folds 1: cross-validation needs at least 2 folds"),
    ("5", "5 folds need at least 5 signers outside the test split"),
])
def test_bad_fold_counts_exit_2_and_save_nothing(tiny_toml: Path, folds: str,
                                                 words: str) -> None:
    result = slt("train", "--folds", folds, "--config", str(tiny_toml), "--checkpoint-dir", "cv")
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.output
    assert not Path("cv/folds.json").exists() and not list(Path(".").rglob("*.safetensors"))


@pytest.mark.parametrize("existing", [False, True])
def test_more_folds_than_people_is_refused_before_a_word_or_a_file(tiny_toml: Path,
                                                                   existing: bool) -> None:
    """Before, "fold 1 of 50" came first, and the folder and its .slt.lock were left."""
    if existing:
        Path("cv").mkdir()
        Path("cv/mine.txt").write_text("keep", encoding="utf-8")
    result = slt("train", "--folds", "50", "--config", str(tiny_toml), "--checkpoint-dir", "cv")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: 50 folds need at least 50 signers outside the test split, so that each fold "
        "validates on its own; this data has 4", "hint: Use at most 4 folds."]
    assert result.stdout == ""
    if existing:
        assert sorted(p.name for p in Path("cv").iterdir()) == ["mine.txt"]
    else:
        assert not Path("cv").exists()


def test_a_fold_folder_that_is_a_link_is_refused_and_its_target_untouched(
        tiny_toml: Path) -> None:
    elsewhere = Path("elsewhere")
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    Path("cv").mkdir()
    Path("cv/fold_1").symlink_to(elsewhere.resolve())
    result = slt("train", "--folds", "2", "--config", str(tiny_toml), "--checkpoint-dir", "cv",
                 "--stages", "1", "--epochs-per-stage", "1")
    assert result.exit_code == 2
    assert "fold_1 is a symbolic link" in result.stderr and "Traceback" not in result.output
    assert [path.name for path in elsewhere.iterdir()] == ["notes.txt"]


def test_a_fold_without_a_class_in_validation_says_so_and_trains(tmp_path: Path) -> None:
    # Signer 3 alone signs class 2: the fold that trains on signer 3 cannot score class 2.
    rng = np.random.default_rng(0)
    y, signer, _ = labelled(4, classes=2, repeats=4)
    y, signer = np.concatenate([y, [2, 2]]), np.concatenate([signer, [3, 3]])
    x = rng.normal(size=(len(y), 8, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "lopsided.npz", x=x, y=y, signer=signer)
    result = slt("train", "--folds", "2", "--data", str(tmp_path / "lopsided.npz"),
                 "--checkpoint-dir", "cv", "--stages", "1", "--epochs-per-stage", "1")
    assert result.exit_code == 0, result.output
    assert "validation has no sequence of class '2'" in result.stderr
    assert "accuracy is measured on the classes present" in result.stderr
    assert Path("cv/folds.json").is_file()


def test_old_sidecars_without_fold_keys_still_evaluate(tiny_toml: Path) -> None:
    assert slt("train", "--config", str(tiny_toml), "--stages", "1", "--epochs-per-stage",
               "1").exit_code == 0
    path = Path("checkpoints/best_model_stage_1.json")
    sidecar = json.loads(path.read_text())
    del sidecar["config"]["data"]["folds"], sidecar["config"]["data"]["fold"]
    path.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    shown = slt("evaluate", "best_model_stage_1", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["accuracy"] == pytest.approx(sidecar["val_accuracy"],
                                                                 abs=1e-6)


# --- interruption and --resume ------------------------------------------------------------


class StopInFold(RecordingReporter):
    """Asks the run to stop (as Ctrl-C does) after the first epoch of fold ``fold``."""

    def __init__(self, fold: int) -> None:
        super().__init__()
        self.fold, self.run = fold, None

    def epoch_done(self, metrics: object) -> None:
        super().epoch_done(metrics)
        if sum(1 for m in self.named("note") if m.startswith("fold ")) == self.fold:
            self.run.request_stop()


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML, encoding="utf-8")
    return with_overrides(load_config(path), stage_epochs=1)


@pytest.fixture(scope="module")
def uninterrupted(quick_config: Config, tmp_path_factory: pytest.TempPathFactory) -> object:
    folder = tmp_path_factory.mktemp("whole")
    return CrossValidation(quick_config, 2, checkpoint_dir=folder).run(force=True)


@pytest.mark.parametrize("fold", [1, 2])
def test_stopped_in_a_fold_then_resumed_equals_uninterrupted(
        quick_config: Config, uninterrupted: object, tmp_path: Path, fold: int) -> None:
    config, folder = quick_config, tmp_path / "stopped"
    reporter = StopInFold(fold)
    stopped = CrossValidation(config, 2, checkpoint_dir=folder, reporter=reporter)
    reporter.run = stopped
    with pytest.raises(RunInterrupted) as caught:
        stopped.run(force=True)
    assert caught.value.message.startswith(f"fold {fold} of 2: stopped in stage 2")
    assert caught.value.hint == ("Carry on with: slt train --folds 2 --resume "
                                 f"--checkpoint-dir {folder}")
    assert has_resume(folder / f"fold_{fold}")
    assert has_resume(folder / "fold_1") == (fold == 1)  # a finished fold keeps no state
    partial = json.loads((folder / "folds.json").read_text())
    assert partial["complete"] is False
    assert [r["fold"] for r in partial["runs"]] == list(range(1, fold))

    with pytest.raises(SltError, match="holds an unfinished 2-fold run"):
        CrossValidation(config, 2, checkpoint_dir=folder).run(force=True)
    with pytest.raises(SltError, match="has 2 folds, not 3"):
        CrossValidation(config, 3, checkpoint_dir=folder).resume()
    if fold == 2:
        other = dataclasses.replace(config, stages=config.stages[:1])  # ignored: saved request
        resumed = CrossValidation(other, 2, checkpoint_dir=folder).resume()
        assert [[s.val_accuracy for s in run.stages] for run in resumed.runs] == \
            [[s.val_accuracy for s in run.stages] for run in uninterrupted.runs]
    else:  # a plain `slt train --resume` in the folder finds the cross-validation run
        shown = slt("train", "--resume", "--checkpoint-dir", str(folder))
        assert shown.exit_code == 0, shown.output
        assert "fold 1 of 2 (resumed)" in shown.stderr and "fold 2 of 2: " in shown.stderr
    summary = json.loads((folder / "folds.json").read_text())
    assert summary["complete"] is True
    assert summary["stages"] == json.loads(uninterrupted.summary_path.read_text())["stages"]
    with pytest.raises(SltError, match="is finished; there is nothing to resume"):
        CrossValidation(config, 2, checkpoint_dir=folder).resume()


def test_resume_without_a_cross_validation_run_is_refused(quick_config: Config,
                                                          tmp_path: Path) -> None:
    with pytest.raises(SltError, match="no cross-validation run to resume in"):
        CrossValidation(quick_config, 2, checkpoint_dir=tmp_path).resume()
