"""SMPL (and SMPL-X for RICH) through `smplx`, reading model files without running code.

`smplx` unpickles SMPL files itself (and needs chumpy for the real ones); here the file is
read by `load_smpl_arrays` (restricted unpickler or `np.load(allow_pickle=False)`) and the
arrays are handed to `smplx.SMPL(data_struct=...)`, so smplx never opens the file. smplx
loads the model (its buffers are the arrays used); the forward pass is `model.lbs` (smplx's
steps, with the kinematic tree as CPU data: no device sync; the same output), in fp32
outside autocast whatever the caller's precision.

    model = BodyModel(assets.body_model_dir, "neutral", h36m_regressor=assets.path("h36m_regressor"))
    out = model(betas, body_pose, global_orient)   # rotation matrices or axis-angle
    out.vertices (B, 6890, 3), out.joints (B, 24, 3), out.keypoints (B, 24, 3), out.h36m (B, 17, 3)

Facts of the real files honoured here: 6890 vertices, 13776 faces, 24 joints;
`kintree_table` (2, 24) with the parents in row 0 (root parent 4294967295); `weights`
(6890, 24); `posedirs` (6890, 3, 207); `shapedirs` (6890, 3, >= 10); `J_regressor`
(24, 6890), sparse in the real pickles (made dense by `datasets.safe_pickle`).
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import smplx
import torch
from smplx.joint_names import JOINT_NAMES as _SMPLX_ALL_JOINT_NAMES
from smplx.lbs import batch_rodrigues
from smplx.utils import Struct

from datasets import safe_pickle
from datasets.errors import InputError
from datasets.joints import H36M_17, KEYPOINTS_2D, KEYPOINTS_FROM_MESH, SMPL_24
from model.lbs import LinearBlendSkinning

GENDERS = ("neutral", "male", "female")


@dataclass(frozen=True)
class ModelFacts:
    """Sizes of a body model's files (None: not fixed)."""

    num_vertices: int
    num_faces: int | None
    num_joints: int

    @property
    def num_pose_basis(self) -> int:  # 9 entries of (R - I) per non-root joint
        return 9 * (self.num_joints - 1)


SMPL = ModelFacts(num_vertices=6890, num_faces=13776, num_joints=24)
SMPLX = ModelFacts(num_vertices=10475, num_faces=None, num_joints=55)

# SMPL-X's 55 joints (smplx `joint_names.py`) and their parents: SMPL's first 22, then
# jaw and eyeballs under the head, three joints per finger from the wrist.
SMPLX_JOINT_NAMES: tuple[str, ...] = tuple(_SMPLX_ALL_JOINT_NAMES[:SMPLX.num_joints])


def _smplx_parents() -> tuple[int, ...]:
    names = SMPLX_JOINT_NAMES
    parents = list(SMPL_24.parents[:22])
    for n in names[22:]:
        if n in ("jaw", "left_eye_smplhf", "right_eye_smplhf"):
            parents.append(names.index("head"))
        else:  # <side>_<finger><k>
            side, k = n.split("_")[0], int(n[-1])
            parents.append(names.index(f"{side}_wrist") if k == 1 else names.index(n[:-1] + str(k - 1)))
    return tuple(parents)


SMPLX_PARENTS = _smplx_parents()


class ModelFileError(InputError, ValueError):
    """A body-model file lacks a key or has one of the wrong shape; names file and key."""


def _check(arrays: dict, spec: dict[str, tuple], path: Path) -> None:
    for key, shape in spec.items():
        if key not in arrays:
            raise ModelFileError(f"{path}: missing key '{key}'")
        a = arrays[key]
        ok = a.ndim == len(shape) and all(
            want is None or (got >= -want if want < 0 else got == want) for got, want in zip(a.shape, shape))
        if not ok:
            want_s = "(" + ", ".join("any" if w is None else (f">={-w}" if w < 0 else str(w)) for w in shape) + ")"
            raise ModelFileError(f"{path}: key '{key}' has shape {a.shape}, expected {want_s}")


def _read_arrays(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """`keys` (those present) of a .pkl (restricted unpickler) or .npz (no pickle) file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: body model file not found")
    if path.suffix == ".pkl":
        data = safe_pickle.load(path)
        if not isinstance(data, dict):
            raise ModelFileError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:  # object arrays (e.g. part2num) are never read
            data = {k: z[k] for k in keys if k in z.files}
    else:
        raise ModelFileError(f"{path}: unknown body model format (expected .pkl or .npz)")
    out = {k: np.asarray(data[k]) for k in keys if k in data and k != "synthetic"}
    out["synthetic"] = np.asarray(bool(data.get("synthetic", False)))
    return out


_SMPL_SPEC = {
    "v_template": (SMPL.num_vertices, 3),
    "f": (SMPL.num_faces, 3),
    "J_regressor": (SMPL.num_joints, SMPL.num_vertices),
    "kintree_table": (2, SMPL.num_joints),
    "weights": (SMPL.num_vertices, SMPL.num_joints),
    "posedirs": (SMPL.num_vertices, 3, SMPL.num_pose_basis),
    "shapedirs": (SMPL.num_vertices, 3, -10),  # -n: at least n
}


def load_smpl_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a real (or stand-in) SMPL model file, checked.

    .pkl through `datasets.safe_pickle` (latin1; chumpy -> array, sparse -> dense), .npz
    with `allow_pickle=False`. Keys: those of `_SMPL_SPEC` plus `synthetic` (0-d bool).
    `f` and `kintree_table` are int64.
    """
    path = Path(path)
    arrays = _read_arrays(path, list(_SMPL_SPEC) + ["synthetic"])
    _check(arrays, _SMPL_SPEC, path)
    arrays["f"] = arrays["f"].astype(np.int64)
    arrays["kintree_table"] = arrays["kintree_table"].astype(np.int64)
    return arrays


def load_h36m_regressor(path: str | os.PathLike) -> np.ndarray:
    """(17, 6890) float32: SPIN's `J_regressor_h36m.npy` (rows in H36M_17 order)."""
    path = Path(path)
    reg = np.load(path, allow_pickle=False)
    if reg.shape != (len(H36M_17), SMPL.num_vertices):
        raise ModelFileError(f"{path}: H36M regressor has shape {reg.shape}, expected (17, 6890)")
    return reg.astype(np.float32)


def load_mean_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """SPIN/HMR2.0 `smpl_mean_params.npz`: pose (144,) = 24 joints x 6D, shape (10,), cam (3,).

    The 6D layout is SPIN's: per joint the first two columns of the rotation matrix,
    row-major (R00, R01, R10, R11, R20, R21), i.e. the two columns interleaved. (HMR2.0
    ships the same file but decodes it in another layout: see model.geometry.)
    """
    path = Path(path)
    spec = {"pose": (6 * SMPL.num_joints,), "shape": (10,), "cam": (3,)}
    with np.load(path, allow_pickle=False) as z:
        out = {k: np.asarray(z[k], dtype=np.float32) for k in spec if k in z.files}
    _check(out, spec, path)
    return out


@dataclass
class BodyOutput:
    """What `BodyModel.forward` returns (metres, the frame of global_orient / transl).

    - vertices: (B, 6890, 3)
    - joints: (B, 24, 3), SMPL-24 (datasets.joints.SMPL_24)
    - keypoints: (B, 24, 3), KEYPOINTS_2D (SPIN-24) order, read off the mesh by
      KEYPOINTS_FROM_MESH; absent ones are zero
    - keypoints_valid: (24,) bool, which keypoints exist (H36M rows need the regressor)
    - h36m: (B, 17, 3) H36M_17 joints from the H36M regressor, or None without it
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints: torch.Tensor
    keypoints_valid: torch.Tensor
    h36m: torch.Tensor | None


def _as_rotmats(x: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """(B, n, 3, 3) rotation matrices from rotation matrices or axis-angle, by shape."""
    B = x.shape[0]
    if x.ndim == 4 and x.shape[1:] == (n, 3, 3):
        return x
    if n == 1 and x.ndim == 3 and x.shape[1:] == (3, 3):
        return x[:, None]
    if (x.ndim == 2 and x.shape[1] == 3 * n) or (x.ndim == 3 and x.shape[1:] == (n, 3)):
        return batch_rodrigues(x.reshape(-1, 3)).view(B, n, 3, 3)
    raise ValueError(f"{name}: shape {tuple(x.shape)}, expected (B, {n}, 3, 3) rotation matrices "
                     f"or (B, {3 * n}) / (B, {n}, 3) axis-angle")


def _stateless(module: torch.nn.Module) -> None:
    """Make every buffer non-persistent: a body model's arrays come from its files, never
    from a checkpoint (so a checkpoint neither carries SMPL data nor replaces the model
    files it is evaluated with)."""
    for mod in module.modules():
        for name, buf in list(mod.named_buffers(recurse=False)):
            mod.register_buffer(name, buf, persistent=False)


def _quiet():
    """smplx prints a warning for every model with 10 shape components (all real SMPL files)."""
    return contextlib.redirect_stdout(io.StringIO())


class BodyModel(torch.nn.Module):
    """SMPL, batched and differentiable, with SPIN-24 keypoints and H36M joints.

    model_dir: the folder `smplx.create` expects (holds `smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`;
    `Assets.body_model_dir`). h36m_regressor: path of `J_regressor_h36m.npy` or a
    (17, 6890) array, or None (then `h36m` is None and its keypoints are invalid).
    No parameters and an empty state_dict: everything comes from the files.
    """

    def __init__(self, model_dir: str | os.PathLike, gender: str = "neutral",
                 h36m_regressor: str | os.PathLike | np.ndarray | None = None, num_betas: int = 10):
        super().__init__()
        if gender not in GENDERS:
            raise ValueError(f"gender {gender!r}: expected one of {GENDERS}")
        path = Path(model_dir) / "smpl" / f"SMPL_{gender.upper()}.pkl"
        arrays = load_smpl_arrays(path)
        self.gender = gender
        self.path = path
        self.is_synthetic = bool(arrays["synthetic"])
        self.faces = arrays["f"]  # (13776, 3) int64
        with _quiet():
            self.smpl = smplx.SMPL(str(path.parent), data_struct=Struct(**arrays), gender=gender,
                                   num_betas=num_betas, create_betas=False, create_global_orient=False,
                                   create_body_pose=False, create_transl=False)
        self.lbs = LinearBlendSkinning(self.smpl.parents.tolist())  # the tree as CPU data (model.lbs)
        if h36m_regressor is None:
            self.register_buffer("h36m_regressor", None)
        else:
            reg = (h36m_regressor if isinstance(h36m_regressor, np.ndarray)
                   else load_h36m_regressor(h36m_regressor))
            if reg.shape != (len(H36M_17), SMPL.num_vertices):
                raise ValueError(f"h36m_regressor: shape {reg.shape}, expected (17, 6890)")
            self.register_buffer("h36m_regressor", torch.as_tensor(reg, dtype=torch.float32))
        # Keypoints: one gather from [SMPL-24 joints | H36M-17 | mesh vertices], built once.
        vertex_ids = sorted({src for kind, src in filter(None, KEYPOINTS_FROM_MESH.values()) if kind == "vertex"})
        base = {"smpl24": 0, "h36m17": len(SMPL_24), "vertex": len(SMPL_24) + len(H36M_17)}
        index, valid = np.zeros(len(KEYPOINTS_2D), dtype=np.int64), np.zeros(len(KEYPOINTS_2D), dtype=bool)
        for k, entry in enumerate(KEYPOINTS_FROM_MESH.values()):
            if entry is None or (entry[0] == "h36m17" and h36m_regressor is None):
                continue
            kind, src = entry
            local = {"smpl24": SMPL_24.index, "h36m17": H36M_17.index}[kind][src] if kind != "vertex" \
                else vertex_ids.index(src)
            index[k], valid[k] = base[kind] + local, True
        self.register_buffer("_kp_vertex_ids", torch.as_tensor(vertex_ids, dtype=torch.long), persistent=False)
        self.register_buffer("_kp_index", torch.as_tensor(index), persistent=False)
        self.register_buffer("keypoints_valid", torch.as_tensor(valid), persistent=False)
        _stateless(self)

    def forward(self, betas: torch.Tensor, body_pose: torch.Tensor, global_orient: torch.Tensor,
                transl: torch.Tensor | None = None) -> BodyOutput:
        """betas (B, 10); body_pose (B, 23, 3, 3) or (B, 69); global_orient (B, 1, 3, 3),
        (B, 3, 3) or (B, 3); transl (B, 3) or None. Computed in the model's dtype (fp32)
        with autocast off: bf16 matmuls would put vertices millimetres off."""
        s = self.smpl
        dtype = s.v_template.dtype
        with torch.autocast(betas.device.type, enabled=False):
            rotmats = torch.cat([_as_rotmats(global_orient.to(dtype), 1, "global_orient"),
                                 _as_rotmats(body_pose.to(dtype), SMPL.num_joints - 1, "body_pose")], 1)  # (B, 24, 3, 3)
            vertices, joints = self.lbs(betas.to(dtype), rotmats, s.v_template, s.shapedirs, s.posedirs,
                                        s.J_regressor, s.lbs_weights)  # (B, 6890, 3), (B, 24, 3)
            if transl is not None:
                vertices, joints = vertices + transl[:, None].to(dtype), joints + transl[:, None].to(dtype)
            keypoints, h36m = self.keypoints_of_mesh(vertices, joints)
        return BodyOutput(vertices, joints, keypoints, self.keypoints_valid, h36m)

    def keypoints_of_mesh(self, vertices: torch.Tensor, joints: torch.Tensor | None = None):
        """KEYPOINTS_2D points (B, 24, 3) and H36M-17 joints (B, 17, 3) or None of an
        SMPL-topology mesh (B, 6890, 3), by the KEYPOINTS_FROM_MESH gather built in __init__.

        joints: the SMPL-24 joints of that mesh; None for meshes that do not come from
        SMPL's forward pass (RICH's SMPL-X mapped to SMPL topology): then they are
        regressed from the mesh with SMPL's `J_regressor`. Absent keypoints are zero."""
        B = vertices.shape[0]
        if joints is None:
            joints = torch.einsum("jv,bvc->bjc", self.smpl.J_regressor.to(vertices.dtype), vertices)  # (B, 24, 3)
        h36m = None
        if self.h36m_regressor is not None:
            h36m = torch.einsum("jv,bvc->bjc", self.h36m_regressor.to(vertices.dtype), vertices)  # (B, 17, 3)
        pool = torch.cat([joints, h36m if h36m is not None else vertices.new_zeros(B, len(H36M_17), 3),
                          vertices[:, self._kp_vertex_ids]], dim=1)  # (B, 24 + 17 + 5, 3)
        return pool[:, self._kp_index] * self.keypoints_valid[None, :, None], h36m


_SMPLX_SPEC = {
    "v_template": (SMPLX.num_vertices, 3),
    "f": (None, 3),
    "J_regressor": (SMPLX.num_joints, SMPLX.num_vertices),
    "kintree_table": (2, SMPLX.num_joints),
    "weights": (SMPLX.num_vertices, SMPLX.num_joints),
    "posedirs": (SMPLX.num_vertices, 3, SMPLX.num_pose_basis),
    "shapedirs": (SMPLX.num_vertices, 3, -20),
    "hands_componentsl": (None, 45),
    "hands_componentsr": (None, 45),
    "hands_meanl": (45,),
    "hands_meanr": (45,),
    "lmk_faces_idx": (None,),
    "lmk_bary_coords": (None, 3),
}


def load_smplx_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The numeric arrays `smplx.SMPLX` needs from an SMPL-X .npz, read without pickle."""
    path = Path(path)
    arrays = _read_arrays(path, list(_SMPLX_SPEC) + ["synthetic"])
    _check(arrays, _SMPLX_SPEC, path)
    return arrays


class SMPLXModel(torch.nn.Module):
    """SMPL-X through `smplx.SMPLX`, for RICH ground truth; returns vertices (B, 10475, 3).

    model_dir: as for BodyModel (holds `smplx/SMPLX_<GENDER>.npz`). smplx reads its npz
    with `allow_pickle=True`, so it is handed a temporary npz holding only the numeric
    arrays read here with `allow_pickle=False`. A 400-component `shapedirs` (SMPL-X v1.1)
    is cut to its first 10 shape and first 10 expression components, the layout smplx
    reads from 20-component files. Hand poses: `use_pca` / `num_pca_comps` /
    `flat_hand_mean` as in smplx; pass what the labels were made with.
    """

    def __init__(self, model_dir: str | os.PathLike, gender: str = "neutral", use_pca: bool = False,
                 num_pca_comps: int = 12, flat_hand_mean: bool = False):
        super().__init__()
        if gender not in GENDERS:
            raise ValueError(f"gender {gender!r}: expected one of {GENDERS}")
        path = Path(model_dir) / "smplx" / f"SMPLX_{gender.upper()}.npz"
        arrays = load_smplx_arrays(path)
        self.gender, self.path = gender, path
        self.is_synthetic = bool(arrays.pop("synthetic"))
        sd = arrays["shapedirs"]
        if sd.shape[-1] >= smplx.SMPLX.SHAPE_SPACE_DIM + 10:
            sd = np.concatenate([sd[..., :10], sd[..., smplx.SMPLX.SHAPE_SPACE_DIM:smplx.SMPLX.SHAPE_SPACE_DIM + 10]], -1)
        arrays["shapedirs"] = sd[..., :20].astype(np.float32)
        arrays["posedirs"] = arrays["posedirs"].astype(np.float32)
        self.faces = arrays["f"].astype(np.int64)
        self.use_pca, self.num_pca_comps = use_pca, num_pca_comps
        with tempfile.TemporaryDirectory() as tmp, _quiet():
            clean = Path(tmp) / path.name
            np.savez(clean, **arrays)
            self.smplx = smplx.SMPLX(str(clean), gender=gender, num_betas=10, num_expression_coeffs=10,
                                     use_pca=use_pca, num_pca_comps=num_pca_comps, flat_hand_mean=flat_hand_mean,
                                     create_betas=False, create_global_orient=False, create_body_pose=False,
                                     create_left_hand_pose=False, create_right_hand_pose=False,
                                     create_jaw_pose=False, create_leye_pose=False, create_reye_pose=False,
                                     create_expression=False, create_transl=False)
        _stateless(self)

    def forward(self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor,
                left_hand_pose: torch.Tensor | None = None, right_hand_pose: torch.Tensor | None = None,
                jaw_pose: torch.Tensor | None = None, leye_pose: torch.Tensor | None = None,
                reye_pose: torch.Tensor | None = None, expression: torch.Tensor | None = None,
                transl: torch.Tensor | None = None) -> torch.Tensor:
        """Axis-angle: global_orient (B, 3), body_pose (B, 63), hands (B, 45) or (B,
        num_pca_comps) with use_pca, jaw/eyes (B, 3); betas (B, 10), expression (B, 10).
        Missing inputs are zero. Returns vertices (B, 10475, 3)."""
        B = betas.shape[0]
        zeros = lambda n: betas.new_zeros(B, n)  # noqa: E731
        hand = self.num_pca_comps if self.use_pca else 45
        out = self.smplx(betas=betas, global_orient=global_orient, body_pose=body_pose,
                         left_hand_pose=zeros(hand) if left_hand_pose is None else left_hand_pose,
                         right_hand_pose=zeros(hand) if right_hand_pose is None else right_hand_pose,
                         jaw_pose=zeros(3) if jaw_pose is None else jaw_pose,
                         leye_pose=zeros(3) if leye_pose is None else leye_pose,
                         reye_pose=zeros(3) if reye_pose is None else reye_pose,
                         expression=zeros(10) if expression is None else expression,
                         transl=transl, return_shaped=False)
        return out.vertices


def load_smplx2smpl(path: str | os.PathLike) -> sp.csr_matrix:
    """SMPL-X -> SMPL vertex matrix (6890, 10475), float32 CSR, from the pickle
    {'matrix': ...} (dense or sparse; read through `datasets.safe_pickle`).

    smpl_vertices = matrix @ smplx_vertices  (per sample: (10475, 3) -> (6890, 3)).
    """
    path = Path(path)
    data = safe_pickle.load(path)
    if not isinstance(data, dict) or "matrix" not in data:
        raise ModelFileError(f"{path}: missing key 'matrix'")
    m = np.asarray(data["matrix"])
    if m.shape != (SMPL.num_vertices, SMPLX.num_vertices):
        raise ModelFileError(f"{path}: key 'matrix' has shape {m.shape}, expected (6890, 10475)")
    return sp.csr_matrix(m, dtype=np.float32)


def smplx_to_smpl_vertices(matrix: sp.spmatrix, vertices: np.ndarray) -> np.ndarray:
    """(N, 10475, 3) SMPL-X vertices -> (N, 6890, 3) in SMPL topology: one sparse product
    for the whole batch (`matrix` from `load_smplx2smpl`; the result keeps the inputs' dtype)."""
    n = len(vertices)
    flat = np.asarray(vertices).transpose(1, 0, 2).reshape(SMPLX.num_vertices, n * 3)  # (10475, N*3)
    mapped = np.asarray(matrix.astype(flat.dtype) @ flat)  # (6890, N*3)
    return mapped.reshape(SMPL.num_vertices, n, 3).transpose(1, 0, 2)
