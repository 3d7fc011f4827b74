from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slt_cli.cfg.config import (
    CONTINUE_TYPES,
    build_config,
    configured_checkpoint_dir,
    default_config_text,
    find_config,
    load_config,
    parse_config,
    parse_stage_selection,
    quick_test_config,
)
from slt_cli.errors import ConfigError
from tests.cli import slt

ROOT = Path(__file__).resolve().parents[1]


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "my.toml")
    return caught.value.problems


def test_default_config_has_the_five_stages_and_presets() -> None:
    config = load_config()
    assert [s.name for s in config.stages] == [
        "baseline", "augmentation", "regularization", "fine_tuning", "polishing"]
    assert config.stages[0].label_smoothing == 0.0
    assert config.stages[2].label_smoothing == 0.1
    assert not config.stages[0].augment.enabled and config.stages[1].augment.enabled
    assert config.stages[4].averaging in ("ema", "swa")
    assert config.stages[3].lr < config.stages[2].lr and config.stages[4].lr < config.stages[3].lr
    assert set(CONTINUE_TYPES) <= set(config.presets)


def test_shipped_default_is_the_top_level_stages_toml() -> None:
    assert (ROOT / "stages.toml").read_text(encoding="utf-8") == default_config_text()


def test_unknown_keys_name_file_table_and_key() -> None:
    text = default_config_text().replace("[run]\n", "[run]\nlearning_rate = 3\n", 1)
    text = text.replace("[data]\n", "[data]\nshuffle = true\n", 1)
    problems = problems_of(text)
    assert any(p.startswith("my.toml: run.learning_rate: unknown key; expected one of:")
               for p in problems)
    assert any(p.startswith("my.toml: data.shuffle: unknown key") for p in problems)
    assert len(problems) == 2


def test_wrong_types_and_impossible_values_are_all_reported_at_once() -> None:
    text = """
[run]
seed = "zero"
[[stages]]
name = "a"
epochs = 0
lr = -1.0
[[stages]]
name = "a"
epochs = 2.5
[stages.augment]
rotate = "lots"
[continue.fine_tune]
[continue.regularization]
[continue.exploration]
"""
    assert problems_of(text) == [
        "my.toml: run.seed: must be an integer, got a string",
        "my.toml: stages[0].epochs: must be > 0",
        "my.toml: stages[0].lr: must be > 0",
        "my.toml: stages[1].epochs: must be an integer, got a number",
        "my.toml: stages[1].augment.rotate: must be a number, got a string",
        "my.toml: stages[1].name: duplicate stage name 'a'",
    ]


def test_model_settings_are_checked_against_the_builder() -> None:
    text = default_config_text().replace('name = "conv_transformer"',
                                         'name = "conv_transformer"\nwidth = 3\ndim = -2')
    problems = problems_of(text)
    assert any("my.toml: model.width: unknown setting" in p for p in problems)
    assert any("my.toml: model.dim:" in p for p in problems)


def test_a_users_file_needs_only_what_differs() -> None:
    packaged = load_config()
    config = parse_config("[run]\nseed = 1\n[continue.fine_tune]\nepochs = 2\n"
                          "[continue.fine_tune.augment]\nmirror = 0.0\n", "my.toml")
    assert config.run == dataclasses.replace(packaged.run, seed=1)
    assert config.stages == packaged.stages and config.data == packaged.data
    tuned = packaged.presets["fine_tune"]
    assert config.presets["fine_tune"] == dataclasses.replace(
        tuned, epochs=2, augment=dataclasses.replace(tuned.augment, mirror=0.0))
    assert config.presets["exploration"] == packaged.presets["exploration"]
    assert problems_of("stages = []\n") == [
        "my.toml: stages: must be one or more [[stages]] tables"]


def test_each_stage_starts_from_the_stage_before_it() -> None:
    config = parse_config("""
[[stages]]
name = "a"
description = "first"
lr = 0.01
dropout = 0.2
[stages.augment]
rotate = 10.0
mirror = 0.5
[[stages]]
name = "b"
epochs = 3
[stages.augment]
mirror = 0.0
mixup = 0.3
""", "my.toml")
    first, second = config.stages
    assert (second.lr, second.dropout, second.epochs, first.epochs) == (0.01, 0.2, 3, 10)
    assert (second.augment.rotate, second.augment.mirror, second.augment.mixup) == (
        10.0, 0.0, 0.3)
    assert second.description == ""  # names and descriptions are never inherited
    assert first.augment.mixup == 0.0


def test_an_inherited_mistake_is_reported_once_where_it_was_written() -> None:
    text = "[[stages]]\nname = 'a'\nlr = -1.0\n[[stages]]\nname = 'b'\n[[stages]]\n"
    assert problems_of(text) == [
        "my.toml: stages[0].lr: must be > 0",
        "my.toml: stages[2].name: must be a non-empty identifier of letters, digits and _"]


def test_a_full_file_of_before_inheritance_resolves_as_it_did() -> None:
    full = load_config(ROOT / "tests" / "fixtures" / "full_stages.toml")
    packaged = load_config()
    assert (full.run, full.data, full.model, full.stages, full.presets) == (
        packaged.run, packaged.data, packaged.model, packaged.stages, packaged.presets)


def test_invalid_toml_names_the_file() -> None:
    assert problems_of("[run\n")[0].startswith("my.toml: not valid TOML")


def test_config_file_choice(tmp_path: Path) -> None:
    assert find_config(None) is None  # built-in
    local = Path.cwd() / "stages.toml"
    local.write_text(default_config_text().replace('checkpoint_dir = "checkpoints"',
                                                   'checkpoint_dir = "elsewhere"'))
    assert find_config(None) == local
    assert load_config(find_config(None)).run.checkpoint_dir == "elsewhere"
    assert configured_checkpoint_dir() == Path("elsewhere")
    explicit = tmp_path / "other.toml"
    assert find_config(explicit) == explicit


@pytest.mark.parametrize(("text", "words"), [
    (b"\x00\x01\xff", "not UTF-8 text"), (b"[run\n", "not valid TOML"),
    (b"run = 3\n", "[run] is not a table"),
    (b"[run]\ncheckpoint_dir = 3\n", "[run] checkpoint_dir is not a string"),
])
def test_list_reads_past_a_broken_local_config_and_says_so(text: bytes, words: str) -> None:
    Path("stages.toml").write_bytes(text)
    result = slt("list")
    assert result.exit_code == 0
    assert words in result.stderr and "using the default checkpoint folder" in result.stderr


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


NAMES = ["baseline", "augmentation", "regularization", "fine_tuning", "polishing"]


@pytest.mark.parametrize(("text", "expected"), [
    ("all", [1, 2, 3, 4, 5]), ("3", [3]), ("2-4", [2, 3, 4]), ("1,3,5", [1, 3, 5]),
    ("5,1-2", [1, 2, 5]), (" 2 - 3 ", [2, 3]), ("augmentation", [2]),
    ("baseline-regularization", [1, 2, 3]), ("polishing,1", [1, 5]),
])
def test_stage_selection(text: str, expected: list[int]) -> None:
    assert parse_stage_selection(text, NAMES) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("6", "no stage 6"), ("0-2", "no stage 0"), ("4-2", "runs backwards"),
    ("x", "no stage 'x'"), ("", "no stage ''"), ("polish", "no stage 'polish'"),
])
def test_bad_stage_selection(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_stage_selection(text, NAMES)


def test_config_round_trips_through_its_dict() -> None:
    config = load_config()
    assert build_config(config.to_dict(), "again") == dataclasses.replace(config, source="again")
    # A Config built in Python with fewer stages drops the spaces of the stages it lost.
    first = dataclasses.replace(config, stages=config.stages[:1])
    assert "augmentation" in config.tune.stages
    assert build_config(first.to_dict(), "first").stages == config.stages[:1]


def test_quick_test_config_cuts_epochs_and_forces() -> None:
    quick = quick_test_config(epochs_per_stage=1)
    assert [s.epochs for s in quick.stages] == [1] * 5
    assert quick.run.improvement_threshold == -1.0


def test_patience_is_a_whole_number_of_epochs_from_0() -> None:
    text = default_config_text().replace("patience = 0 ", "patience = -1 ", 1)
    text = text.replace("patience = 5 ", "patience = 2.5 ", 1)
    text = text.replace("[continue.fine_tune]\n", "[continue.fine_tune]\npatience = -3\n", 1)
    assert problems_of(text) == [
        "my.toml: stages[0].patience: must be >= 0",
        "my.toml: stages[2].patience: must be an integer, got a number",
        "my.toml: continue.fine_tune.patience: must be >= 0",
    ]
    config = load_config()
    assert [s.patience for s in config.stages] == [0, 0, 5, 5, 5]
    assert all(p.patience == 0 for p in config.presets.values())  # off unless a preset sets it


def test_normalise_defaults_to_the_hands_shapes_and_takes_only_known_modes() -> None:
    assert load_config().data.normalise == "sequence+hands"  # it won on all the real sets
    text = """
[data]
normalise = "hands"
[[stages]]
name = "a"
[continue.fine_tune]
[continue.regularization]
[continue.exploration]
"""
    assert problems_of(text) == [
        "my.toml: data.normalise: must be one of parts, sequence, sequence+hands"]


def test_hand_augmentation_settings_are_checked_like_the_others() -> None:
    text = default_config_text().replace("mirror = 0.5                  # probability",
                                         "hand_scale = 1.0\nhand_rotate = -5\n"
                                         "mirror = 0.5                  # probability", 1)
    assert problems_of(text) == [
        "my.toml: stages[1].augment.hand_rotate: must be >= 0",
        "my.toml: stages[1].augment.hand_scale: must be below 1",
    ]
