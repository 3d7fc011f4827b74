from __future__ import annotations

import torch

from slt_cli.cfg.config import AugmentConfig
from slt_cli.data.transforms import NoiseBank, augment, hand_points, mix


def test_joint_drop_never_empties_a_single_landmark_clip() -> None:
    # One tracked point (LIBRAS-like): dropping it would leave an empty, labelled clip.
    x = torch.randn(256, 10, 1, 2, generator=torch.Generator().manual_seed(5))
    out = augment(x, AugmentConfig(joint_drop=0.9), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_joint_drop_keeps_at_least_one_landmark_of_every_clip() -> None:
    x = torch.randn(512, 6, 3, 2, generator=torch.Generator().manual_seed(6))
    out = augment(x, AugmentConfig(joint_drop=0.6), torch.Generator().manual_seed(0))
    dropped = torch.isnan(out).all(dim=(1, 3))  # (B, J): a landmark gone for the whole clip
    assert not dropped.all(dim=1).any()
    # ...while still dropping landmarks at roughly the asked-for rate (0.6 minus the
    # all-three cases, 0.216, that are put back): 0.6 - 0.216 = 0.384 of them.
    assert 0.33 < dropped.float().mean().item() < 0.44


def test_shear_slants_x_by_y_and_leaves_y() -> None:
    x = torch.randn(64, 5, 4, 2, generator=torch.Generator().manual_seed(1))
    out = augment(x, AugmentConfig(shear=0.3), torch.Generator().manual_seed(0))
    assert torch.allclose(out[..., 1], x[..., 1])
    # x' = x + s * y with one shear factor s per clip: least squares over its points.
    moved, height = (out[..., 0] - x[..., 0]).flatten(1), x[..., 1].flatten(1)
    factor = (moved * height).sum(1) / (height * height).sum(1)
    assert torch.allclose(moved, factor[:, None] * height, atol=1e-5)
    assert factor.abs().max() <= 0.3 and factor.abs().max() > 0.2


def test_every_augmentation_keeps_missing_landmarks_missing_and_repeats_with_a_seed() -> None:
    x = torch.randn(32, 12, 6, 3, generator=torch.Generator().manual_seed(2))
    x[:, 3:5, 2] = float("nan")
    settings = AugmentConfig(rotate=20, scale=0.2, shear=0.2, shift=0.1, jitter=0.01,
                             time_mask=0.2, joint_drop=0.1, mirror=0.5)
    first = augment(x, settings, torch.Generator().manual_seed(3), mirror=[0, 1, 3, 2, 5, 4])
    again = augment(x, settings, torch.Generator().manual_seed(3), mirror=[0, 1, 3, 2, 5, 4])
    assert torch.equal(torch.isnan(first), torch.isnan(again))
    assert torch.allclose(first.nan_to_num(), again.nan_to_num())
    # Joint 2 was missing in frames 3-4; after mirroring it may sit at index 3.
    assert torch.isnan(first[:, 3:5, 2:4]).any(dim=-1).any(dim=-1).all()


def test_mixup_blends_chosen_clips_with_a_partner_and_keeps_the_rest() -> None:
    inputs = torch.randn(400, 8, 5, generator=torch.Generator().manual_seed(3))
    blended, partner, weight = mix(inputs, 0.5, torch.Generator().manual_seed(0))
    assert ((weight >= 0.5) & (weight <= 1.0)).all()
    assert 0.4 < (weight < 1.0).float().mean().item() < 0.6  # about half are mixed
    expected = weight[:, None, None] * inputs + (1 - weight[:, None, None]) * inputs[partner]
    assert torch.allclose(blended, expected, atol=1e-6)
    untouched = weight == 1.0
    assert torch.equal(blended[untouched], inputs[untouched])


def test_mixup_off_changes_nothing() -> None:
    inputs = torch.randn(16, 8, 5, generator=torch.Generator().manual_seed(4))
    blended, _, weight = mix(inputs, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(blended, inputs) and (weight == 1.0).all()


def test_mirror_swaps_sides_and_negates_x_also_inside_the_rotation() -> None:
    x = torch.randn(4, 5, 6, 3)
    x[0, 2, 3] = float("nan")
    swap = [0, 1, 3, 2, 5, 4]
    mirrored = x[:, :, swap] * torch.tensor([-1.0, 1.0, 1.0])
    alone = augment(x, AugmentConfig(mirror=1.0), torch.Generator().manual_seed(0), swap)
    torch.testing.assert_close(alone, mirrored, equal_nan=True)
    # With a rotation, the mirror's negation rides in the same product: the result is
    # the rotation of the mirrored clip (one seed draws the same numbers for each piece,
    # whichever others are on).
    settings = AugmentConfig(mirror=1.0, rotate=30.0, shift=0.1)
    both = augment(x, settings, torch.Generator().manual_seed(1), swap)
    expected = augment(mirrored, AugmentConfig(rotate=30.0, shift=0.1),
                       torch.Generator().manual_seed(1))
    torch.testing.assert_close(both, expected, equal_nan=True)


def test_jitter_adds_the_noise_it_is_given_and_draws_its_own_without() -> None:
    x = torch.randn(8, 6, 5, 3, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(x.numel() + 11, generator=torch.Generator().manual_seed(8))
    out = augment(x, AugmentConfig(jitter=0.5), torch.Generator().manual_seed(0), noise=noise)
    # Every coordinate moved by 0.5 times one of the given values, each used once.
    added = ((out - x) / 0.5).flatten().sort().values
    torch.testing.assert_close(added, noise[:x.numel()].sort().values)
    drawn = augment(x, AugmentConfig(jitter=0.5), torch.Generator().manual_seed(0))
    assert not torch.allclose(drawn, out) and 0.3 < (drawn - x).std().item() < 0.7


def test_a_noise_bank_repeats_by_seed_and_epoch_and_moves_its_windows() -> None:
    def epoch(seed: int, number: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        bank = NoiseBank(seed, torch.device("cpu"))
        bank.new_epoch(number, batches=6, per_batch=500)
        return bank.values, [bank.window(batch) for batch in range(6)]

    values, windows = epoch(3, 2)
    again, same = epoch(3, 2)
    assert torch.equal(values, again) and all(map(torch.equal, windows, same))
    assert all(len(window) == 500 for window in windows)
    assert len({float(window[0]) for window in windows}) > 1  # windows start apart
    assert not torch.equal(epoch(3, 3)[0], values) and not torch.equal(epoch(4, 2)[0], values)
    assert abs(values.mean().item()) < 0.1 and 0.9 < values.std().item() < 1.1


def test_hands_are_scaled_and_turned_about_their_wrists_and_nothing_else_moves() -> None:
    joints = ([f"pose_{i}" for i in range(11, 17)] + [f"left_hand_{i}" for i in range(21)]
              + [f"right_hand_{i}" for i in range(21)])
    hands = hand_points(joints)
    assert [(len(points), wrist) for points, wrist in hands] == [(21, 6), (21, 27)]
    x = torch.randn(6, 5, len(joints), 3, generator=torch.Generator().manual_seed(3))
    x[0, :, 6:27] = float("nan")  # clip 0's left hand is never seen
    x[1, 2, 27] = float("nan")  # clip 1's right wrist is missing in frame 2 only
    settings = AugmentConfig(hand_scale=0.3, hand_rotate=40.0)
    out = augment(x, settings, torch.Generator().manual_seed(0), hands=hands)
    assert torch.equal(torch.isnan(out), torch.isnan(x))
    assert torch.equal(out[:, :, :6], x[:, :, :6])  # the body stays
    assert torch.equal(out[1, 2, 28:], x[1, 2, 28:])  # no wrist to turn about: kept
    for points, wrist in hands:
        torch.testing.assert_close(out[..., wrist, :], x[..., wrist, :], rtol=0, atol=0,
                                   equal_nan=True)  # the wrist stays
        # Clips 2-5 are fully seen: one size and one turn per clip and hand, the same
        # in every frame and point; lengths change by one factor within 1 +- 0.3, and
        # depth (off the turned plane) by that factor alone.
        offsets = [t[2:, :, list(points[1:])] - t[2:, :, [wrist]] for t in (x, out)]
        ratio = (offsets[1].norm(dim=-1) / offsets[0].norm(dim=-1)).flatten(1)
        factor = ratio[:, :1]
        torch.testing.assert_close(ratio, factor.expand_as(ratio))
        assert ((factor - 1).abs() <= 0.3 + 1e-6).all() and (factor - 1).abs().max() > 0.05
        torch.testing.assert_close(offsets[1][..., 2],
                                   offsets[0][..., 2] * factor[:, :, None])
        turned = torch.atan2(offsets[1][..., 1], offsets[1][..., 0]) - torch.atan2(
            offsets[0][..., 1], offsets[0][..., 0])
        degrees = torch.rad2deg(torch.remainder(turned + torch.pi, 2 * torch.pi) - torch.pi)
        assert (degrees.flatten(1) - degrees.flatten(1)[:, :1]).abs().max() < 1e-3
        assert degrees.abs().max() <= 40.0 + 1e-3
    # Without named hands, or with the settings at 0, nothing moves and nothing is drawn.
    def identical(a: torch.Tensor, b: torch.Tensor) -> None:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)

    identical(augment(x, settings, torch.Generator().manual_seed(0)), x)
    identical(augment(x, AugmentConfig(rotate=10.0), torch.Generator().manual_seed(0),
                      hands=hands),
              augment(x, AugmentConfig(rotate=10.0), torch.Generator().manual_seed(0)))
