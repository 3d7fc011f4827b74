"""Tests for the model registry and the architectures behind it (CPU, a few seconds)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slt_cli.errors import ConfigError
from slt_cli.models import (
    DEFAULT_MODEL,
    MODEL_BUILDERS,
    build_model,
    model_setting_problems,
    takes_joints,
)
from slt_cli.models.ensemble import ENSEMBLE

MODEL_NAMES = sorted(MODEL_BUILDERS)
KNOWN = ", ".join(MODEL_NAMES)


def landmark_names(features: int) -> list[str]:
    """Names of as many landmarks as ``features`` holds (the fewest channels per landmark
    that divide it: 3 = x, y and presence), a hand's first, for a graph network."""
    width = next(w for w in (3, 4, 5, 7) if features % w == 0)
    return [f"right_hand_{i}" for i in range(features // width)]


def make(
    name: str,
    *,
    features: int = 6,
    classes: int = 3,
    frames: int = 8,
    seed: int = 0,
    **settings: object,
) -> nn.Module:
    torch.manual_seed(seed)
    joints = landmark_names(features) if takes_joints(name) else None
    return build_model(
        name, in_features=features, num_classes=classes, num_frames=frames, joints=joints,
        **settings
    )


def set_dropout(model: nn.Module, p: float) -> None:
    """What the engine does at the start of each stage."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


# --- registry -------------------------------------------------------------------


def test_default_model_is_registered() -> None:
    assert DEFAULT_MODEL in MODEL_BUILDERS


def test_the_config_knows_every_model_without_importing_torch() -> None:
    from slt_cli.cfg import config

    assert sorted(config.MODEL_NAMES) == sorted(MODEL_BUILDERS)
    # the sidecar checks graph networks' landmark names without importing torch
    assert sorted(config.JOINT_MODELS) == [name for name in MODEL_NAMES if takes_joints(name)]
    assert config.ModelConfig.name == DEFAULT_MODEL
    assert config.ENSEMBLE_MODEL == ENSEMBLE


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builders_take_keyword_only_arguments_with_documented_defaults(name: str) -> None:
    builder = MODEL_BUILDERS[name]
    parameters = inspect.signature(builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert list(parameters)[:3] == ["in_features", "num_classes", "num_frames"]
    data = 4 if takes_joints(name) else 3  # and the landmarks' names
    assert (list(parameters)[3] == "joints") is takes_joints(name)
    for setting in list(parameters)[data:]:
        default = parameters[setting].default
        assert type(default) in (int, float, bool, str), setting
        assert f"{setting}:" in (builder.__doc__ or ""), f"{setting} is undocumented"


def test_default_model_size_fits_a_cpu() -> None:
    model = make(DEFAULT_MODEL, features=300, classes=20, frames=48)
    parameters = sum(p.numel() for p in model.parameters())
    assert 100_000 <= parameters <= 400_000


# --- setting checks ---------------------------------------------------------------


def test_valid_settings_have_no_problems() -> None:
    settings = {"dim": 32, "depth": 1, "heads": 2, "kernel_size": 4, "expand": 1.5}
    assert model_setting_problems("conv_transformer", settings) == []
    assert model_setting_problems("gru", {"bidirectional": False, "layers": 1}) == []
    assert model_setting_problems("mlp", {}) == []


def test_unknown_model_lists_the_known_ones() -> None:
    assert model_setting_problems("x", {"dim": 3}) == [
        f"model.name: unknown model 'x'; expected one of: {KNOWN}"
    ]


def test_unknown_setting_lists_the_accepted_ones_in_signature_order() -> None:
    assert model_setting_problems("gru", {"foo": 1}) == [
        "model.foo: unknown setting; expected one of: dim, hidden, layers, bidirectional"
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dim", -3, "model.dim: must be an integer between 1 and 4096, got -3"),
        ("dim", 0, "model.dim: must be an integer between 1 and 4096, got 0"),
        ("dim", 64.0, "model.dim: must be an integer between 1 and 4096, got 64.0"),
        ("dim", True, "model.dim: must be an integer between 1 and 4096, got true"),
        ("dim", "64", "model.dim: must be an integer between 1 and 4096, got '64'"),
        ("expand", 0.0, "model.expand: must be a number > 0 and <= 64, got 0.0"),
        ("expand", float("nan"), "model.expand: must be a number > 0 and <= 64, got nan"),
        ("expand", "2", "model.expand: must be a number > 0 and <= 64, got '2'"),
    ],
)
def test_bad_values_are_reported_with_their_path(key: str, value: object, message: str) -> None:
    assert model_setting_problems("conv_transformer", {key: value}) == [message]


def test_integers_are_accepted_for_float_settings() -> None:
    assert model_setting_problems("conv_transformer", {"expand": 3}) == []
    model = make("conv_transformer", expand=3)
    assert model(torch.zeros(2, 8, 6)).shape == (2, 3)


def test_bools_must_be_bools() -> None:
    assert model_setting_problems("gru", {"bidirectional": 1}) == [
        "model.bidirectional: must be true or false, got 1"
    ]


def test_string_settings_must_be_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    def build_fake(
        *, in_features: int, num_classes: int, num_frames: int, pool: str = "mean"
    ) -> nn.Module:
        return nn.Linear(in_features, num_classes)

    monkeypatch.setitem(MODEL_BUILDERS, "fake", build_fake)
    assert model_setting_problems("fake", {"pool": "max"}) == []
    assert model_setting_problems("fake", {"pool": 1}) == ["model.pool: must be a string, got 1"]


def test_data_arguments_are_not_settings() -> None:
    assert model_setting_problems("mlp", {"num_classes": 5}) == [
        "model.num_classes: set from the data, not a model setting"
    ]
    assert model_setting_problems("gcn", {"joints": ["a"]}) == [
        "model.joints: set from the data, not a model setting"
    ]


def test_a_name_key_left_in_the_table_is_ignored() -> None:
    assert model_setting_problems("gru", {"name": "gru", "hidden": 8}) == []


def test_all_problems_are_reported_at_once_in_table_order() -> None:
    problems = model_setting_problems("conv_transformer", {"heads": -1, "bar": 2, "dim": "x"})
    assert [p.split(":")[0] for p in problems] == ["model.heads", "model.bar", "model.dim"]


def test_heads_must_divide_dim() -> None:
    assert model_setting_problems("conv_transformer", {"dim": 30, "heads": 4}) == [
        "model.heads: must divide model.dim (30), got 4"
    ]
    assert model_setting_problems("conv_transformer", {"dim": 30, "heads": 3}) == []


def test_build_model_raises_config_error_for_an_unknown_name() -> None:
    with pytest.raises(ConfigError) as caught:
        build_model("transformer9000", in_features=4, num_classes=2, num_frames=8)
    assert caught.value.problems == [
        f"model.name: unknown model 'transformer9000'; expected one of: {KNOWN}"
    ]


def test_build_model_raises_config_error_for_bad_settings() -> None:
    with pytest.raises(ConfigError) as caught:
        build_model("gru", in_features=4, num_classes=2, num_frames=8, hidden=0, foo=1)
    assert len(caught.value.problems) == 2


# --- architectures ----------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(
    ("batch", "frames", "features", "classes"), [(2, 8, 3, 3), (3, 48, 300, 20), (1, 32, 4, 7)]
)
def test_maps_clips_to_logits(
    name: str, batch: int, frames: int, features: int, classes: int
) -> None:
    model = make(name, features=features, classes=classes, frames=frames)
    logits = model(torch.randn(batch, frames, features))
    assert logits.shape == (batch, classes)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_runs_on_clips_of_another_length(name: str) -> None:
    model = make(name, frames=16)
    assert model(torch.randn(2, 5, 6)).shape == (2, 3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_batchnorm_and_no_hidden_dropout(name: str) -> None:
    model = make(name)
    modules = list(model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
    assert not any(isinstance(m, nn.MultiheadAttention) and m.dropout for m in modules)
    assert not any(isinstance(m, nn.RNNBase) and m.dropout for m in modules)
    dropouts = [m for m in modules if isinstance(m, nn.Dropout)]
    assert len(dropouts) >= 2
    assert all(d.p == 0.0 for d in dropouts)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dropout_set_by_the_engine_acts_in_training_only(name: str) -> None:
    model = make(name)
    x = torch.randn(8, 8, 6)
    model.eval()
    eval_before = model(x)
    model.train()
    torch.manual_seed(1)
    train_before = model(x)
    set_dropout(model, 0.5)
    torch.manual_seed(1)
    assert not torch.allclose(model(x), train_before)
    model.eval()
    assert torch.equal(model(x), eval_before)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_model(name: str) -> None:
    first, second = make(name, seed=3).state_dict(), make(name, seed=3).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = make(name, seed=4).state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_round_trip(name: str) -> None:
    source, target = make(name, seed=0), make(name, seed=1)
    target.load_state_dict(source.state_dict())
    x = torch.randn(4, 8, 6)
    source.eval()
    target.eval()
    assert torch.equal(source(x), target(x))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_steps_learn_a_separable_problem(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(3, 8, 6, generator=generator)
    labels = torch.arange(48) % 3
    clips = prototypes[labels] + 0.5 * torch.randn(48, 8, 6, generator=generator)
    model = make(name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(3), abs=0.15)  # a calm start
    assert losses[-1] < 0.3 * losses[0]


# --- devices (not in the default run) --------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_trains_on_cuda_under_data_parallel_and_bf16(name: str) -> None:
    cpu_model = make(name, features=300, classes=20, frames=48)
    clips, labels = torch.randn(16, 48, 300), torch.randint(0, 20, (16,))
    cpu_model.eval()
    expected = cpu_model(clips)
    model = nn.DataParallel(cpu_model.cuda())  # what the engine does with several GPUs
    with torch.no_grad():
        # TF32 convolutions and matmuls on the GPU: close, not equal.
        torch.testing.assert_close(model(clips.cuda()).cpu(), expected, atol=5e-3, rtol=5e-3)
    model.train()
    set_dropout(model, 0.2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(clips.cuda())
    F.cross_entropy(logits.float(), labels.cuda()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_resolved_settings_fill_in_the_builder_defaults() -> None:
    from slt_cli.models import resolved_settings

    settings = resolved_settings("gru", {"hidden": 8})
    assert settings == {"dim": 64, "hidden": 8, "layers": 2, "bidirectional": True}


# --- the graph network's view of the data ------------------------------------------


@pytest.mark.parametrize(("channels", "motion"), [(2, False), (3, False), (2, True), (3, True)])
def test_the_graph_network_regroups_the_features_landmark_by_landmark(channels: int,
                                                                       motion: bool) -> None:
    from slt_cli.data.transforms import features
    from slt_cli.models.gcn import per_landmark_index

    landmarks = torch.randn(2, 5, 4, channels)
    landmarks[0, 1, 2] = float("nan")  # a missing landmark
    flat = features(landmarks, motion)
    grouped = flat[..., per_landmark_index(flat.shape[-1], 4)].view(2, 5, 4, -1)
    present = ~torch.isnan(landmarks[..., :1])
    coordinates = torch.nan_to_num(landmarks)
    assert torch.equal(grouped[..., :channels], coordinates)
    assert torch.equal(grouped[..., -1:], present.float())
    if motion:
        steps = torch.nan_to_num(landmarks[:, 1:] - landmarks[:, :-1])
        assert torch.equal(grouped[:, 1:, :, channels:2 * channels], steps)
        assert not grouped[:, 0, :, channels:2 * channels].any()


def test_features_that_are_no_layout_of_the_landmarks_are_refused() -> None:
    from slt_cli.models.gcn import per_landmark_index

    with pytest.raises(ValueError, match="6 features are not a layout of 4 landmarks"):
        per_landmark_index(6, 4)
    with pytest.raises(ValueError, match="are not a layout"):
        per_landmark_index(12, 2)  # 6 a landmark: no layout features() makes


def test_the_skeleton_joins_mediapipe_neighbours_by_meaning() -> None:
    from slt_cli.models.skeleton import adjacency

    names = ["left_hand_0", "left_hand_1", "pose_left_wrist", "pose_16", "right_hand_0",
             "face_61", "face_146", "left_hand_position", "mystery", "left_hand_shape_1",
             "left_hand_shape_2", "right_hand_shape_2"]
    matrix = adjacency(names)
    linked = {(names[i], names[j]) for i, j in (matrix > 0).nonzero().tolist() if i < j}
    assert linked == {("left_hand_0", "left_hand_1"), ("left_hand_0", "pose_left_wrist"),
                      ("pose_16", "right_hand_0"), ("face_61", "face_146"),
                      ("left_hand_0", "left_hand_position"),
                      ("left_hand_1", "left_hand_shape_1"),  # a point and its shape's
                      ("left_hand_shape_1", "left_hand_shape_2")}  # the hand's own edges
    assert torch.equal(matrix, matrix.T)
    # D^-1/2 (A + I) D^-1/2: a landmark alone keeps itself, the wrist shares with 3 others
    assert matrix[8, 8] == 1.0 and matrix[8].sum() == 1.0
    assert matrix[0, 0] == pytest.approx(1 / 4)


def test_the_graph_network_reads_its_skeleton_from_the_names() -> None:
    clips = torch.randn(2, 8, 9)  # 3 landmarks of x, y and presence
    hand = ["right_hand_0", "right_hand_1", "right_hand_2"]
    torch.manual_seed(0)
    joined = build_model("gcn", in_features=9, num_classes=3, num_frames=8, joints=hand)
    torch.manual_seed(0)
    apart = build_model("gcn", in_features=9, num_classes=3, num_frames=8,
                        joints=["a", "b", "c"])
    assert joined.state_dict().keys() == apart.state_dict().keys()  # the skeleton is no weight
    assert not torch.allclose(joined(clips), apart(clips))


def test_the_graph_network_wants_an_odd_temporal_kernel() -> None:
    assert model_setting_problems("gcn", {"kernel_size": 4}) == [
        "model.kernel_size: must be odd, got 4"]
    assert model_setting_problems("gcn", {"kernel_size": 5, "dim": 8}) == []


@pytest.mark.parametrize(("name", "low", "high"), [("resnet1d", 300_000, 600_000),
                                                    ("gcn", 5_000, 60_000)])
def test_family_sizes_are_as_documented(name: str, low: int, high: int) -> None:
    model = make(name, features=300, classes=20, frames=48)
    assert low <= sum(p.numel() for p in model.parameters()) <= high
