"""The per-person record: one dataclass, written once, read by every stage.

A reader turns raw files into `PersonFrame`s (one person in one image) or `Reject`s
(a frame that cannot become a sample, with its reason). The shard pipeline crops the
image and moves the 2D quantities into crop space; later stages read the same record
back from the shards (`to_sample` / `from_sample`).

Conventions (named once, here and in `datasets.joints` / `model.geometry`):
- Units: metres and radians inside; millimetres only in reports.
- Camera frame: OpenCV (x right, y down, z forward), pixels with (0, 0) at the centre
  of the top-left pixel.
- `keypoints_2d` and `intrinsics` are in the pixels of the image the record describes:
  the original image while `crop_affine` is None (reader output), the 256x192 crop once
  `crop_affine` is set (shards and everything after).
- Joint orders: `keypoints_2d` and `joints_3d` in `datasets.joints.KEYPOINTS_2D`
  (= SPIN-24); SMPL pose rows in SMPL-24 order.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets import npz
from datasets.errors import InputError
from datasets.joints import KEYPOINTS_2D

CROP_HW = (256, 192)  # (height, width) of every crop: the ViTPose input size.
NUM_BETAS = 10
NUM_SMPL_JOINTS = 24
NUM_KEYPOINTS = len(KEYPOINTS_2D)
GENDERS = ("neutral", "male", "female")
BODY_MODELS = ("smpl", "smplx")
SPLITS = ("train", "val", "test")

_KEY_PART = re.compile(r"[^A-Za-z0-9-]+")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class RecordError(InputError, ValueError):
    """A field of a record is malformed; the message names the source and the field."""


def make_key(dataset: str, split: str, sequence: str, frame: int, person: int) -> str:
    """Stable sample key from identity alone: `<dataset>_<split>_<sequence>_<frame>_p<person>`.

    Characters other than letters, digits and '-' in each part become '-', so a key is a
    valid WebDataset key (no dots, no slashes) and a safe tar member stem.
    """
    parts = [dataset, split, sequence]
    clean = [_KEY_PART.sub("-", p).strip("-") or "x" for p in parts]
    return f"{clean[0]}_{clean[1]}_{clean[2]}_{int(frame):06d}_p{int(person)}"


@dataclass
class PersonFrame:
    """One person in one image, with every target and its validity.

    Fields (shape, dtype, unit, frame):
    - key: str, stable id from identity (`make_key`), never from the run.
    - dataset, split, sequence: str; frame: int (frame index in the sequence);
      person: int (person index in the frame).
    - image_path: str, path of the source image or video relative to the dataset root.
    - video_frame: int, frame index inside `image_path` when it is a video, else -1.
    - image_hw: (2,) int64, (height, width) of the original image in pixels.
    - box_center: (2,) float32, original image pixels (x, y), centre of the person box.
    - box_size: (2,) float32, original image pixels (w, h) of the person box after the
      expansion `box_expand` and widening to the crop aspect (h/w = 256/192).
    - box_expand: float, the expansion factor applied to the tight person box.
    - box_tight: (4,) float32 or None, original image pixels (x0, y0, x1, y1): the tight
      person box the reader's box was grown from (the visible 2D keypoints' box, or the
      dataset's own box); None where the source gives only an expanded box. Never moved
      into crop space.
    - crop_affine: (2, 3) float32 or None, original image pixels -> crop pixels.
    - intrinsics: (3, 3) float32 or None, pinhole K of the image this record describes.
    - smpl_pose: (24, 3) float32, axis-angle radians, SMPL-24 order; row 0 is the global
      orientation in the camera frame. Valid iff `has_smpl`.
    - betas: (10,) float32, SMPL shape. Valid iff `has_smpl`.
    - smpl_transl: (3,) float32, metres, camera frame, SMPL `transl`. Valid iff `has_transl`.
    - gender: 'neutral' | 'male' | 'female', the body model the SMPL targets belong to.
    - body_model: 'smpl' | 'smplx', the model family of `smpl_pose` / `betas` (RICH's
      ground truth is SMPL-X: rows 0-21 hold its global orientation and body joints);
      only 'smpl' targets may supervise SMPL parameters.
    - joints_3d: (24, 4) float32, metres, camera frame, KEYPOINTS_2D order; column 3 is
      the confidence (0 = absent).
    - keypoints_2d: (24, 3) float32, pixels (see module doc), KEYPOINTS_2D order;
      column 2 is the confidence (0 = absent).
    - synthetic: bool, True when made from the project's synthetic stand-ins.
    - view: int, augmentation view index (0 = the plain crop).
    """

    key: str
    dataset: str
    split: str
    sequence: str
    frame: int
    person: int
    image_path: str
    image_hw: np.ndarray
    box_center: np.ndarray
    box_size: np.ndarray
    box_expand: float
    smpl_pose: np.ndarray
    betas: np.ndarray
    smpl_transl: np.ndarray
    gender: str
    joints_3d: np.ndarray
    keypoints_2d: np.ndarray
    has_smpl: bool
    has_transl: bool
    synthetic: bool
    video_frame: int = -1
    crop_affine: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    box_tight: np.ndarray | None = None
    view: int = 0
    body_model: str = "smpl"
    source: str = field(default="", compare=False)  # file the record came from, for errors

    # ---- construction helpers -------------------------------------------------------
    @staticmethod
    def empty_targets() -> dict[str, Any]:
        """Targets with every validity off, for datasets that lack some of them."""
        return dict(
            smpl_pose=np.zeros((NUM_SMPL_JOINTS, 3), np.float32),
            betas=np.zeros(NUM_BETAS, np.float32),
            smpl_transl=np.zeros(3, np.float32),
            gender="neutral",
            joints_3d=np.zeros((NUM_KEYPOINTS, 4), np.float32),
            keypoints_2d=np.zeros((NUM_KEYPOINTS, 3), np.float32),
            has_smpl=False,
            has_transl=False,
        )

    @property
    def is_cropped(self) -> bool:
        return self.crop_affine is not None

    def replace(self, **changes) -> "PersonFrame":
        return dataclasses.replace(self, **changes)

    # ---- validation -----------------------------------------------------------------
    def validate(self) -> "PersonFrame":
        """Check shapes, dtypes and finiteness; raise RecordError naming source and field.

        Arrays are coerced to their declared dtype first, so readers may hand in float64.
        """
        where = f"{self.source or self.key}"
        for name, (shape, dtype) in _ARRAY_FIELDS.items():
            value = getattr(self, name)
            if value is None:
                if name in _OPTIONAL:
                    continue
                raise RecordError(f"{where}: field '{name}' is missing")
            arr = value if type(value) is np.ndarray else np.asarray(value)
            if arr.shape != shape:
                raise RecordError(f"{where}: field '{name}' has shape {arr.shape}, expected {shape}")
            if arr.dtype.kind not in _NUMERIC_KINDS:
                raise RecordError(f"{where}: field '{name}' has dtype {arr.dtype}, expected {np.dtype(dtype)}")
            if arr.dtype != dtype:
                arr = arr.astype(dtype)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise RecordError(f"{where}: field '{name}' has non-finite values")
            setattr(self, name, arr)
        if not KEY_RE.match(self.key):
            raise RecordError(f"{where}: field 'key' {self.key!r} has characters outside [A-Za-z0-9_-]")
        if self.gender not in GENDERS:
            raise RecordError(f"{where}: field 'gender' is {self.gender!r}, expected one of {GENDERS}")
        if self.body_model not in BODY_MODELS:
            raise RecordError(f"{where}: field 'body_model' is {self.body_model!r}, expected one of {BODY_MODELS}")
        if self.split not in SPLITS:
            raise RecordError(f"{where}: field 'split' is {self.split!r}, expected one of {SPLITS}")
        if not self.box_expand > 0:
            raise RecordError(f"{where}: field 'box_expand' must be positive, got {self.box_expand}")
        if np.any(self.box_size <= 0):
            raise RecordError(f"{where}: field 'box_size' must be positive, got {self.box_size}")
        return self

    # ---- (de)serialisation ------------------------------------------------------------
    def to_npz_bytes(self) -> bytes:
        """The target file of a WebDataset sample: an uncompressed npz, no pickles."""
        self.validate()
        arrays = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _ARRAY_FIELDS:
                if v is None:
                    continue
                arrays[f.name] = np.ascontiguousarray(v)
            elif isinstance(v, str):
                arrays[f.name] = np.array(v)
            else:
                arrays[f.name] = np.array(v)
        return npz.dumps(arrays)

    @property
    def has_intrinsics(self) -> bool:
        """The dataset gave camera intrinsics (`intrinsics` is not None)."""
        return self.intrinsics is not None

    def target_arrays(self) -> dict[str, np.ndarray]:
        """The TARGET_ARRAYS of the record as float32, an absent optional one (`intrinsics`,
        `crop_affine`) as zeros: what a targets row and a batch hold (validity in TARGET_FLAGS)."""
        return {name: np.zeros(TARGETS_DTYPE.fields[name][0].shape, np.float32) if getattr(self, name) is None
                else np.asarray(getattr(self, name), np.float32) for name in TARGET_ARRAYS}

    def to_targets_bytes(self) -> bytes:
        """The record's training targets as one TARGETS_DTYPE row (see there)."""
        self.validate()
        if not self.dataset.isascii() or len(self.dataset) > DATASET_NAME_BYTES:
            raise RecordError(f"{self.source or self.key}: field 'dataset' {self.dataset!r} is not ASCII of at most "
                              f"{DATASET_NAME_BYTES} characters (the targets row holds it in {DATASET_NAME_BYTES} bytes)")
        row = np.zeros((), TARGETS_DTYPE)
        for name, value in self.target_arrays().items():
            row[name] = value
        for name in TARGET_FLAGS:
            row[name] = getattr(self, name)
        row["view"] = self.view
        row["gender"], row["body_model"] = GENDERS.index(self.gender), BODY_MODELS.index(self.body_model)
        row["dataset"] = self.dataset.encode("ascii")
        return row.tobytes()

    @classmethod
    def from_npz_bytes(cls, data: bytes, source: str = "") -> "PersonFrame":
        """Inverse of `to_npz_bytes`; `source` names the shard/member for errors."""
        try:
            stored = npz.loads(data)
        except npz.NpzError as e:
            raise RecordError(f"{source}: target file is not a readable npz ({e})") from e
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue
            if f.name not in stored:
                if f.name in _OPTIONAL or f.default is not dataclasses.MISSING:
                    continue
                raise RecordError(f"{source}: target file lacks field '{f.name}'")
            v = stored[f.name]
            kwargs[f.name] = v if f.name in _ARRAY_FIELDS else _SCALAR_TYPES[f.type](v)
        return cls(**kwargs, source=source).validate()


@dataclass
class Reject:
    """An input frame that did not become a sample, and why (for the manifest)."""

    key: str
    dataset: str
    split: str
    reason: str
    source: str = ""


_ARRAY_FIELDS: dict[str, tuple[tuple[int, ...], Any]] = {
    "image_hw": ((2,), np.int64),
    "box_center": ((2,), np.float32),
    "box_size": ((2,), np.float32),
    "crop_affine": ((2, 3), np.float32),
    "intrinsics": ((3, 3), np.float32),
    "box_tight": ((4,), np.float32),
    "smpl_pose": ((NUM_SMPL_JOINTS, 3), np.float32),
    "betas": ((NUM_BETAS,), np.float32),
    "smpl_transl": ((3,), np.float32),
    "joints_3d": ((NUM_KEYPOINTS, 4), np.float32),
    "keypoints_2d": ((NUM_KEYPOINTS, 3), np.float32),
}
_OPTIONAL = {"crop_affine", "intrinsics", "box_tight"}
# the other fields' annotations (strings: `from __future__ import annotations`) -> the Python
# type a 0-d array read back from the npz becomes
_SCALAR_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex: what `astype` may coerce

# ---- the training targets of a record as one fixed-layout row ------------------------------
# What a training batch needs of a record, packed little-endian into one numpy structured
# row (`PersonFrame.to_targets_bytes`). The feature cache stores it beside each view's npz,
# so a loader reads a whole batch's targets with one `np.frombuffer` of the concatenated
# rows instead of parsing an npz per sample. Strings are codes (`gender`, `body_model`:
# indices into GENDERS / BODY_MODELS) or fixed bytes (`dataset`, ASCII); the key is the
# sample's own (its tar members' stem). The npz stays the full record.
# The camera fields (image_hw, box_center, box_size, crop_affine, intrinsics, smpl_transl) are
# what reprojection in the original image needs (train.losses, CLIFF `cam_crop2full`);
# image_hw is held as float32 (exact: pixel counts < 2^24); an absent intrinsics or
# crop_affine is zeros, with `has_intrinsics` False for the former.
TARGET_ARRAYS = ("smpl_pose", "betas", "joints_3d", "keypoints_2d", "image_hw", "box_center", "box_size",
                 "crop_affine", "intrinsics", "smpl_transl")  # float32, shapes of _ARRAY_FIELDS
TARGET_FLAGS = ("has_smpl", "synthetic", "has_transl", "has_intrinsics")  # bool (has_intrinsics: a property)
DATASET_NAME_BYTES = 32
TARGETS_DTYPE = np.dtype(
    [(name, "<f4", _ARRAY_FIELDS[name][0]) for name in TARGET_ARRAYS]
    + [(name, "?") for name in TARGET_FLAGS]
    + [("view", "<i8"), ("gender", "u1"), ("body_model", "u1"), ("dataset", f"S{DATASET_NAME_BYTES}")])


def targets_layout() -> list:
    """TARGETS_DTYPE as JSON-safe data (feature caches store it: a reader checks its own
    layout against the cache's before taking the fast path)."""
    return [[name, TARGETS_DTYPE.fields[name][0].base.str, list(TARGETS_DTYPE.fields[name][0].shape)]
            for name in TARGETS_DTYPE.names]

# Reject reasons: a closed vocabulary, so stats group cleanly. Readers and pipelines use
# these names (plus free detail after ': ').
REJECT_REASONS = (
    "invalid_camera_pose",  # 3DPW campose_valid false
    "non_finite_label",
    "box_outside_image",
    "no_visible_keypoint",
    "missing_image",
    "corrupt_image",
    "invalid_frame",  # MPI-INF-3DHP test valid_frame false
    "joint_outside_image",  # MPI-INF-3DHP test, SPIN test_data rule: a joint outside the image (an option)
)


def reject_reason(code: str, detail: str = "") -> str:
    """A reason string `code` or `code: detail`, checking `code` is a known reason."""
    if code not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {code!r}; known: {REJECT_REASONS}")
    return f"{code}: {detail}" if detail else code
