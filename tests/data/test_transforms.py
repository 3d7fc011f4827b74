from __future__ import annotations

import torch

from slt_cli.config import AugmentConfig
from slt_cli.data.transforms import augment


def test_joint_drop_never_empties_a_single_landmark_clip() -> None:
    # One tracked point (LIBRAS-like): dropping it would leave an empty, labelled clip.
    x = torch.randn(256, 10, 1, 2)
    out = augment(x, AugmentConfig(joint_drop=0.9), torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_joint_drop_keeps_at_least_one_landmark_of_every_clip() -> None:
    x = torch.randn(512, 6, 3, 2)
    out = augment(x, AugmentConfig(joint_drop=0.6), torch.Generator().manual_seed(0))
    dropped = torch.isnan(out).all(dim=(1, 3))  # (B, J): a landmark gone for the whole clip
    assert not dropped.all(dim=1).any()
    # ...while still dropping landmarks at roughly the asked-for rate (0.6 minus the
    # all-three cases, 0.216, that are put back): 0.6 - 0.216 = 0.384 of them.
    assert 0.33 < dropped.float().mean().item() < 0.44
