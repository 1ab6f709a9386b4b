"""Evaluation protocols as declared objects: which joints, which root, which ground truth.

A `Protocol` names everything that differs between benchmarks — the vertex-to-joint
regressor, the scored joints (by name), the root the joints and vertices are centred
on, and how the ground-truth mesh is built — and `score` is the one function that turns
predicted and ground-truth SMPL vertices into per-sample MPJPE / PA-MPJPE / PVE in mm.
`PROTOCOLS` is the plain dict of them; nothing in `eval/` branches on a dataset name.

The prediction is the neutral SMPL mesh (6890 vertices), the ground truth a gendered mesh in
SMPL topology. The prediction's joints come from the protocol's `regressor`; the ground
truth's from the same matrix ("shared") or, where a protocol says "gendered", from the
`J_regressor` of the SMPL model of each sample's gender (`Protocol.gt_regressor`).

Sources:
- 3DPW: SPIN `eval.py` (`J_regressor_h36m`, `H36M_TO_J14`, pelvis = H36M joint 0,
  gendered SMPL ground truth, neutral prediction), kept by 4D-Humans
  `hmr2/utils/__init__.py::Evaluator` and CLIFF; PVE over the 6890 vertices after
  subtracting each side's pelvis (4D-Humans / CLIFF `eval.py`). (WHAM
  `lib/eval/evaluate_3dpw.py` centres on the mean of the LSP-14 hips instead; we follow
  SPIN and DESIGN.md.)
- RICH ("rich", the default): WHAM `lib/eval/evaluate_rich.py` (gendered SMPL-X ground
  truth from global orientation, 21 body joints and betas, mapped to SMPL topology by the
  `smplx2smpl` matrix; the 24 joints by the neutral SMPL `J_regressor` on both sides; root =
  mean of the two hips `[1, 2]`); CameraHMR `core/camerahmr_trainer_smpl.py` (validation
  step, 'rich' branch: `self.smpl` = neutral SMPL, its `J_regressor` on both sides) agrees.
- RICH as BEDLAM scores it ("rich-gendered"): BEDLAM `train/dataset/dataset.py` builds the
  same SMPL-topology mesh but regresses the ground-truth joints with the J_regressor of the
  gendered SMPL (`model = self.smpl_female` / `self.smpl_male`,
  `item['joints'] = model.J_regressor @ gt_vertices`), while `train/core/hmr_trainer.py`
  regresses the prediction's with the neutral SMPL's (`self.smpl.J_regressor`); same root.
  The choice moves the ground-truth joints (MPJPE, PA-MPJPE) and the root the ground-truth
  mesh is centred on (PVE). (CameraHMR builds its SMPL-X ground truth with `flat_hand_mean=True`,
  WHAM and BEDLAM with smplx's default mean hands, which we follow.)
"""
from __future__ import annotations

import dataclasses
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
    - gt_regressor: which matrix maps the ground-truth mesh to joints, one of
      GT_REGRESSORS: "shared" (the prediction's, `regressor`) or "gendered" (the
      `J_regressor` of the SMPL model of each sample's gender; needs regressor "smpl").
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
    gt_regressor: str = "shared"
    eval_index: np.ndarray = field(init=False, repr=False, compare=False)
    root_index: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.regressor not in REGRESSORS:
            raise ValueError(f"protocol {self.name}: unknown regressor {self.regressor!r}; known {sorted(REGRESSORS)}")
        if self.ground_truth not in GROUND_TRUTH_BODIES:
            raise ValueError(f"protocol {self.name}: unknown ground truth {self.ground_truth!r}; "
                             f"known {sorted(GROUND_TRUTH_BODIES)}")
        if self.gt_regressor not in GT_REGRESSORS:
            raise ValueError(f"protocol {self.name}: unknown ground-truth regressor {self.gt_regressor!r}; "
                             f"known {GT_REGRESSORS}")
        if self.gt_regressor == "gendered" and self.regressor != "smpl":
            raise ValueError(f"protocol {self.name}: a gendered ground-truth regressor is the gendered SMPL "
                             f"J_regressor, so the protocol's regressor must be 'smpl', got {self.regressor!r}")
        object.__setattr__(self, "eval_index", self.joint_set.indices(self.eval_joints))
        object.__setattr__(self, "root_index", self.joint_set.indices(self.root_joints))

    def score(self, pred_vertices, gt_vertices, regressor, genders=None) -> dict[str, np.ndarray]:
        """Per-sample errors in mm: {"mpjpe", "pa_mpjpe", "pve"} -> (N,) float64.

        pred_vertices, gt_vertices: (N, 6890, 3) metres, SMPL topology (numpy or torch);
        regressor: this protocol's vertex-to-joint matrices (`load_regressor`), or one
        (len(joint_set), 6890) matrix for both sides (a "shared" protocol only);
        genders: N strings, the ground truth's genders (needed by a "gendered" protocol).
        """
        pred_v, gt_v = (_as_f64(x) for x in (pred_vertices, gt_vertices))
        regs = regressor if isinstance(regressor, JointRegressors) else JointRegressors(regressor)
        if pred_v.shape != gt_v.shape or pred_v.ndim != 3 or pred_v.shape[1:] != (NUM_SMPL_VERTICES, 3):
            raise ValueError(f"protocol {self.name}: expected pred and gt vertices (N, {NUM_SMPL_VERTICES}, 3), "
                             f"got {tuple(pred_v.shape)} and {tuple(gt_v.shape)}")
        regs.check(self)
        if self.gt_regressor == "gendered":
            if not regs.gt:
                raise ValueError(f"protocol {self.name}: gendered ground-truth joints need the gendered SMPL "
                                 f"J_regressors (`load_regressor`), got one matrix")
            if genders is None or len(genders) != len(gt_v):
                raise ValueError(f"protocol {self.name}: gendered ground-truth joints need one gender per sample, "
                                 f"got {None if genders is None else len(genders)} for {len(gt_v)} samples")
            gt_j = _regress_by_gender(regs.gt, gt_v, genders, self.name)  # (N, J, 3)
        else:
            gt_j = torch.einsum("jv,nvc->njc", _as_f64(regs.pred), gt_v)  # (N, J, 3)
        pred_j = torch.einsum("jv,nvc->njc", _as_f64(regs.pred), pred_v)  # (N, J, 3) regressed joints
        out = {}
        sides = []
        for j, v in ((pred_j, pred_v), (gt_j, gt_v)):
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


def _regress_by_gender(by_gender: dict, vertices: torch.Tensor, genders, name: str) -> torch.Tensor:
    """(N, J, 3): each sample's vertices through the matrix of its gender."""
    genders = np.asarray(genders)
    unknown = sorted(set(genders.tolist()) - set(by_gender))
    if unknown:
        raise ValueError(f"protocol {name}: no gendered SMPL J_regressor for gender(s) {unknown} "
                         f"(have {sorted(by_gender)})")
    n_joints = len(next(iter(by_gender.values())))
    out = torch.zeros((len(vertices), n_joints, 3), dtype=torch.float64)
    for g in sorted(set(genders.tolist())):
        idx = torch.from_numpy(np.flatnonzero(genders == g))
        out[idx] = torch.einsum("jv,nvc->njc", _as_f64(by_gender[g]), vertices[idx])
    return out


@dataclass(frozen=True, eq=False)
class JointRegressors:
    """A protocol's vertex-to-joint matrices, each (J, 6890): `pred` for the prediction,
    `gt` gender -> matrix for the ground truth of a "gendered" protocol (empty: the
    ground truth goes through `pred` too)."""

    pred: np.ndarray
    gt: dict[str, np.ndarray] = field(default_factory=dict)

    def check(self, protocol: Protocol) -> "JointRegressors":
        """Self, if every matrix is (len(protocol.joint_set), 6890); else a ValueError naming it."""
        want = (len(protocol.joint_set), NUM_SMPL_VERTICES)
        for what, reg in (("regressor", self.pred), *((f"{g} ground-truth regressor", r) for g, r in self.gt.items())):
            if tuple(np.shape(reg)) != want:
                raise ValueError(f"protocol {protocol.name}: {what} '{protocol.regressor}' has shape "
                                 f"{tuple(np.shape(reg))}, expected {want}")
        return self


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
# How the ground truth's joints are regressed: "shared" = the prediction's matrix (WHAM
# evaluate_rich.py, CameraHMR); "gendered" = the gendered SMPL J_regressor (BEDLAM dataset.py).
GT_REGRESSORS = ("shared", "gendered")
# BEDLAM train/dataset/dataset.py: smpl_male / smpl_female (RICH has no neutral subject)
GENDERED_REGRESSOR_GENDERS = ("male", "female")


def _load_gendered_smpl_regressors(assets) -> dict[str, np.ndarray]:
    from model.body_model import load_smpl_arrays

    return {g: load_smpl_arrays(assets.require(f"smpl_{g}"))["J_regressor"].astype(np.float32)  # (24, 6890)
            for g in GENDERED_REGRESSOR_GENDERS}


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


def load_regressor(protocol: Protocol, assets) -> JointRegressors:
    """The protocol's (len(joint_set), 6890) vertex-to-joint matrices from `assets`: the
    prediction's, and the gendered ones of a "gendered" protocol (a missing file is a
    FileNotFoundError naming the asset and where it is expected)."""
    reg = REGRESSORS[protocol.regressor](assets)
    gt = _load_gendered_smpl_regressors(assets) if protocol.gt_regressor == "gendered" else {}
    return JointRegressors(reg, gt).check(protocol)


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
    gt_regressor="shared",
    source="WHAM lib/eval/evaluate_rich.py (CameraHMR agrees): SMPL-X GT x smplx2smpl, neutral SMPL J_regressor "
           "on both sides, root = mean of hips",
)

# The same benchmark with BEDLAM's ground-truth joints (a named option: `--protocols rich-gendered`).
RICH_GENDERED = dataclasses.replace(
    RICH,
    name="rich-gendered",
    gt_regressor="gendered",
    source="BEDLAM train/dataset/dataset.py + train/core/hmr_trainer.py: SMPL-X GT x smplx2smpl, GT joints by the "
           "gendered SMPL J_regressor, prediction's by the neutral one, root = mean of hips",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (THREEDPW, RICH, RICH_GENDERED)}
# What `make eval` scores when no protocol is named: one protocol per benchmark, RICH with
# the neutral ground-truth regressor of WHAM / CameraHMR (BEDLAM's is `rich-gendered`).
DEFAULT_PROTOCOLS = ("3dpw", "rich")
