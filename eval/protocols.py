"""Evaluation protocols as declared objects: which joints, which root, which ground truth.

A `Protocol` names everything that differs between benchmarks — the vertex-to-joint
regressor, the scored joints (by name), the root the joints and vertices are centred
on, and how the ground-truth mesh is built — and `score` is the one function that turns
predicted and ground-truth SMPL vertices into per-sample MPJPE / PA-MPJPE / PVE in mm.
`PROTOCOLS` is the plain dict of them; nothing in `eval/` branches on a dataset name.

Both sides always go through the same regressor: the prediction is the neutral SMPL mesh
(6890 vertices), the ground truth a gendered mesh in SMPL topology.

Sources:
- 3DPW: SPIN `eval.py` (`J_regressor_h36m`, `H36M_TO_J14`, pelvis = H36M joint 0,
  gendered SMPL ground truth, neutral prediction), kept by 4D-Humans
  `hmr2/utils/__init__.py::Evaluator` and CLIFF; PVE over the 6890 vertices after
  subtracting each side's pelvis (4D-Humans / CLIFF `eval.py`). (WHAM
  `lib/eval/evaluate_3dpw.py` centres on the mean of the LSP-14 hips instead; we follow
  SPIN and DESIGN.md.)
- RICH: WHAM `lib/eval/evaluate_rich.py` (gendered SMPL-X ground truth from global
  orientation, 21 body joints and betas, mapped to SMPL topology by the `smplx2smpl`
  matrix; the 24 joints by the neutral SMPL `J_regressor` on both sides; root = mean of
  the two hips `[1, 2]`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from datasets.joints import H36M_17, LSP_14, SMPL_24, JointSet
from eval import metrics

M_TO_MM = 1000.0
NUM_SMPL_VERTICES = 6890


@dataclass(frozen=True)
class Protocol:
    """One benchmark protocol.

    - name: key in PROTOCOLS and the `dataset` column of result rows.
    - dataset, split: the shards it reads (`<features>/<encoder>/<dataset>/<split>`).
    - regressor: which (J, 6890) matrix maps SMPL vertices to joints: "h36m" (the H36M
      regressor asset, rows in `joint_set` = H36M-17 order) or "smpl" (the neutral SMPL
      model's own `J_regressor`, SMPL-24 order).
    - joint_set: the regressor's output joints, in row order.
    - eval_joints: names of the scored joints (MPJPE, PA-MPJPE), in scoring order.
    - root_joints: names of the joints whose mean is the root; joints and vertices of
      each side are centred on that side's root before MPJPE and PVE.
    - ground_truth: how the ground-truth mesh is built, a key of GROUND_TRUTH_BODIES
      ("smpl": gendered SMPL; "smplx_to_smpl": gendered SMPL-X x smplx2smpl matrix).
    - expected_sequences: the number of sequences of the real split (None: not fixed).
    - allowed_rejects: the reject reasons by which the protocol itself leaves frames out of
      the real split; a frame left out for any other reason means an incomplete split
      (None: not checked).
    - source: where the protocol is taken from.
    """

    name: str
    dataset: str
    split: str
    regressor: str
    joint_set: JointSet
    eval_joints: tuple[str, ...]
    root_joints: tuple[str, ...]
    ground_truth: str
    source: str
    expected_sequences: int | None = None
    allowed_rejects: tuple[str, ...] | None = None
    eval_index: np.ndarray = field(init=False, repr=False, compare=False)
    root_index: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.regressor not in REGRESSORS:
            raise ValueError(f"protocol {self.name}: unknown regressor {self.regressor!r}; known {sorted(REGRESSORS)}")
        if self.ground_truth not in GROUND_TRUTH_BODIES:
            raise ValueError(f"protocol {self.name}: unknown ground truth {self.ground_truth!r}; "
                             f"known {sorted(GROUND_TRUTH_BODIES)}")
        object.__setattr__(self, "eval_index", self.joint_set.indices(self.eval_joints))
        object.__setattr__(self, "root_index", self.joint_set.indices(self.root_joints))

    def score(self, pred_vertices, gt_vertices, regressor) -> dict[str, np.ndarray]:
        """Per-sample errors in mm: {"mpjpe", "pa_mpjpe", "pve"} -> (N,) float64.

        pred_vertices, gt_vertices: (N, 6890, 3) metres, SMPL topology (numpy or torch);
        regressor: (len(joint_set), 6890), this protocol's vertex-to-joint matrix.
        """
        pred_v, gt_v = (_as_f64(x) for x in (pred_vertices, gt_vertices))
        reg = _as_f64(regressor)
        if pred_v.shape != gt_v.shape or pred_v.ndim != 3 or pred_v.shape[1:] != (NUM_SMPL_VERTICES, 3):
            raise ValueError(f"protocol {self.name}: expected pred and gt vertices (N, {NUM_SMPL_VERTICES}, 3), "
                             f"got {tuple(pred_v.shape)} and {tuple(gt_v.shape)}")
        if reg.shape != (len(self.joint_set), NUM_SMPL_VERTICES):
            raise ValueError(f"protocol {self.name}: regressor '{self.regressor}' has shape {tuple(reg.shape)}, "
                             f"expected ({len(self.joint_set)}, {NUM_SMPL_VERTICES})")
        out = {}
        sides = []
        for v in (pred_v, gt_v):
            j = torch.einsum("jv,nvc->njc", reg, v)  # (N, J, 3) regressed joints
            root = j[:, self.root_index].mean(dim=1, keepdim=True)  # (N, 1, 3)
            sides.append((j[:, self.eval_index] - root, v - root))
        (pj, pv), (gj, gv) = sides
        out["mpjpe"] = metrics.mpjpe(pj, gj)
        out["pa_mpjpe"] = metrics.pa_mpjpe(pj, gj)
        out["pve"] = metrics.pve(pv, gv)
        return {k: (v * M_TO_MM).numpy() for k, v in out.items()}


def _as_f64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


# ---- what a protocol's names stand for: vertex-to-joint matrices and ground-truth bodies ----
def _load_h36m_regressor(assets) -> np.ndarray:
    from model.body_model import load_h36m_regressor

    return load_h36m_regressor(assets.require("h36m_regressor"))  # (17, 6890)


def _load_smpl_regressor(assets) -> np.ndarray:
    from model.body_model import load_smpl_arrays

    return load_smpl_arrays(assets.require("smpl_neutral"))["J_regressor"].astype(np.float32)  # (24, 6890)


# name -> loader(assets) of the (J, 6890) vertex-to-joint matrix.
REGRESSORS = {
    "h36m": _load_h36m_regressor,  # the H36M 17-joint regressor asset (J_regressor_h36m.npy)
    "smpl": _load_smpl_regressor,  # the neutral SMPL model's J_regressor (WHAM: smpl.J_regressor)
}


class SMPLGroundTruth:
    """Gendered SMPL meshes from the record's pose (24 x 3 axis-angle, row 0 the global
    orientation) and betas (10); no translation (the protocol centres on the root)."""

    def __init__(self, assets, genders=("male", "female", "neutral")):
        from model.body_model import BodyModel

        self.models = {}
        for g in genders:
            assets.require(f"smpl_{g}")
            self.models[g] = BodyModel(assets.body_model_dir, g)
        self.is_synthetic = any(m.is_synthetic for m in self.models.values())

    def _model(self, gender: str):
        if gender not in self.models:
            raise ValueError(f"ground truth: no SMPL model for gender {gender!r} (have {sorted(self.models)})")
        return self.models[gender]

    @torch.no_grad()
    def vertices(self, pose, betas, genders) -> np.ndarray:
        """pose (N, 24, 3), betas (N, 10), genders: N strings -> (N, 6890, 3) float32 metres."""
        pose, betas = _as_f32(pose), _as_f32(betas)
        out = np.zeros((len(pose), NUM_SMPL_VERTICES, 3), np.float32)
        genders = np.asarray(genders)
        for g in sorted(set(genders.tolist())):
            idx = torch.from_numpy(np.flatnonzero(genders == g))
            body = self._model(g)(betas=betas[idx], body_pose=pose[idx, 1:], global_orient=pose[idx, 0])
            out[idx.numpy()] = body.vertices.numpy()
        return out


class SMPLXToSMPLGroundTruth:
    """Gendered SMPL-X meshes (global orientation = pose row 0, body pose = rows 1-21,
    betas; hands, jaw, eyes and expression at zero, i.e. smplx's mean hands as WHAM's
    `SMPLX(gender=...)` call) mapped to SMPL topology by the smplx2smpl matrix."""

    NUM_BODY_JOINTS = 21  # SMPL-X body joints after the global orientation

    def __init__(self, assets, genders=("male", "female")):
        from model.body_model import SMPLXModel, load_smplx2smpl

        self.models = {}
        for g in genders:
            assets.require(f"smplx_{g}")
            self.models[g] = SMPLXModel(assets.body_model_dir, g)
        self.matrix = load_smplx2smpl(assets.require("smplx2smpl"))  # (6890, 10475) CSR
        self.is_synthetic = any(m.is_synthetic for m in self.models.values())

    @torch.no_grad()
    def vertices(self, pose, betas, genders) -> np.ndarray:
        """pose (N, 24, 3) with SMPL-X rows 0-21, betas (N, 10) SMPL-X, genders -> (N, 6890, 3)."""
        from model.body_model import smplx_to_smpl_vertices

        pose, betas = _as_f32(pose), _as_f32(betas)
        n = len(pose)
        out = np.zeros((n, NUM_SMPL_VERTICES, 3), np.float32)
        genders = np.asarray(genders)
        for g in sorted(set(genders.tolist())):
            if g not in self.models:
                raise ValueError(f"ground truth: no SMPL-X model for gender {g!r} (have {sorted(self.models)})")
            idx = np.flatnonzero(genders == g)
            t = torch.from_numpy(idx)
            body = pose[t, 1:1 + self.NUM_BODY_JOINTS].reshape(len(idx), -1)  # (n, 63)
            v = self.models[g](betas=betas[t], global_orient=pose[t, 0], body_pose=body).numpy()  # (n, 10475, 3)
            out[idx] = smplx_to_smpl_vertices(self.matrix, v)  # (n, 6890, 3)
        return out


def _as_f32(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


# name -> class built from `assets` whose `.vertices(pose, betas, genders)` is the GT mesh.
GROUND_TRUTH_BODIES = {
    "smpl": SMPLGroundTruth,
    "smplx_to_smpl": SMPLXToSMPLGroundTruth,
}


def load_regressor(protocol: Protocol, assets) -> np.ndarray:
    """The protocol's (len(joint_set), 6890) vertex-to-joint matrix from `assets`
    (a missing file is a FileNotFoundError naming the asset and where it is expected)."""
    reg = REGRESSORS[protocol.regressor](assets)
    if reg.shape != (len(protocol.joint_set), NUM_SMPL_VERTICES):
        raise ValueError(f"protocol {protocol.name}: regressor '{protocol.regressor}' has shape {reg.shape}, "
                         f"expected ({len(protocol.joint_set)}, {NUM_SMPL_VERTICES})")
    return reg


def load_ground_truth(protocol: Protocol, assets):
    """The protocol's ground-truth body builder from `assets`."""
    return GROUND_TRUTH_BODIES[protocol.ground_truth](assets)


THREEDPW = Protocol(
    name="3dpw",
    dataset="3dpw",
    split="test",
    regressor="h36m",
    joint_set=H36M_17,
    eval_joints=LSP_14.names,  # SPIN H36M_TO_J14, derived from names
    root_joints=("pelvis_mpii",),  # H36M row 0 (SPIN eval.py), named after SPIN's column for it
    ground_truth="smpl",
    expected_sequences=24,
    # SPIN datasets/preprocess/pw3d.py keeps every test frame whose campose_valid is set
    allowed_rejects=("invalid_camera_pose",),
    source="SPIN eval.py / 4D-Humans Evaluator: H36M regressor, LSP-14 subset, pelvis = H36M joint 0",
)

RICH = Protocol(
    name="rich",
    dataset="rich",
    split="test",
    regressor="smpl",
    joint_set=SMPL_24,
    eval_joints=SMPL_24.names,
    root_joints=("left_hip", "right_hip"),
    ground_truth="smplx_to_smpl",
    source="WHAM lib/eval/evaluate_rich.py: SMPL-X GT x smplx2smpl, SMPL J_regressor, root = mean of hips",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (THREEDPW, RICH)}
