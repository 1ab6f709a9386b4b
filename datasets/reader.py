"""What a raw-dataset reader is, and the pieces every reader shares.

A reader is a class constructed as `Reader(root, split, options=None)`:
- `root`: the dataset's raw root (e.g. `data/raw/3DPW`), `split` one of
  `datasets.record.SPLITS`, `options` the reader's own `Options` dataclass (None: defaults);
- `name`: the dataset name used in keys and shard paths;
- `frames()`: yields `PersonFrame | Reject` in a deterministic order, one item per person
  per input frame, so that every frame read is accounted for.

Readers do not decode images. A record names its image by `image_path` (relative to the
dataset root) and `video_frame` (>= 0 for videos); the reader checks that the file exists
(`missing_image`) and reads the image size from its header, the shard pipeline decodes it
(`corrupt_image`); both see the image as stored, EXIF orientation ignored
(`datasets.image_file`). A missing or unreadable annotation file is an `AnnotationError`
naming the file; a bad frame is a `Reject` with a reason from `datasets.record.REJECT_REASONS`.

The readers and the listing of what exists under a raw root are in `datasets.readers`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from datasets.errors import InputError
from datasets.image_file import image_hw  # noqa: F401 - the readers' header size (stored orientation)
from datasets.record import PersonFrame, Reject, make_key, reject_reason

# gender codes of the label files ('m' / 'f' in 3DPW, BEDLAM, SPIN) -> the record's names
GENDER_CODES = {"m": "male", "f": "female", "n": "neutral", "male": "male", "female": "female", "neutral": "neutral"}
SYNTHETIC_MARKER = "SYNTHETIC"  # file at a dataset root written by the synthetic generator
# SPIN's `scale` unit: box side in px / 200 (SPIN `datasets/preprocess/*.py`: `scale = ... / 200`).
SPIN_SCALE_UNIT = 200.0


class AnnotationError(InputError, RuntimeError):
    """An annotation file is missing or unreadable; the message names the file."""


class Reader(Protocol):
    name: str
    root: Path
    split: str

    def __init__(self, root: str | Path, split: str, options=None): ...

    @staticmethod
    def splits(root: Path) -> list[str]:
        """The splits whose annotation files exist under `root`."""

    def frames(self) -> Iterator[PersonFrame | Reject]: ...


# ---- synthetic trees -----------------------------------------------------------------------
# The generator writes `SYNTHETIC` (JSON: {"assets": <path relative to the folder>, "sha256":
# <datasets.assets.assets_digest of them>, "synthetic": true}) at each dataset root: its ground
# truth only holds with those body models. `make shards` and `make features` carry the marker
# into each split folder they write from such a root (`pipelines.shard_reader`), so that
# training and evaluation find the assets too (`datasets.assets.assets_for_data`).
@dataclass(frozen=True)
class SyntheticMarker:
    assets: Path  # the assets root, resolved
    sha256: str | None  # their digest when the data was made (None: a marker written before digests)


def marker_text(folder: str | Path, assets_root: str | Path, sha256: str | None) -> str:
    """A `SYNTHETIC` marker for `folder`: the assets relative to it (absolute when `folder`
    is a URI, which no local path is relative to)."""
    assets = Path(assets_root).resolve()
    rel = str(assets) if "://" in str(folder) else os.path.relpath(assets, Path(folder).resolve())
    return json.dumps({"assets": rel, "sha256": sha256, "synthetic": True}) + "\n"


def parse_marker(folder: str | Path, text: str, where: str) -> SyntheticMarker:
    """The marker `text` read from `folder` (its relative path resolved against `folder`)."""
    try:
        info = json.loads(text)
        assets = Path(info["assets"])
        sha256 = info.get("sha256")
    except (ValueError, KeyError, TypeError) as e:
        raise AnnotationError(f"{where}: unreadable synthetic marker ({e})") from None
    base = Path(folder) if "://" not in str(folder) else Path("/")
    return SyntheticMarker((base / assets).resolve(), sha256)


def read_synthetic_marker(root: Path) -> SyntheticMarker | None:
    """The `SYNTHETIC` marker of a local dataset root, or None for real data."""
    marker = Path(root) / SYNTHETIC_MARKER
    if not marker.exists():
        return None
    try:
        text = marker.read_text()
    except OSError as e:
        raise AnnotationError(f"{marker}: unreadable synthetic marker ({e})") from None
    return parse_marker(root, text, str(marker))


def synthetic_assets(root: Path) -> Path | None:
    """The assets root a synthetic dataset was rendered with, or None for real data."""
    marker = read_synthetic_marker(root)
    return None if marker is None else marker.assets


def write_synthetic_marker(root: Path, assets_root: Path) -> None:
    """Mark `root` as synthetic, naming the assets it was rendered with (relative path, digest)."""
    from datasets.assets import assets_digest

    (Path(root) / SYNTHETIC_MARKER).write_text(marker_text(root, assets_root, assets_digest(assets_root)))


def resolve_assets_root(root: Path, assets_root: str | Path | None) -> Path:
    """Assets for a dataset: the explicit option, else a synthetic tree's own, else the default."""
    if assets_root is not None:
        return Path(assets_root)
    own = synthetic_assets(root)
    if own is not None:
        return own
    from datasets.assets import Assets

    return Assets().root


# ---- files ---------------------------------------------------------------------------------
def require_file(path: Path, what: str) -> Path:
    """An annotation file that must exist, else an AnnotationError naming it."""
    if not Path(path).is_file():
        raise AnnotationError(f"{path}: {what} not found")
    return Path(path)


def load_label_npz(path: Path, what: str, required: tuple[str, ...], shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Arrays of a per-person label npz (no pickles), checked: `required` keys present, and
    each key of `shapes` that is present has that shape, where "N" is the row count (the
    length of `imgname`) and -k means "at least k". Errors name the file and the field."""
    try:
        with np.load(path, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise AnnotationError(f"{path}: unreadable {what} ({e})") from e
    missing = [k for k in required if k not in z]
    if missing:
        raise AnnotationError(f"{path}: {what} lacks {missing}")
    n = len(z["imgname"])
    for key, spec in shapes.items():
        if key not in z:
            continue
        want = tuple(n if d == "N" else d for d in spec)
        got = z[key].shape
        if len(got) != len(want) or any(g < -w if w < 0 else g != w for g, w in zip(got, want)):
            text = ", ".join(f">= {-w}" if w < 0 else str(w) for w in want)
            raise AnnotationError(f"{path}: field '{key}' has shape {got}, expected ({text})")
    return z


def load_pickle_dict(path: Path, what: str) -> dict:
    """A pickle of a dict, read with the restricted unpickler (`datasets.safe_pickle`);
    anything unreadable or not a dict is an AnnotationError naming the file."""
    from datasets import safe_pickle

    try:
        data = safe_pickle.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise AnnotationError(f"{path}: unreadable {what} ({e})") from e
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


def checked_array(value, shape: tuple[int, ...], path: Path, field: str) -> np.ndarray:
    """`value` as a float64 array of exactly `shape`, else an AnnotationError naming the file and field."""
    arr = np.asarray(value, np.float64)
    if arr.shape != shape:
        raise AnnotationError(f"{path}: field '{field}' has shape {arr.shape}, expected {shape}")
    return arr


def person_index(names: list[str]) -> list[int]:
    """Index of each row among the rows of the same image, in file order (stable keys for
    label files with one row per person)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        out.append(seen.get(name, 0))
        seen[name] = out[-1] + 1
    return out


# ---- SMPL ground truth -----------------------------------------------------------------------
class BodyModels:
    """Gendered SMPL models from an assets root, loaded on first use, in float64 (ground
    truth is computed once; float32 would cost ~1e-6 m)."""

    def __init__(self, assets_root: Path):
        self.assets_root = Path(assets_root)
        self._models: dict[str, object] = {}

    def __call__(self, gender: str):
        if gender not in self._models:
            from datasets.assets import Assets
            from model.body_model import BodyModel

            assets = Assets(root=self.assets_root)
            self._models[gender] = BodyModel(assets.body_model_dir, gender=gender,
                                             h36m_regressor=assets.require("h36m_regressor")).double()
        return self._models[gender]

    def forward(self, gender: str, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> dict[str, np.ndarray]:
        """SMPL of (N, 24, 3) axis-angle pose, (N, 10) betas, (N, 3) transl (float64 numpy) ->
        {"vertices" (N, V, 3), "joints" (N, 24, 3) SMPL-24, "keypoints" (N, 24, 4)
        KEYPOINTS_2D + confidence (0 where the mesh has no such point)}, in the frame of
        `pose[:, 0]` and `transl`."""
        import torch

        n = len(pose)
        with torch.no_grad():
            out = self(gender)(betas=_t(betas), body_pose=_t(np.asarray(pose)[:, 1:].reshape(n, -1)),
                               global_orient=_t(np.asarray(pose)[:, 0]), transl=_t(transl))
        kp = out.keypoints.double().numpy()
        conf = np.broadcast_to(np.asarray(out.keypoints_valid, np.float64).reshape(1, -1, 1), kp.shape[:2] + (1,))
        return dict(vertices=out.vertices.double().numpy(), joints=out.joints[:, :24].double().numpy(),
                    keypoints=np.concatenate([kp, conf], -1))

    def keypoints(self, gender: str, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(N, 24, 4) KEYPOINTS_2D joints + confidence (see `forward`)."""
        return self.forward(gender, pose, betas, transl)["keypoints"]

    def root_joint(self, gender: str, betas: np.ndarray) -> np.ndarray:
        """(N, 3) rest position of the SMPL root joint for (N, 10) betas: J_regressor row 0 of
        the shaped template (smplx `lbs`: v_shaped = v_template + blend_shapes, J = J_regressor
        v_shaped); it depends on the shape only, so no posing is needed."""
        import torch

        smpl = self(gender).smpl
        b = _t(betas)
        with torch.no_grad():
            v_shaped = smpl.v_template + torch.einsum("nl,vcl->nvc", b, smpl.shapedirs[..., :b.shape[1]])
            return torch.einsum("v,nvc->nc", smpl.J_regressor[0], v_shaped).numpy()

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 SMPL faces (all genders share them)."""
        return self("neutral").faces

    def smplx(self) -> "SmplxBodies":
        """The gendered SMPL-X bodies of the same assets (RICH)."""
        if "smplx" not in self._models:
            self._models["smplx"] = SmplxBodies(self)
        return self._models["smplx"]


class SmplxBodies:
    """Gendered SMPL-X with the interface of `BodyModels` (forward / keypoints / faces), for RICH: `pose` rows 0-21 are the SMPL-X global orientation and
    21 body joints (rows 22-23 ignored); vertices are SMPL-X's, keypoints are read off the
    mesh mapped to SMPL topology by the `smplx2smpl` matrix (`BodyModel.keypoints_of_mesh`)."""

    NUM_BODY = 22

    def __init__(self, smpl: BodyModels):
        self.smpl = smpl
        self._models: dict[str, object] = {}
        self._matrix = None

    def __call__(self, gender: str):
        if gender not in self._models:
            from datasets.assets import Assets
            from model.body_model import SMPLXModel, load_smplx2smpl

            assets = Assets(root=self.smpl.assets_root)
            self._models[gender] = SMPLXModel(assets.body_model_dir, gender=gender).double()
            if self._matrix is None:
                self._matrix = load_smplx2smpl(assets.require("smplx2smpl")).astype(np.float64)
        return self._models[gender]

    def forward(self, gender: str, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from model.body_model import smplx_to_smpl_vertices

        model = self(gender)
        n = len(pose)
        body = np.asarray(pose)[:, :self.NUM_BODY]
        with torch.no_grad():
            verts = model(betas=_t(betas), global_orient=_t(body[:, 0]), body_pose=_t(body[:, 1:].reshape(n, -1)),
                          transl=_t(transl))
            smpl_verts = torch.as_tensor(smplx_to_smpl_vertices(self._matrix, verts.numpy()))  # (N, 6890, 3)
            smpl = self.smpl("neutral")
            joints = torch.einsum("jv,nvc->njc", smpl.smpl.J_regressor.double(), smpl_verts)  # regressed from the mesh
            kp, _ = smpl.keypoints_of_mesh(smpl_verts, joints)
        conf = np.broadcast_to(np.asarray(smpl.keypoints_valid, np.float64).reshape(1, -1, 1), (n, kp.shape[1], 1))
        return dict(vertices=verts.numpy(), joints=joints.numpy(), keypoints=np.concatenate([kp.numpy(), conf], -1))

    def keypoints(self, gender: str, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
        return self.forward(gender, pose, betas, transl)["keypoints"]

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) SMPL-X faces (both genders share them; there is no neutral SMPL-X asset)."""
        return self("male").faces


def _t(x):
    import torch

    return torch.as_tensor(np.array(x, dtype=np.float64))


def smpl_to_camera(global_orient: np.ndarray, transl: np.ndarray, root: np.ndarray,
                   R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL (global_orient, transl) in a world frame -> the same body in a camera frame.

    X_cam = R X_world + t. SMPL rotates about its root joint J0 (rest position, from the
    betas), so transl_cam = R (transl + J0) + t - J0; the orientation becomes R R_go
    (SPIN `datasets/preprocess/pw3d.py` for the rotation). Shapes (N, 3), (N, 3), (N, 3),
    (N, 3, 3), (N, 3).
    """
    from scipy.spatial.transform import Rotation

    R_go = Rotation.from_rotvec(global_orient).as_matrix()
    go_cam = Rotation.from_matrix(R @ R_go).as_rotvec()
    transl_cam = np.einsum("nij,nj->ni", R, transl + root) + t - root
    return go_cam, transl_cam


def centred_intrinsics(focal: float, hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) K with the principal point at the image centre ((w - 1) / 2, (h - 1) / 2 in
    the pixel-centre convention), as CLIFF assumes for images without calibration."""
    h, w = hw
    return np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]], np.float64)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., N, 3) camera-frame points -> (..., N, 2) pixels (`model.geometry.project`)."""
    import torch

    from model.geometry import project as _project

    return _project(_t(points), _t(K)).numpy()


# ---- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameId:
    """Identity and image of one person in one input frame."""

    dataset: str
    split: str
    sequence: str
    frame: int
    person: int
    image_path: str
    source: str
    video_frame: int = -1

    @property
    def key(self) -> str:
        return make_key(self.dataset, self.split, self.sequence, self.frame, self.person)

    def reject(self, code: str, detail: str = "") -> Reject:
        return Reject(self.key, self.dataset, self.split, reject_reason(code, detail), self.source)


def finish(fid: FrameId, hw: tuple[int, int] | None, *, box_center, box_size, box_expand: float,
           synthetic: bool, intrinsics=None, box_tight=None, require_keypoints: bool = True,
           **targets) -> PersonFrame | Reject:
    """The record for `fid`, or a Reject naming the first thing wrong with it.

    Checks, in order: image present (`hw` is None -> missing_image), finite labels,
    at least one visible 2D keypoint (unless `require_keypoints` is False: a source
    without 2D labels), box centre inside the image. `targets` are the PersonFrame
    target fields (any missing ones are filled as absent); `box_tight` the tight person box
    (x0, y0, x1, y1) the box was grown from, when the source has one.
    """
    if hw is None:
        return fid.reject("missing_image", fid.image_path)
    fields = PersonFrame.empty_targets()
    fields.update(targets)
    arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
    arrays.update(box_center=np.asarray(box_center, np.float64), box_size=np.asarray(box_size, np.float64))
    if intrinsics is not None:
        arrays["intrinsics"] = np.asarray(intrinsics, np.float64)
    if box_tight is not None:
        arrays["box_tight"] = np.asarray(box_tight, np.float64)
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            return fid.reject("non_finite_label", name)
    if require_keypoints and not np.any(fields["keypoints_2d"][:, 2] > 0):
        return fid.reject("no_visible_keypoint")
    h, w = hw
    cx, cy = arrays["box_center"]
    if not (0 <= cx < w and 0 <= cy < h):
        return fid.reject("box_outside_image", f"centre ({cx:.1f}, {cy:.1f}) outside {w}x{h}")
    rec = PersonFrame(key=fid.key, dataset=fid.dataset, split=fid.split, sequence=fid.sequence,
                      frame=int(fid.frame), person=int(fid.person), image_path=fid.image_path,
                      video_frame=int(fid.video_frame), image_hw=np.array(hw, np.int64),
                      box_center=arrays["box_center"], box_size=arrays["box_size"], box_expand=float(box_expand),
                      intrinsics=intrinsics, box_tight=arrays.get("box_tight"), synthetic=synthetic,
                      source=fid.source, **fields)
    return rec.validate()


def visible_in_image(keypoints: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Copy of (N, 3) keypoints with confidence 0 where the point lies outside the image."""
    h, w = hw
    out = keypoints.copy()
    inside = (out[:, 0] >= 0) & (out[:, 0] < w) & (out[:, 1] >= 0) & (out[:, 1] < h)
    out[~inside, 2] = 0
    return out
