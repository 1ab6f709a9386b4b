"""Synthetic scenes for the raw-dataset generators: poses, shapes, cameras, backgrounds,
rendering and faults. The format writers (`raw_3dpw`, `raw_npz`, `raw_3dhp`, `raw_rich`)
turn what is rendered here into each dataset's files; what they write is exactly what was
rendered.

Conventions: camera frame OpenCV (x right, y down, z forward), SMPL axis-angle; a body is
posed in the camera frame directly (global orientation = camera-frame orientation).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from datasets.joints import SMPL_24
from datasets.reader import project
from datasets.record import NUM_BETAS

# ---- poses ----------------------------------------------------------------------------------
# Per-joint rotation ranges (radians) as extrinsic Euler angles about the joint's rest axes
# (SMPL rest frame: x = the body's left, y = up, z = forward). In the T pose the left arm
# points +x, the right arm -x, the legs -y. Ours, chosen to keep poses plausible:
# - hips: x < 0 swings the leg forward, z opens it sideways; knees: x > 0 bends the shin back;
# - shoulders: z lowers the arm from the T pose (left < 0, right > 0), y swings it forward
#   (left < 0, right > 0); elbows: y bends the forearm forward (left < 0, right > 0);
# - spine: x > 0 bends forward, y twists.
# name: (euler order, low (3,), high (3,)) with angles listed in the order of `order`.
JOINT_RANGES: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "left_hip": ("xzy", (-1.0, -0.05, -0.2), (0.35, 0.35, 0.2)),
    "right_hip": ("xzy", (-1.0, -0.35, -0.2), (0.35, 0.05, 0.2)),
    "spine1": ("xyz", (-0.1, -0.2, -0.1), (0.3, 0.2, 0.1)),
    "left_knee": ("xyz", (0.0, -0.05, -0.05), (1.6, 0.05, 0.05)),
    "right_knee": ("xyz", (0.0, -0.05, -0.05), (1.6, 0.05, 0.05)),
    "spine2": ("xyz", (-0.1, -0.2, -0.1), (0.2, 0.2, 0.1)),
    "left_ankle": ("xyz", (-0.3, -0.2, -0.1), (0.3, 0.2, 0.1)),
    "right_ankle": ("xyz", (-0.3, -0.2, -0.1), (0.3, 0.2, 0.1)),
    "spine3": ("xyz", (-0.1, -0.2, -0.1), (0.2, 0.2, 0.1)),
    "left_foot": ("xyz", (-0.1, -0.1, -0.1), (0.1, 0.1, 0.1)),
    "right_foot": ("xyz", (-0.1, -0.1, -0.1), (0.1, 0.1, 0.1)),
    "neck": ("xyz", (-0.3, -0.4, -0.15), (0.3, 0.4, 0.15)),
    "left_collar": ("xyz", (-0.1, -0.1, -0.15), (0.1, 0.1, 0.1)),
    "right_collar": ("xyz", (-0.1, -0.1, -0.1), (0.1, 0.1, 0.15)),
    "head": ("xyz", (-0.3, -0.4, -0.15), (0.3, 0.4, 0.15)),
    "left_shoulder": ("xzy", (-0.3, -1.35, -1.1), (0.3, 0.6, 0.3)),
    "right_shoulder": ("xzy", (-0.3, -0.6, -0.3), (0.3, 1.35, 1.1)),
    "left_elbow": ("xyz", (-0.2, -2.2, -0.1), (0.2, 0.0, 0.1)),
    "right_elbow": ("xyz", (-0.2, 0.0, -0.1), (0.2, 2.2, 0.1)),
    "left_wrist": ("xyz", (-0.3, -0.3, -0.3), (0.3, 0.3, 0.3)),
    "right_wrist": ("xyz", (-0.3, -0.3, -0.3), (0.3, 0.3, 0.3)),
    "left_hand": ("xyz", (-0.2, -0.2, -0.2), (0.2, 0.2, 0.2)),
    "right_hand": ("xyz", (-0.2, -0.2, -0.2), (0.2, 0.2, 0.2)),
}
BODY_JOINTS = SMPL_24.names[1:]
_LOW = np.array([JOINT_RANGES[n][1] for n in BODY_JOINTS])  # (23, 3)
_HIGH = np.array([JOINT_RANGES[n][2] for n in BODY_JOINTS])
STYLES = ("random", "walk", "arms_up", "stand")


def sample_angles(rng: np.random.Generator, style: str | None = None) -> np.ndarray:
    """(23, 3) Euler angles (orders of JOINT_RANGES) of one plausible body pose."""
    style = style or STYLES[rng.integers(len(STYLES))]
    u = rng.uniform(size=(23, 3))
    if style == "stand":  # near the middle of each range, arms down
        u = 0.5 + (u - 0.5) * 0.3
    ang = _LOW + u * (_HIGH - _LOW)
    idx = {n: i for i, n in enumerate(BODY_JOINTS)}
    if style in ("walk", "stand"):
        down = rng.uniform(1.1, 1.35)
        ang[idx["left_shoulder"], 1], ang[idx["right_shoulder"], 1] = -down, down
    if style == "walk":  # legs and arms swing in opposite phases
        phase = rng.uniform(-0.6, 0.6)
        ang[idx["left_hip"], 0], ang[idx["right_hip"], 0] = -phase - 0.1, phase - 0.1
        ang[idx["left_knee"], 0], ang[idx["right_knee"], 0] = (rng.uniform(0.05, 0.8), rng.uniform(0.05, 0.8))
        ang[idx["left_shoulder"], 2], ang[idx["right_shoulder"], 2] = phase * 0.8, phase * 0.8
    if style == "arms_up":
        ang[idx["left_shoulder"], 1], ang[idx["right_shoulder"], 1] = rng.uniform(-0.3, 0.6), rng.uniform(-0.6, 0.3)
    return ang


def angles_to_pose(ang: np.ndarray) -> np.ndarray:
    """(23, 3) Euler angles -> (23, 3) SMPL body pose, axis-angle."""
    out = np.zeros((23, 3))
    for j, name in enumerate(BODY_JOINTS):
        out[j] = Rotation.from_euler(JOINT_RANGES[name][0], ang[j]).as_rotvec()
    return out


def sample_betas(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(size=NUM_BETAS), -2.0, 2.0)


def facing_camera(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Camera-frame global orientation (axis-angle) of an upright body turned by `yaw`
    about the camera's vertical axis (0 = facing the camera), with small tilts."""
    upright = Rotation.from_euler("x", np.pi)  # SMPL y-up, facing +z -> camera y-down, facing the camera
    turn = Rotation.from_euler("yxz", [yaw, pitch, roll])
    return (turn * upright).as_rotvec()


def sample_orient(rng: np.random.Generator) -> np.ndarray:
    yaw = rng.uniform(-1.6, 1.6) if rng.uniform() < 0.85 else rng.uniform(2.4, 3.9)
    return facing_camera(yaw, rng.uniform(-0.12, 0.12), rng.uniform(-0.08, 0.08))


# ---- people -----------------------------------------------------------------------------------
@dataclass
class Person:
    """One rendered body in a camera frame: what the label files must hold."""

    gender: str
    pose: np.ndarray  # (24, 3) axis-angle, row 0 camera-frame orientation
    betas: np.ndarray  # (10,)
    transl: np.ndarray  # (3,) camera frame
    vertices: np.ndarray = field(repr=False)  # (V, 3) camera frame
    keypoints: np.ndarray = field(repr=False)  # (24, 4) KEYPOINTS_2D + confidence
    joints: np.ndarray = field(repr=False)  # (24, 3) SMPL-24 joints

    def moved(self, d: np.ndarray) -> "Person":
        """The same body translated by d (camera frame): SMPL's translation is additive."""
        return replace(self, transl=self.transl + d, vertices=self.vertices + d, joints=self.joints + d,
                       keypoints=np.concatenate([self.keypoints[:, :3] + d, self.keypoints[:, 3:]], 1))


def pose_people(models, gender: str, poses: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> list[Person]:
    """One body (betas) in n poses (n, 24, 3) at n translations (n, 3), in one model call."""
    n = len(poses)
    out = models.forward(gender, poses, np.broadcast_to(betas, (n, len(betas))), transl)
    return [Person(gender, poses[i].copy(), betas.copy(), np.array(transl[i], np.float64), out["vertices"][i],
                   out["keypoints"][i], out["joints"][i]) for i in range(n)]


def pose_person(models, gender: str, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> Person:
    return pose_people(models, gender, pose[None], betas, np.asarray(transl)[None])[0]


def place(models, rng: np.random.Generator, gender: str, pose: np.ndarray, betas: np.ndarray, K: np.ndarray,
          hw: tuple[int, int], height_frac: tuple[float, float] = (0.45, 0.8)) -> Person:
    """Pose a body and translate it so that it stands in view: its projection spans about
    `height_frac` of the image height, at a random place where its box fits inside the
    image (each failed try shrinks it). One model call: the rest is translation."""
    h, w = hw
    margin = 3
    base = pose_person(models, gender, pose, betas, np.zeros(3))
    pelvis = base.joints[0]
    frac = rng.uniform(*height_frac)
    person = base
    for _ in range(6):
        z = K[0, 0] * 1.7 / (frac * h)  # a 1.7 m person spans frac * h pixels at depth z
        person = base.moved(np.array([0.0, 0.0, z]) - pelvis)
        for _ in range(2):  # move the box centre to a random point where the box fits
            uv = project(person.vertices, K)
            lo, hi = uv.min(0), uv.max(0)
            size = hi - lo
            if np.any(size > np.array([w, h]) - 2 * margin - 1):
                break
            new = np.array([rng.uniform(margin + size[0] / 2, w - margin - 1 - size[0] / 2),
                            rng.uniform(margin + size[1] / 2, h - margin - 1 - size[1] / 2)])
            d = new - (lo + hi) / 2
            person = person.moved(np.array([d[0] * z / K[0, 0], d[1] * z / K[1, 1], 0.0]))
            uv = project(person.vertices, K)
            if np.all(uv.min(0) >= margin) and np.all(uv.max(0) <= np.array([w, h]) - margin - 1):
                return person
        frac *= 0.85
    return person


# ---- images ---------------------------------------------------------------------------------
def background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 RGB: a gradient, low-frequency noise, a floor band and a few shapes."""
    import cv2

    h, w = hw
    c0, c1 = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    t = ((np.arange(h, dtype=np.float32)[:, None] / h - 0.5) * np.sin(a)
         + (np.arange(w, dtype=np.float32)[None, :] / w - 0.5) * np.cos(a) + 0.5)  # (h, w)
    img = c0 + (c1 - c0) * t[..., None]
    noise = cv2.resize(rng.normal(0, 25, size=(max(h // 32, 2), max(w // 32, 2), 3)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    img += noise + rng.integers(-5, 6, size=(h, w, 1)).astype(np.float32)  # grain
    horizon = int(rng.uniform(0.55, 0.8) * h)
    img[horizon:] = img[horizon:] * 0.6 + rng.uniform(40, 160, size=3) * 0.4
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 8)):
        color = tuple(int(c) for c in rng.uniform(0, 255, size=3))
        p = (int(rng.uniform(0, w)), int(rng.uniform(0, horizon)))
        if rng.uniform() < 0.5:
            q = (int(p[0] + rng.uniform(-0.3, 0.3) * w), int(p[1] + rng.uniform(-0.3, 0.3) * h))
            cv2.rectangle(img, p, q, color, -1)
        else:
            cv2.circle(img, p, int(rng.uniform(0.02, 0.12) * min(h, w)), color, -1)
    return img


def render(image: np.ndarray, people: list[Person], faces: np.ndarray, K: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Shaded people over `image`, far to near; returns the image and each person's
    visible-pixel mask."""
    from model.render import render_mesh

    order = sorted(range(len(people)), key=lambda i: -people[i].transl[2])
    masks: list[np.ndarray | None] = [None] * len(people)
    for i in order:
        color = tuple(float(c) for c in rng.uniform(0.25, 0.95, size=3))
        image, mask = render_mesh(image, people[i].vertices, faces, K, color=color, alpha=1.0)
        for j in order[:order.index(i)]:  # nearer people drawn later cover farther ones
            masks[j] = masks[j] & ~mask
        masks[i] = mask
    return image, masks


def write_jpeg(path: Path, image: np.ndarray, quality: int = 92, exif_orientation: int | None = None) -> None:
    """Write an RGB image as JPEG; with `exif_orientation` (1-8), the same pixels carry an
    EXIF Orientation tag, as phone photos in COCO / MPII do (the labels stay in the stored
    pixels' frame, `datasets.image_file`)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: could not write JPEG")
    data = buf.tobytes()
    if exif_orientation is not None:
        data = with_exif_orientation(data, exif_orientation)
    path.write_bytes(data)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment holding only the Orientation tag (0x0112), put after
    the JFIF APP0 segment (or the SOI marker when there is none); the pixels are untouched."""
    from PIL import Image

    from datasets.image_file import EXIF_ORIENTATION_TAG

    if not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" + TIFF header + IFD0
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF APP0 first, as cv2 writes it
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + app1 + jpeg[at:]


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) x0, y0, x1, y1 of a mask's pixels (NaN when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.full(4, np.nan)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


# ---- faults -----------------------------------------------------------------------------------
FAULTS = ("corrupt_jpeg", "missing_image", "nan_label", "box_outside", "invalid_camera_pose", "invalid_frame")
# the reject reason each fault makes a reader (or, for corrupt JPEGs, the shard pipeline) report
FAULT_REASONS = {
    "corrupt_jpeg": "corrupt_image",
    "missing_image": "missing_image",
    "nan_label": "non_finite_label",
    "box_outside": "box_outside_image",
    "invalid_camera_pose": "invalid_camera_pose",
    "invalid_frame": "invalid_frame",
}


def corrupt_jpeg(path: Path) -> None:
    """Keep the JPEG header (so the size is readable), garble the entropy-coded data."""
    data = bytearray(path.read_bytes())
    cut = min(len(data), 700)
    path.write_bytes(bytes(data[:cut]) + b"\x00" * 64)


# ---- truth ------------------------------------------------------------------------------------
@dataclass
class Truth:
    """What a generator rendered, per record key, for the tests (`SYNTHETIC_TRUTH.npz`)."""

    rows: dict[str, dict] = field(default_factory=dict)

    def add(self, key: str, person: Person, K: np.ndarray, mask: np.ndarray, fault: str = "") -> None:
        """`person` as rendered with camera `K`, its visible pixels `mask`, the fault injected."""
        self.rows[key] = dict(pose=person.pose, betas=person.betas, transl=person.transl, gender=person.gender,
                              K=K, joints_3d=person.keypoints, mask_box=mask_box(mask),
                              reason=FAULT_REASONS[fault] if fault else "")

    def save(self, path: Path) -> None:
        keys = sorted(self.rows)
        cols = {c: np.stack([np.asarray(self.rows[k][c]) for k in keys]) for c in self.rows[keys[0]]} if keys else {}
        np.savez(path, key=np.array(keys), **cols)


def load_truth(path: Path) -> dict[str, dict]:
    with np.load(path, allow_pickle=False) as z:
        keys = [str(k) for k in z["key"]]
        cols = {c: z[c] for c in z.files if c != "key"}
    return {k: {c: (str(v[i]) if v.dtype.kind == "U" else v[i]) for c, v in cols.items()} for i, k in enumerate(keys)}
