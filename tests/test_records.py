"""The persisted run records — the resume state's plan and the cross-validation summary —
read back as typed records: what was written comes back equal, and an edited file is a
clear error (exit 2, one line naming the key), never a crash or a write elsewhere."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from slt_cli import Trainer, load_config
from slt_cli.cli import app
from slt_cli.common.reporting import Reporter
from slt_cli.errors import CheckpointError, RunInterrupted
from slt_cli.run.foldsummary import FoldsSummary
from slt_cli.run.plan import RunPlan
from slt_cli.run.runfolder import RunFolder

runner = CliRunner()


class StopAtThirdBatch(Reporter):
    def __init__(self) -> None:
        self.seen, self.trainer = 0, None

    def batch_done(self, **_: Any) -> None:
        self.seen += 1
        if self.seen == 3:
            self.trainer.request_stop()


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder whose 2-stage run stopped mid-stage 2 (tiny data, batch 8)."""
    from tests.conftest import TINY_TOML

    root = tmp_path_factory.mktemp("interrupted")
    (root / "tiny.toml").write_text(TINY_TOML)
    config = load_config(root / "tiny.toml")
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, batch_size=16))
    reporter = StopAtThirdBatch()
    trainer = Trainer(config, checkpoint_dir=root / "ck", reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(RunInterrupted):
        trainer.train(force=True)
    return root / "ck"


def test_a_saved_plan_reads_back_equal(interrupted: Path) -> None:
    plan, stage, _ = RunFolder(interrupted).load_state()
    assert RunPlan.from_json(json.loads(json.dumps(plan.to_json())), "again") == plan
    assert plan.kind == "train" and plan.step.stage.name == plan.config.stages[
        plan.step.stage_idx - 1].name
    assert stage["batch"] >= 1


def edit_state(folder: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    copy = tmp_path / "ck"
    shutil.copytree(folder, copy)
    path = copy / "resume" / "state.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))
    return copy


@pytest.mark.parametrize(("change", "named"), [
    (lambda s: s["steps"][0].update(best_name="../../elsewhere"), "steps[0].best_name"),
    (lambda s: s["steps"][0]["stage"].update(lr=-1.0), "steps[0].stage.lr"),
    (lambda s: s.update(kind="export"), "kind: must be one of train, continue"),
    (lambda s: s.update(position=7), "position: must name one of the 2 steps"),
    (lambda s: s["config"]["run"].update(batch_size="many"), "run.batch_size"),
    (lambda s: s.pop("record"), "record: must be a table"),
    (lambda s: s["start"].update(metrics=[0.5]), "start.metrics"),
])
def test_an_edited_resume_state_is_refused_naming_the_key(
        interrupted: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None],
        named: str) -> None:
    copy = edit_state(interrupted, tmp_path, change)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    result = runner.invoke(app, ["train", "--resume", "--checkpoint-dir", str(copy)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and named in lines[0], result.stderr
    after = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.name != ".slt.lock")
    assert after == [p for p in before if p.name != ".slt.lock"]  # nothing lost or added


def test_a_cross_validation_summary_reads_back_and_an_edited_one_is_refused(
        tmp_path: Path) -> None:
    from slt_cli.run.folds import CrossValidation
    from tests.conftest import TINY_TOML

    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    config = load_config(tmp_path / "tiny.toml")
    result = CrossValidation(config, 2, checkpoint_dir=tmp_path / "cv").run([1], force=True)
    summary = FoldsSummary.read(tmp_path / "cv")
    assert summary is not None and summary.complete and summary.stages == result.stages
    written = json.loads(json.dumps(summary.to_json(tmp_path / "cv")))
    assert FoldsSummary.from_json(written, "again") == summary

    path = tmp_path / "cv" / "folds.json"
    raw = json.loads(path.read_text())
    raw["complete"], raw["runs"] = False, raw["runs"][:1]
    raw["request"]["stages"] = ["one"]
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"request\.stages: must list stage numbers"):
        FoldsSummary.read(tmp_path / "cv")
    shown = runner.invoke(app, ["train", "--folds", "2", "--resume",
                                "--checkpoint-dir", str(tmp_path / "cv")])
    assert shown.exit_code == 2 and "request.stages" in shown.stderr
