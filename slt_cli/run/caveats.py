"""What a run's user should know before it starts: settings that this run's data or
devices make do nothing, and a validation split that says little about new people.

``Trainer`` reports each as a note; none stops the run.
"""

from __future__ import annotations

from slt_cli.data import PreparedData
from slt_cli.data.transforms import dominant_hand_swap, hand_points, mirror_permutation
from slt_cli.run.plan import RunPlan


def run_caveats(plan: RunPlan, data: PreparedData, devices: int) -> list[str]:
    """The notes for ``plan`` on ``data`` with ``devices`` DataParallel GPUs, in the
    order they are told."""
    config, ahead = plan.config, plan.steps[plan.position:]
    found = []
    if config.run.compile and devices > 1:
        found.append("compile is off with DataParallel; start with torchrun "
                     "(DistributedDataParallel) to compile on several GPUs")
    if config.run.mirror_average and mirror_permutation(data.joints) is None:
        found.append("mirror_average is on, but the landmarks have no left/right names to "
                     "swap: clips are scored unmirrored")
    hands_asked = any(step.stage.augment.hand_scale > 0 or step.stage.augment.hand_rotate > 0
                      for step in ahead)
    if hands_asked and not hand_points(data.joints):
        found.append("hand_scale or hand_rotate is on, but the landmarks name no hands "
                     "(left_hand_*, right_hand_*): the hands are not moved")
    if plan.data.dominant_hand == "right" and dominant_hand_swap(data.joints, "right") is None:
        found.append("dominant_hand is right, but the landmarks name no left and right "
                     "hand: clips are kept as recorded")
    if plan.kind == "train" and (caveat := data.validation_caveat()):
        found.append(caveat)
    if data.num_frames == 1:
        found.append("every clip is a single frame: the temporal augmentations (speed, "
                     "time_mask) are off")
    return found
