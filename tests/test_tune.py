"""``slt tune``: search-space checks, a tiny search with pruning, promote round trip,
resume after a lost worker, a study shared through one storage."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slt_cli.cfg.config import load_config, parse_config
from slt_cli.cli import app

optuna = pytest.importorskip("optuna")

from conftest import TINY_TOML  # noqa: E402

# Stage 1 of TINY_TOML (2 epochs), lr only; the median pruner may judge from trial 2 on,
# after one epoch, so a search of a few trials prunes.
TUNE_TOML = TINY_TOML + """
[tune]
trials = 3
startup_trials = 1
warmup_epochs = 0
stages = {}
[tune.space]
lr = { low = 1e-4, high = 3e-2, log = true }
"""

runner = CliRunner()


def _tune(tmp_path: Path, *args: str) -> object:
    config = tmp_path / "tune.toml"
    if not config.exists():
        config.write_text(TUNE_TOML, encoding="utf-8")
    return runner.invoke(app, ["tune", "--config", str(config), "--device", "cpu",
                               "--checkpoint-dir", str(tmp_path / "ckpt"), *args])


@pytest.mark.parametrize(("space", "expected"), [
    ('dropout = { low = 0.0, high = 1.5 }', "tune.space.dropout.high: must be >= 0 and < 1"),
    ('lr = { low = 0.0, high = 1e-2, log = true }', "tune.space.lr.low: must be > 0"),
    ('learning_rate = { low = 1e-4, high = 1e-2 }', "tune.space.learning_rate: not a stage"),
    ('epochs = { low = 2.5, high = 8 }', "tune.space.epochs.low: must be an integer"),
    ('lr = { low = 1e-2, high = 1e-4 }', "tune.space.lr: low (0.01) must be below high"),
    ('averaging = { choices = ["ema", "avg"] }',
     "tune.space.averaging.choices[1]: must be one of none, ema, swa"),
    ('"augment.rotate" = { low = 0, high = 400 }',
     "tune.space.augment.rotate.high: must be <= 180"),
])
def test_bad_search_spaces_exit_2_naming_the_key(tmp_path: Path, space: str,
                                                 expected: str) -> None:
    config = tmp_path / "tune.toml"
    config.write_text(TINY_TOML + f"\n[tune.space]\n{space}\n", encoding="utf-8")
    result = _tune(tmp_path)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_tune_stages_must_name_stages_and_space_round_trips() -> None:
    with pytest.raises(Exception, match=r"tune.stages.polish: no stage 'polish'"):
        parse_config(TINY_TOML + "\n[tune.stages.polish]\nlr = false\n", "my.toml")
    config = parse_config(TINY_TOML + '\n[tune.stages.augmentation]\nlr = false\n'
                          'augment = { rotate = { low = 0, high = 20 } }\n', "my.toml")
    space = config.tune.space_of("augmentation")
    assert "lr" not in space and space["augment.rotate"].high == 20
    assert "lr" in config.tune.space_of("baseline")


def test_tiny_search_prunes_promotes_and_the_promoted_file_reproduces_the_score(
        tmp_path: Path) -> None:
    out = tmp_path / "best.toml"
    figure = tmp_path / "trials.png"
    result = _tune(tmp_path, "--stages", "1", "--promote", str(out), "--json", "--plot",
                   str(figure))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (stage,) = report["studies"]
    states = [trial["state"] for trial in stage["trials"]]
    assert len(states) == 3 and "pruned" in states
    assert stage["defaults"]["number"] == 0 and stage["defaults"]["params"] == {"lr": 3e-3}
    best = stage["best"]
    # 24 validation clips: the best's gain of two clips is within the noise
    assert best["number"] != 0 and best["score"] > stage["defaults"]["score"]
    assert stage["promoted"] == 0, stage["kept_defaults"]
    assert re.fullmatch(rf"trial {best['number']}'s {best['score']:.4f} is [0-9.]+ above their "
                        r"[0-9.]+, within one standard error of the difference \([0-9.]+ "
                        r"over 24 validation clips\)", stage["kept_defaults"])
    assert figure.read_bytes().startswith(b"\x89PNG")
    # only the checkpoints of the best trial and of the one promoted (the defaults) are kept
    trial_folders = sorted(p.name for p in (tmp_path / "ckpt/tune/slt/stage_1_baseline").iterdir())
    assert trial_folders == ["trial_0000", f"trial_{best['number']:04d}"]
    promoted = load_config(out)
    assert promoted.stages == load_config(tmp_path / "tune.toml").stages  # defaults kept
    from slt_cli.run.engine import Trainer

    rerun = Trainer(promoted, checkpoint_dir=tmp_path / "again", device="cpu").train([1])
    assert rerun.stages[0].val_accuracy == pytest.approx(stage["defaults"]["score"])
    again = _tune(tmp_path, "--stages", "1", "--study", "other", "--promote", str(out))
    assert again.exit_code == 2 and "best.toml exists" in again.output  # before any trial
    refused = _tune(tmp_path, "--stages", "1")
    assert refused.exit_code == 2 and "already exists" in refused.output
    assert "--resume" in refused.output


def test_workers_sharing_a_storage_finish_n_trials_past_a_lost_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = _tune(tmp_path, "--stages", "1", "--trials", "1", "--storage", url,
                  "--checkpoint-dir", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    study = optuna.load_study(study_name="slt.stage1", storage=url)
    study.ask()  # a worker killed mid-trial leaves its trial running
    second = _tune(tmp_path, "--stages", "1", "--trials", "2", "--storage", url,
                   "--checkpoint-dir", str(tmp_path / "b"))
    assert second.exit_code == 0, second.output
    trials = optuna.load_study(study_name="slt.stage1", storage=url).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state.name for t in trials[:2]] == ["COMPLETE", "RUNNING"]  # the lost one
    assert trials[2].state.is_finished()  # b ran one more: 2 finished between them
    assert sum(bool(t.user_attrs.get("defaults")) for t in trials) == 1
    assert [t.user_attrs["folder"].startswith(str(tmp_path / "b")) for t in trials
            if t.number != 1] == [False, True]


def test_auto_picks_a_model_and_promotes_it_within_a_tiny_budget(tmp_path: Path) -> None:
    out = tmp_path / "auto.toml"
    result = _tune(tmp_path, "--auto", "--budget", "1s", "--stages", "1", "--promote",
                   str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rounds"] and report["studies"][0]["best"] is not None
    promoted = load_config(out)
    assert {"name": promoted.model.name, **promoted.model.settings} == report["model"]
    # a budget of one second reaches the first candidate; the report names the rest
    from slt_cli.tune.auto import CANDIDATES, describe

    scored = [row["model"] for row in report["rounds"]]
    assert report["winner"] in scored
    assert report["untried"] == [describe(name, settings) for name, settings in CANDIDATES
                                 if describe(name, settings) not in scored]
    assert "gcn(dim=16, depth=3)" in report["untried"]
    shown = _tune(tmp_path, "--auto", "--budget", "1s", "--stages", "1", "--study", "again")
    assert shown.exit_code == 0, shown.output
    assert "(chosen)" in shown.stdout and "not tried within the budget: " in shown.stdout
    bad = _tune(tmp_path, "--storage", "nosuchdb://x")
    assert bad.exit_code == 2 and "--storage nosuchdb://x: cannot open it" in bad.output
    lone = _tune(tmp_path, "--budget", "1s")
    assert lone.exit_code == 2 and "--budget goes with --auto" in lone.output


def test_a_stages_winners_carry_on_to_the_stages_that_had_its_untuned_value(
        tmp_path: Path) -> None:
    from slt_cli.tune.study import Tuner, TuneRequest

    config = parse_config(TUNE_TOML, "tune.toml")
    tuner = Tuner(TuneRequest(config=config, stages=(1,), checkpoint_dir=tmp_path, trials=1))
    tuned = tuner.with_winners(config, (1,), {"epochs": 5, "lr": 1e-2})
    assert [(s.epochs, s.lr) for s in tuned.stages] == [(5, 1e-2), (5, 1e-3)]
    third = dataclasses.replace(config.stages[0], name="again")  # lr 3e-3 again, as stage 1
    three = dataclasses.replace(config, stages=(*config.stages, third))
    tuned = tuner.with_winners(three, (1,), {"lr": 1e-2})
    assert [s.lr for s in tuned.stages] == [1e-2, 1e-3, 3e-3]  # stage 2 changed it


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_checkpoint_folder_it_cannot_write_is_one_clear_error(tmp_path: Path) -> None:
    """Nothing can be created under /proc, not even by root: as train says it."""
    config = tmp_path / "tune.toml"
    config.write_text(TUNE_TOML, encoding="utf-8")
    result = runner.invoke(app, ["tune", "--config", str(config), "--device", "cpu",
                                 "--checkpoint-dir", "/proc/slt-checkpoints"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot write /proc/slt-checkpoints/tune: ")
    assert "Choose a place you can write to with --checkpoint-dir" in result.stderr


def _trial(number: int, value: float, clips: int | None, defaults: bool) -> object:
    attrs = {"val_clips": clips} if clips else {}
    trial = optuna.trial.create_trial(value=value, user_attrs={**attrs, "defaults": defaults})
    trial.number = number
    return trial


@pytest.mark.parametrize(("scores", "clips", "kept"), [
    ([0.5, 0.5], 24, "trial 1 ties them (0.5000)"),
    ([0.6, 0.4], 24, "no trial beat them"),
    ([0.5], 24, "no other trial completed"),
    # sqrt(0.542 * 0.458 / 24) = 0.1017: two clips (0.0833) are noise, three (0.125) are not
    ([0.5, 0.5833], 24, "trial 1's 0.5833 is 0.0833 above their 0.5000, within one standard "
                        "error of the difference (0.1017 over 24 validation clips)"),
    ([0.5, 0.625], 24, None),
    # many clips (folds pooled): sqrt(0.901 * 0.099 / 10000) = 0.0030
    ([0.9, 0.9025], 10_000, "trial 1's 0.9025 is 0.0025 above their 0.9000, within one "
                            "standard error of the difference (0.0030 over 10000 validation "
                            "clips)"),
    ([0.9, 0.9035], 10_000, None),
    # beyond the noise but not a whole clip (a mean over folds can differ by less)
    ([0.999994, 1.0], 100_000, "trial 1's 1.0000 is 0.0000 above their 1.0000, less than one "
                               "of the 100000 validation clips"),
    ([0.5, 0.51], None, None),  # an older study's trials: nothing to judge the noise by
])
def test_a_winner_must_beat_the_defaults_beyond_the_validation_noise(
        scores: list[float], clips: int | None, kept: str | None) -> None:
    from slt_cli.tune.study import kept_defaults_because

    trials = [_trial(number, score, clips, defaults=number == 0)
              for number, score in enumerate(scores)]
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert kept_defaults_because(best, trials[0], trials) == kept


def test_a_search_says_each_note_once_and_how_a_long_trial_is_going(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import slt_cli.tune.console
    from tests.corpora import write_mediapipe

    write_mediapipe(tmp_path / "mp", signs=("yes", "no", "hi", "bye"), sequences=4)
    monkeypatch.setattr(slt_cli.tune.console, "PROGRESS_SECONDS", 0.0)
    result = _tune(tmp_path, "--stages", "1", "--trials", "3", "--data",
                   f"mediapipe:{tmp_path / 'mp'}")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert sum("frames of 1662 values in the order" in line for line in lines) == 1
    assert sum("the data names no people" in line for line in lines) == 1
    assert "  trial   0  stage 1 epoch 1/2  val acc " in result.stderr
    assert "  trial   2  stage 1 epoch 2/2  val acc " in result.stderr


def test_the_trials_figure_has_whole_trial_numbers_every_point_inside_and_no_importance_of_few(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import slt_cli.show.plots as plots
    from slt_cli.tune.results import TrialRow

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.append(figure))
    rows = [TrialRow(study="s", number=n, params={"lr": 0.1 * n}, score=score, state=state,
                     seconds=1.0, defaults=n == 0)
            for n, (score, state) in enumerate([(0.5, "complete"), (1.0, "complete"),
                                                (0.0, "pruned")])]
    plots.save_tune_figure([("s", rows, {"lr": 0.7, "dropout": 0.3})], tmp_path / "t.png")
    (figure,) = drawn
    figure.canvas.draw()
    history, bars = figure.axes[:2]
    ticks = [tick for tick in history.get_xticks()
             if history.get_xlim()[0] <= tick <= history.get_xlim()[1]]
    assert ticks == [0, 1, 2]
    low, high = history.get_ylim()
    left, right = history.get_xlim()
    assert low < 0.0 and high > 1.0 and left < 0 and right > 2  # no point on the frame
    legend = history.get_legend().get_window_extent()
    assert legend.x0 >= history.get_window_extent().x1  # beside the points, not over them
    assert not bars.patches  # no importance bars from 2 complete trials
    assert [text.get_text() for text in bars.texts] == [
        "importance of each setting: from 10 complete trials\n(this study has 2)"]


def test_a_trial_running_at_the_end_of_the_timeout_stops_at_its_next_epoch(
        tmp_path: Path) -> None:
    # Optuna looks at --timeout between trials only: a long trial begun just before the
    # end ran to its end. Now it stops after the epoch in which time runs out.
    slow = (TUNE_TOML.replace("epochs = 2\nlr = 3e-3", "epochs = 80\nlr = 3e-3")  # > 1 s
            .replace("[tune]\n", '[tune]\npruner = "none"\n'))
    assert slow.count("epochs = 80") == 1 and 'pruner = "none"' in slow
    (tmp_path / "tune.toml").write_text(slow, encoding="utf-8")
    first = _tune(tmp_path, "--stages", "1", "--trials", "1")  # the defaults, whole
    assert first.exit_code == 0, first.output
    result = _tune(tmp_path, "--stages", "1", "--trials", "3", "--timeout", "1s", "--resume",
                   "--json")
    assert result.exit_code == 0, result.output
    stopped = re.search(r"note: slt\.stage1: trial 1 stopped after (\d+) epoch\(s\), at the "
                        r"end of its share of --timeout", result.stderr)
    assert stopped and 1 <= int(stopped.group(1)) < 80, result.stderr
    trials = json.loads(result.stdout)["studies"][0]["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "complete"), (1, "pruned")]


def test_a_stage_that_runs_out_of_its_share_of_the_timeout_says_how_many_trials_it_got(
        tmp_path: Path) -> None:
    slow = TUNE_TOML.replace("epochs = 2\nlr = 3e-3", "epochs = 40\nlr = 3e-3")  # > 1 s
    assert slow != TUNE_TOML
    (tmp_path / "tune.toml").write_text(slow, encoding="utf-8")
    result = _tune(tmp_path, "--stages", "1", "--trials", "5", "--timeout", "1s")
    assert result.exit_code == 0, result.output
    assert re.search(r"note: slt\.stage1: [1-4] of 5 trials within its share of --timeout "
                     r"\(1\.0s\)", result.stderr), result.stderr
