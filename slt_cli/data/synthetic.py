"""Synthetic sign-language keypoint sequences, generated in memory from a seed.

Each sign class is a smooth path of the dominant wrist (a few Fourier components), a
hand shape (per-finger curl and spread) that may change during the sign, a palm
orientation, and for some classes a second hand that mirrors the first or holds still
as a base. Signers differ in body size, place in the frame, tempo, handedness and
personal style, so unseen signers are harder than unseen recordings, as in real corpora.

Coordinates are image-like, as MediaPipe gives them: x to the right and y downwards,
both about 0..1 for the frame; z is depth on the same scale as x, about 0 at the
shoulders and negative towards the camera, one depth scale for all joints (unlike
MediaPipe's wrist-relative hand z). "left"/"right" are the signer's own sides; the
camera faces the signer, so the signer's left shoulder has the larger x.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from slt_cli.data.base import RawData
from slt_cli.errors import DataError

POSE_JOINTS = ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip")
HAND_SIZE = 21  # MediaPipe hand order: wrist, thumb 1-4, index 1-4, middle, ring, pinky
JOINTS: tuple[str, ...] = (
    tuple(f"pose_{name}" for name in POSE_JOINTS)
    + tuple(f"left_hand_{i}" for i in range(HAND_SIZE))
    + tuple(f"right_hand_{i}" for i in range(HAND_SIZE))
)
_LEFT_HAND = slice(len(POSE_JOINTS), len(POSE_JOINTS) + HAND_SIZE)
_RIGHT_HAND = slice(len(POSE_JOINTS) + HAND_SIZE, len(JOINTS))

# Body frame: origin between the shoulders, 1 unit = half the shoulder width (~20 cm),
# x towards the signer's left, y down, z towards the camera negative.
_BODY = np.array([[0, -1.55, -0.45], [0.22, -1.75, -0.35], [-0.22, -1.75, -0.35],
                  [1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0],
                  [0.72, 2.6, 0.05], [-0.72, 2.6, 0.05]])  # elbows, wrists: from the hands
# Right hand, palm to the camera, fingers up, wrist at the origin; thumb first.
_FINGER_BASE = np.array([[0.1, -0.1, -0.04], [0.12, -0.45, 0], [0, -0.47, 0],
                         [-0.1, -0.44, 0], [-0.19, -0.39, 0]])
_FINGER_ANGLE = np.array([0.75, 0.12, 0.0, -0.12, -0.26])  # lean from "up", radians
_SEGMENTS = np.array([[0.18, 0.15, 0.12], [0.2, 0.12, 0.1], [0.22, 0.14, 0.1],
                      [0.2, 0.13, 0.1], [0.16, 0.1, 0.09]])
_CURL_GAIN = np.array([1.4, 1.6, 1.2])  # full curl bends MCP, PIP, DIP by this much
_HARMONICS = 3


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; every field has a working default."""

    classes: int = 20  # number of sign classes
    signers: int = 12  # distinct people; each signs every class `repeats` times
    repeats: int = 12  # recordings of each class by each signer
    frames: int = 48  # longest sequence, in frames; shorter ones are NaN-padded
    val_signers: int = 2  # signers held out for validation (unseen in training)
    test_signers: int = 2  # signers held out for test (0 = no test split)
    seed: int = 0  # the same seed gives the same arrays, NaN positions included


def _check(spec: SyntheticSpec) -> None:
    """Raise one DataError that lists every problem with ``spec``."""
    problems = [f"synthetic: {f.name} must be an integer, got {getattr(spec, f.name)!r}"
                for f in fields(spec) if not isinstance(getattr(spec, f.name), (int, np.integer))
                or isinstance(getattr(spec, f.name), bool)]
    if problems:
        raise DataError("\n".join(problems))
    if spec.classes < 2:
        problems.append(f"synthetic: classes must be >= 2, got {spec.classes}")
    if spec.repeats < 1:
        problems.append(f"synthetic: repeats must be >= 1, got {spec.repeats}")
    if spec.frames < 4:
        problems.append(f"synthetic: frames must be >= 4, got {spec.frames}")
    if spec.val_signers < 1:
        problems.append(f"synthetic: val_signers must be >= 1, got {spec.val_signers}")
    if spec.test_signers < 0:
        problems.append(f"synthetic: test_signers must be >= 0, got {spec.test_signers}")
    if spec.signers < spec.val_signers + spec.test_signers + 1:
        problems.append(f"synthetic: signers ({spec.signers}) must exceed val_signers + "
                        f"test_signers ({spec.val_signers + spec.test_signers}) by at least "
                        "one, so that someone is left to train on")
    if spec.seed < 0:
        problems.append(f"synthetic: seed must be >= 0, got {spec.seed}")
    if not problems:
        # float32 x, and about five times that in working arrays while it is made.
        values = spec.classes * spec.signers * spec.repeats * spec.frames * len(JOINTS) * 3
        gib = values * 4 * 6 / 2**30
        if gib > 16:
            problems.append(f"synthetic: this spec would need about {gib:.0f} GiB of memory")
    if problems:
        raise DataError("\n".join(problems), hint="fewer classes, signers, repeats or frames")


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` from yaw, pitch, roll ``(..., 3)`` in radians."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(c[..., 0]), np.zeros_like(c[..., 0])

    def mat(*rows: np.ndarray) -> np.ndarray:
        return np.stack(rows, axis=-1).reshape(*one.shape, 3, 3)

    yaw = mat(c[..., 0], zero, s[..., 0], zero, one, zero, -s[..., 0], zero, c[..., 0])
    pitch = mat(one, zero, zero, zero, c[..., 1], -s[..., 1], zero, s[..., 1], c[..., 1])
    roll = mat(c[..., 2], -s[..., 2], zero, s[..., 2], c[..., 2], zero, zero, zero, one)
    return yaw @ pitch @ roll


def _path(center: np.ndarray, coef: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Smooth wrist path ``(N, T, 3)`` around ``center (N, 3)`` with sin/cos terms
    ``coef (N, H, 2, 3)``, kept within an arm's reach of the right shoulder."""
    freq = np.pi * np.arange(1, _HARMONICS + 1)
    phase = freq * u[..., None]  # (N, T, H)
    # Subtract each wave's mean over the sign so that `center` is where the hand dwells.
    waves = np.stack([np.sin(phase) - (1 - np.cos(freq)) / freq, np.cos(phase)], axis=-1)
    path = center[:, None] + np.einsum("nthk,nhkc->ntc", waves, coef)
    arm = path - [-1, 0, 0]
    reach = np.linalg.norm(arm, axis=-1, keepdims=True)
    softened = np.where(reach < 2.2, reach, 2.2 + 0.6 * np.tanh((reach - 2.2) / 0.6))
    return [-1, 0, 0] + arm * (softened / np.maximum(reach, 1e-6))


def _hand_shape(angles: np.ndarray, curl: np.ndarray, spread: np.ndarray,
                size: np.ndarray) -> np.ndarray:
    """Right-hand landmarks relative to the wrist, ``(N, T, 21, 3)`` float32.

    Args:
        angles: ``(N, T, 3)`` palm orientation (yaw, pitch, roll) from palm-to-camera.
        curl: ``(N, T, 5)`` finger flexion, 0 = straight, 1 = fist; T may be 1.
        spread: ``(N,)`` how far the fingers fan out, about 0..1.
        size: ``(N,)`` hand length relative to the standard hand.
    """
    f32 = np.float32  # millions of tiny vectors: single precision halves the time
    lean = _FINGER_ANGLE * (0.3 + 1.4 * spread[:, None])  # (N, 5)
    up = np.stack([np.sin(lean), -np.cos(lean), np.zeros_like(lean)], axis=-1).astype(f32)
    palm = np.array([[-0.55, 0, -0.84]] + [[0, 0, -1]] * 4, f32)  # thumb folds across palm
    bend = np.cumsum(curl.astype(f32)[..., None] * _CURL_GAIN.astype(f32), axis=-1)[..., None]
    steps = _SEGMENTS[..., None].astype(f32) * (np.cos(bend) * up[:, None, :, None]
                                                 + np.sin(bend) * palm[:, None])
    fingers = _FINGER_BASE[:, None].astype(f32) + np.concatenate(
        [np.zeros_like(steps[..., :1, :]), np.cumsum(steps, axis=-2)], axis=-2)
    local = np.concatenate([np.zeros_like(fingers[..., 0, :1, :]),
                            fingers.reshape(*fingers.shape[:2], 20, 3)], axis=-2)
    local *= size[:, None, None, None].astype(f32)
    return local @ _rotation(angles.astype(f32)).swapaxes(-1, -2)


def _dropouts(rng: np.random.Generator, p_start: np.ndarray, longest: int = 6) -> np.ndarray:
    """Bursts of missed detections: True where a hand is lost, ``p_start (N, T)``."""
    steps = np.arange(p_start.shape[1])
    starts = rng.random(p_start.shape) < p_start
    burst_end = np.where(starts, steps + rng.integers(1, longest + 1, p_start.shape), 0)
    return np.maximum.accumulate(burst_end, axis=1) > steps  # inside some burst


def _speed(path: np.ndarray) -> np.ndarray:
    """Distance moved since the previous frame, ``(N, T)``."""
    return np.linalg.norm(np.diff(path, axis=1, prepend=path[:, :1]), axis=-1)


def generate(spec: SyntheticSpec) -> RawData:
    """Generate a deterministic synthetic sign dataset.

    Sequences are ordered by signer, then class, then repeat. Signers
    ``0 .. signers - val - test - 1`` train, the next ``val_signers`` validate and the last
    ``test_signers`` test, so no held-out person is ever seen in training.

    Args:
        spec: Sizes and seed.

    Returns:
        RawData with x float32 ``(N, frames, 53, 3)`` laid out as `JOINTS`, where
        N = classes * signers * repeats; lengths run from frames/2 to frames.

    Raises:
        DataError: If the spec cannot be generated (it lists every problem).
    """
    _check(spec)
    rng = np.random.default_rng(spec.seed)
    K, S, R, T, H = spec.classes, spec.signers, spec.repeats, spec.frames, _HARMONICS
    n, n_train = K * S * R, spec.signers - spec.val_signers - spec.test_signers
    signer = np.repeat(np.arange(S), K * R)
    y = np.tile(np.repeat(np.arange(K), R), S)

    # Classes. Kinds of the other hand: 0 rests at the hip, 1 mirrors the dominant hand,
    # 2 is a still base the dominant hand works against (the usual two-hand sign types).
    c_kind = rng.choice(3, K, p=[0.6, 0.2, 0.2])
    # As in real sign languages, classes share a few places and hand shapes, so many
    # of them differ in one feature only (minimal pairs).
    places = rng.uniform([-1.0, -1.4, -1.4], [0.2, 1.2, -0.6], (max(3, K // 4), 3))
    c_center = places[rng.integers(len(places), size=K)] + rng.normal(0, 0.15, (K, 3))
    c_center[c_kind == 1, 0] = np.minimum(c_center[c_kind == 1, 0], -0.45)  # no crossed arms
    c_coef = rng.normal(0, 0.4 / np.arange(1, H + 1)[:, None, None], (K, H, 2, 3)) * [1, 1, 0.6]
    shapes = rng.uniform(0, 1, (max(3, K // 3), 6))  # five finger curls and the spread
    c_shape = shapes[rng.integers(len(shapes), size=(K, 2))] + rng.normal(0, 0.08, (K, 2, 6))
    c_shape[:, 1] = np.where(rng.random((K, 1)) < 0.5, c_shape[:, 0], c_shape[:, 1])
    c_curl, c_spread = c_shape[..., :5], c_shape[:, 0, 5]  # start and end shape
    c_angles = rng.uniform(-0.8, 0.8, (K, 2, 3))
    c_angles[:, 1] = c_angles[:, 0] + rng.normal(0, 0.5, (K, 3)) * (rng.random((K, 1)) < 0.5)
    c_base_curl, c_base_angles = rng.uniform(0, 1, (K, 5)), rng.uniform(-0.8, 0.8, (K, 3))

    # Signers: body, place in frame, tempo, handedness, and a personal style that the
    # held-out people do not share, which is what makes unseen signers hard.
    s_scale = rng.uniform(0.09, 0.15, S)  # image units per body unit
    s_place = rng.uniform([0.38, 0.33], [0.62, 0.48], (S, 2))
    s_body = rng.uniform(0.9, 1.1, (S, 3))  # head height, hip depth, hand size
    s_tempo = rng.uniform(0.6, 0.95, S)
    s_amp = rng.uniform(0.75, 1.3, (S, 1)) * rng.normal(1, 0.1, (S, 3))
    s_offset = rng.normal(0, 0.3, (S, 3))
    s_quirk = rng.normal(0, 0.18, (S, K, H, 2, 3))  # idiosyncratic path of each sign
    s_curl, s_angles = rng.normal(0, 0.15, (S, 5)), rng.normal(0, 0.25, (S, 3))
    s_detect = rng.uniform(0.5, 1.5, S)  # lighting and camera: how often hands are lost
    # About a quarter are left-handed, one always in training so that mirrored signs
    # can be learned from somebody.
    first = rng.integers(n_train)
    lefties = [first, *rng.choice(np.delete(np.arange(S), first), max(1, round(S / 4)) - 1,
                                  replace=False)]
    flip = np.isin(np.arange(S), lefties)[signer]

    # Recordings: own length and tempo curve, small variations of everything.
    tempo = np.clip(s_tempo[signer] + rng.normal(0, 0.07, n), 0.5, 1)
    lengths = np.clip(np.round(T * tempo), 2, T).astype(np.int64)
    u = np.clip(np.arange(T) / (lengths[:, None] - 1), 0, 1)
    warp = rng.uniform(-0.6, 0.6, (n, 1))  # |warp| < 1 keeps time running forwards
    u = u - warp * np.sin(2 * np.pi * u) / (2 * np.pi)
    ease = (u * u * (3 - 2 * u))[..., None]  # smooth 0 -> 1 for hand-shape changes

    # The dominant hand, in the body frame of a right-handed signer.
    coef = c_coef[y] + s_quirk[signer, y] + rng.normal(0, 0.1, (n, H, 2, 3))
    center = c_center[y] + s_offset[signer] + rng.normal(0, 0.15, (n, 3))
    dom = _path(center, coef * s_amp[signer, None, None], u)
    curl = np.clip(c_curl[y] + s_curl[signer, None] + rng.normal(0, 0.1, (n, 2, 5)), 0, 1)
    angles = c_angles[y] + s_angles[signer, None] + rng.normal(0, 0.15, (n, 2, 3))
    size = s_body[signer, 2] * rng.normal(1, 0.02, n)
    spread = c_spread[y] + rng.normal(0, 0.05, n)
    dom_shape = _hand_shape(angles[:, :1] + (angles[:, 1:] - angles[:, :1]) * ease,
                            curl[:, :1] + (curl[:, 1:] - curl[:, :1]) * ease, spread, size)

    # The other hand is made as a right hand in the mirror image, then mirrored back.
    kind = c_kind[y][:, None]
    rest = _path([-0.85, 2.1, -0.4] + rng.normal(0, 0.1, (n, 3)),
                 rng.normal(0, 0.03, (n, H, 2, 3)), u)
    base = _path(center * [-1, 1, 1] + [-0.35, 0.25, 0], rng.normal(0, 0.03, (n, H, 2, 3)), u)
    other = np.where(kind[..., None] == 0, rest, np.where(kind[..., None] == 1, dom, base))
    still_shape = _hand_shape(
        np.where(kind == 2, c_base_angles[y], [0.3, 0, 3.0])[:, None],  # at rest: fingers down
        np.where(kind == 2, c_base_curl[y], 0.35)[:, None], spread, size)
    other_shape = np.where(kind[..., None, None] == 1, dom_shape, still_shape)

    # Wrists shake as a whole (per-frame detector noise), the hand follows.
    dom_wrist = (dom + rng.normal(0, 0.025, (n, T, 3))).astype(np.float32)
    other_wrist = (other * [-1, 1, 1] + rng.normal(0, 0.025, (n, T, 3))).astype(np.float32)
    dom_hand = dom_wrist[:, :, None] + dom_shape
    other_hand = other_wrist[:, :, None] + other_shape * np.float32([-1, 1, 1])
    # Lost hands: more often for fast motion, the other hand and hands at rest.
    p_dom = s_detect[signer, None] * (0.01 + 0.3 * _speed(dom))
    p_other = s_detect[signer, None] * (np.where(kind == 0, 0.12, 0.03) + 0.3 * _speed(other))
    dom_hand[_dropouts(rng, p_dom)] = np.nan
    other_hand[_dropouts(rng, p_other)] = np.nan

    # A left-hander is the mirror image: hands and sides swap here, and the camera
    # matrix below flips x. The body template is symmetric, so swapping its sides
    # is flipping the sign of x.
    x = np.empty((n, T, len(JOINTS), 3), np.float32)
    sign = np.where(flip, -1.0, 1.0)
    body = np.broadcast_to(_BODY, (n, len(POSE_JOINTS), 3)).copy()
    body[:, :, 0] *= sign[:, None]
    body[:, :3, 1] *= s_body[signer, :1]  # head height
    body[:, 9:, 1] *= s_body[signer, 1:2]  # hip depth
    x[:, :, :len(POSE_JOINTS)] = body[:, None]
    slots = ((1, 7, _LEFT_HAND, other_wrist, other_hand, dom_wrist, dom_hand),
             (-1, 8, _RIGHT_HAND, dom_wrist, dom_hand, other_wrist, other_hand))
    for side, wrist, hand, my_wrist, my_hand, their_wrist, their_hand in slots:
        np.copyto(x[:, :, hand], my_hand)
        np.copyto(x[:, :, hand], their_hand, where=flip[:, None, None, None])
        # The pose wrist comes from the wrist path, so it stays when the hand is lost.
        x[:, :, wrist] = np.where(flip[:, None, None], their_wrist, my_wrist)
        shoulder = x[:, :, wrist - 4]
        reach = np.linalg.norm(x[:, :, wrist] - shoulder, axis=-1, keepdims=True)
        lift = np.sqrt(np.maximum(1.45**2 - (reach / 2) ** 2, 0.05))  # upper arm ~ forearm
        outward = np.stack([0.33 * side * sign, np.full(n, 0.9), np.full(n, 0.28)], -1)
        x[:, :, wrist - 2] = (shoulder + x[:, :, wrist]) / 2 + lift * outward[:, None]

    # Camera: small rotation, the signer's size and place, body sway, landmark jitter.
    scale = s_scale[signer] * rng.normal(1, 0.04, n)
    cam = _rotation(rng.normal(0, [0.17, 0.1, 0.06], (n, 3))) * scale[:, None, None]
    cam[:, :, 0] *= sign[:, None]
    body_frame = x
    x = (x.reshape(n, -1, 3) @ cam.swapaxes(1, 2).astype(np.float32)).reshape(x.shape)
    sway = 0.04 * np.sin(2 * np.pi * (u[..., None] * rng.uniform(0.3, 1, (n, 1, 3))
                                      + rng.random((n, 1, 3))))
    place = np.concatenate([s_place[signer] + rng.normal(0, 0.015, (n, 2)), np.zeros((n, 1))], 1)
    x += (sway * scale[:, None, None] + place[:, None]).astype(np.float32)[:, :, None]
    # Uniform rather than Gaussian jitter: four times cheaper to draw, as good here;
    # drawn into the spent body-frame array, as fresh memory is slow to touch first.
    jitter = rng.random(dtype=np.float32, out=body_frame)
    jitter -= 0.5
    jitter *= 0.007
    x += jitter
    x[np.arange(T) >= lengths[:, None]] = np.nan

    split = np.where(signer < n_train, "train",
                     np.where(signer < n_train + spec.val_signers, "val", "test"))
    return RawData(x=x, y=y.astype(np.int64), classes=tuple(f"sign_{k:03d}" for k in range(K)),
                   lengths=lengths, split=split, signer=signer.astype(np.int64), joints=JOINTS)
