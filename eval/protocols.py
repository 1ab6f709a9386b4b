"""Evaluation protocols as declared objects: which joints, which root, which ground truth.

A `Protocol` names everything that differs between benchmarks — the vertex-to-joint
regressor, the scored joints (by name), the root the joints and vertices are centred
on, how the ground truth is built (a mesh, or the dataset's own 3D joints), which metrics
it reports and which kinds of prediction it accepts — and `score` is the one function
that turns a prediction and its ground truth into per-sample errors (MPJPE / PA-MPJPE /
PVE in mm, PCK / AUC in %). `PROTOCOLS` is the plain dict of them; nothing in `eval/`
branches on a dataset name.

The prediction is the neutral SMPL mesh (6890 vertices; or, where a protocol accepts them,
its scored joints directly), the ground truth a gendered mesh in SMPL topology or the
record's `joints_3d`. The prediction's joints come from the protocol's `regressor`; a
ground-truth mesh's from the same matrix ("shared") or, where a protocol says "gendered",
from the `J_regressor` of the SMPL model of each sample's gender (`Protocol.gt_regressor`).

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
- EMDB ("emdb", EMDB 1, good frames only: `datasets/emdb.py`): CameraHMR
  `core/camerahmr_trainer_smpl.py` (validation step, 'emdb' branch) and TokenHMR
  `tokenhmr/lib/utils/pose_utils.py::Evaluator` ('EMDB' branch): the gendered SMPL ground
  truth in the camera frame, the 24 joints by the neutral SMPL `J_regressor` on both
  meshes, root = mean of the hips `[1, 2]`, PVE over the 6890 vertices after subtracting
  each side's root. (WHAM `lib/eval/evaluate_emdb.py` and eth-ait/emdb
  `evaluation_metrics.py` take the 24 skeleton joints of the SMPL forward pass instead,
  the ground truth's from the gendered model; same hips root, same good frames.)
- MPI-INF-3DHP ("3dhp", test set, `univ_annot3`): SPIN `eval.py` ('mpi-inf-3dhp': the
  prediction's 17 joints by `J_regressor_h36m` and `H36M_TO_J17`, minus its H36M pelvis;
  the ground truth `pose_3d[J24_TO_J17]`, which SPIN's preprocessing centred on the 3DHP
  pelvis, `S17 - S17[0]`); no mesh, so no PVE. PCK@150 mm and AUC as the test set's
  `mpii_compute_3d_pck.m` computes them (`error < t`, `thresh = 0:5:150`, PCK at 150,
  AUC = mean of the PCK curve) over all 17 joints (`mpii_get_pck_auc_joint_groups.m` of
  the release groups all 17; mmhuman3d `keypoint_3d_pck` / `keypoint_3d_auc` agree).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from datasets.errors import InputError
from datasets.joints import H36M_17, KEYPOINTS_2D, LSP_14, SMPL_24, SPIN_J17, JointSet
from eval import metrics

M_TO_MM = 1000.0
TO_PERCENT = 100.0
NUM_SMPL_VERTICES = 6890
# every metric a protocol may report; mm except pck / auc (%)
METRICS = ("pa_mpjpe", "mpjpe", "pve", "pck", "auc")
MESH_METRICS = ("pa_mpjpe", "mpjpe", "pve")
PERCENT_METRICS = ("pck", "auc")  # higher is better
# MPI-INF-3DHP test set `mpii_compute_3d_pck.m`: `pck_thresh = 150`, `thresh = 0:5:150` (mm)
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = tuple(float(t) for t in range(0, 151, 5))
# what a prediction may be: SMPL parameters (-> the neutral mesh), the mesh, or the scored joints
INPUTS = ("smpl", "vertices", "joints")


class GroundTruthError(InputError, ValueError):
    """A record cannot give the protocol's ground truth (no SMPL, an absent joint); names the key."""


@dataclass(frozen=True, eq=False)
class Prediction:
    """What is scored, metres, any frame (each side is centred on its own root):
    `vertices` (N, 6890, 3) the neutral SMPL mesh, or `joints` (N, len(eval_joints), 3)
    the protocol's scored joints in `eval_joints` order (protocols whose `inputs` hold
    "joints"). With vertices, joints come from the protocol's regressor."""

    vertices: object = None
    joints: object = None


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The ground truth of N samples, metres: `vertices` (N, 6890, 3) a mesh in SMPL
    topology, or `joints` (N, len(joint_set), 3) in the ground truth's `joint_set`
    (records' `joints_3d`: KEYPOINTS_2D); `genders` (N,) strings."""

    vertices: object = None
    joints: object = None
    genders: tuple = ()


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
    - ground_truth: how the ground truth is built, a key of GROUND_TRUTH_BODIES ("smpl":
      gendered SMPL mesh; "smplx_to_smpl": gendered SMPL-X x smplx2smpl matrix;
      "joints_3d": the record's `joints_3d`, no mesh, scored by the same joint names).
    - gt_regressor: which matrix maps the ground-truth mesh to joints, one of
      GT_REGRESSORS: "shared" (the prediction's, `regressor`) or "gendered" (the
      `J_regressor` of the SMPL model of each sample's gender; needs regressor "smpl").
    - expected_sequences: the number of sequences of the real split (None: not fixed).
    - allowed_rejects: the reject reasons by which the protocol itself leaves frames out of
      the real split; a frame left out for any other reason means an incomplete split
      (None: not checked).
    - metrics: what it reports, in table order, from METRICS ("pve" needs a mesh ground truth).
    - inputs: what a prediction may be, from INPUTS; "joints" (the scored joints given
      directly) needs the root joints among the scored ones.
    - rank_metric: the metric the best / worst examples are picked by.
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
    metrics: tuple[str, ...] = MESH_METRICS
    inputs: tuple[str, ...] = ("smpl", "vertices")
    rank_metric: str = "pve"
    eval_index: np.ndarray = field(init=False, repr=False, compare=False)
    root_index: np.ndarray = field(init=False, repr=False, compare=False)
    gt_eval_index: np.ndarray = field(init=False, repr=False, compare=False)
    gt_root_index: np.ndarray = field(init=False, repr=False, compare=False)

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
        unknown = sorted(set(self.metrics) - set(METRICS)) + sorted(set(self.inputs) - set(INPUTS))
        if unknown:
            raise ValueError(f"protocol {self.name}: unknown metrics / inputs {unknown}; known {METRICS} / {INPUTS}")
        if "pve" in self.metrics and not self.has_mesh:
            raise ValueError(f"protocol {self.name}: PVE needs a ground-truth mesh, '{self.ground_truth}' has none")
        if "joints" in self.inputs and not set(self.root_joints) <= set(self.eval_joints):
            raise ValueError(f"protocol {self.name}: joints as input need the root {self.root_joints} among the "
                             f"scored joints")
        if self.rank_metric not in self.metrics:
            raise ValueError(f"protocol {self.name}: rank_metric {self.rank_metric!r} is not one of {self.metrics}")
        gt_set = self.gt_joint_set
        object.__setattr__(self, "eval_index", self.joint_set.indices(self.eval_joints))
        object.__setattr__(self, "root_index", self.joint_set.indices(self.root_joints))
        object.__setattr__(self, "gt_eval_index", gt_set.indices(self.eval_joints))
        object.__setattr__(self, "gt_root_index", gt_set.indices(self.root_joints))

    @property
    def has_mesh(self) -> bool:
        """Whether the ground truth is a mesh (else joints only: no PVE, no mesh pictures)."""
        return GROUND_TRUTH_BODIES[self.ground_truth].joint_set is None

    @property
    def gt_joint_set(self) -> JointSet:
        """The joints the ground truth is given in: the regressor's (a mesh) or the records'."""
        return GROUND_TRUTH_BODIES[self.ground_truth].joint_set or self.joint_set

    @property
    def pred_joint_set(self) -> JointSet:
        """The order of `Prediction.joints` (a prediction given as joints): the scored joints."""
        return JointSet(f"{self.name}_eval", tuple(self.eval_joints))

    def score(self, pred, gt, regressor, genders=None) -> dict[str, np.ndarray]:
        """Per-sample errors: {metric: (N,) float64} for `self.metrics`, mm (pck, auc: %).

        pred: a `Prediction`, or (N, 6890, 3) predicted vertices; gt: a `GroundTruth`, or
        (N, 6890, 3) ground-truth vertices in SMPL topology (metres, numpy or torch);
        regressor: this protocol's vertex-to-joint matrices (`load_regressor`), or one
        (len(joint_set), 6890) matrix for both sides (a "shared" protocol only);
        genders: N strings, the ground truth's genders (needed by a "gendered" protocol;
        taken from `gt.genders` when `gt` is a GroundTruth).
        """
        pj, gj, pv, gv = self.aligned(pred, gt, regressor, genders)
        mm = {"pj": pj * M_TO_MM, "gj": gj * M_TO_MM}
        out = {}
        for m in self.metrics:
            if m == "mpjpe":
                out[m] = metrics.mpjpe(mm["pj"], mm["gj"])
            elif m == "pa_mpjpe":
                out[m] = metrics.pa_mpjpe(mm["pj"], mm["gj"])
            elif m == "pve":
                if pv is None:
                    raise ValueError(f"protocol {self.name}: PVE needs predicted vertices, the prediction has joints only")
                out[m] = metrics.pve(pv, gv) * M_TO_MM
            elif m == "pck":
                out[m] = metrics.pck(mm["pj"], mm["gj"], PCK_THRESHOLD_MM) * TO_PERCENT
            elif m == "auc":
                out[m] = metrics.auc(mm["pj"], mm["gj"], AUC_THRESHOLDS_MM) * TO_PERCENT
        return {k: v.numpy() for k, v in out.items()}

    def aligned(self, pred, gt, regressor, genders=None):
        """The two sides as `score` compares them, float64 torch tensors, metres: predicted and
        ground-truth scored joints (N, len(eval_joints), 3), each centred on its own root, and
        the vertices centred alike ((N, 6890, 3), or None where a side has none)."""
        pred = pred if isinstance(pred, Prediction) else Prediction(vertices=pred)
        gt = gt if isinstance(gt, GroundTruth) else GroundTruth(vertices=gt, genders=tuple(genders or ()))
        regs = regressor if isinstance(regressor, JointRegressors) else JointRegressors(regressor)
        regs.check(self)
        pj, pv = self._pred_side(pred, regs)
        gj, gv = self._gt_side(gt, regs, len(pj))
        return pj, gj, pv, gv

    def _pred_side(self, pred: Prediction, regs: "JointRegressors"):
        """(joints (N, J_eval, 3), vertices (N, 6890, 3) or None), centred on the prediction's root."""
        if pred.vertices is not None:
            v = _as_f64(pred.vertices)
            if v.ndim != 3 or v.shape[1:] != (NUM_SMPL_VERTICES, 3):
                raise ValueError(f"protocol {self.name}: expected pred vertices (N, {NUM_SMPL_VERTICES}, 3), "
                                 f"got {tuple(v.shape)}")
            j = torch.einsum("jv,nvc->njc", _as_f64(regs.pred), v)  # (N, J, 3) regressed joints
            root = j[:, self.root_index].mean(dim=1, keepdim=True)  # (N, 1, 3)
            return j[:, self.eval_index] - root, v - root
        if pred.joints is None:
            raise ValueError(f"protocol {self.name}: the prediction has neither vertices nor joints")
        if "joints" not in self.inputs:
            raise ValueError(f"protocol {self.name}: scores meshes ({', '.join(self.inputs)}); joints alone are not enough")
        j = _as_f64(pred.joints)
        if j.ndim != 3 or j.shape[1:] != (len(self.eval_joints), 3):
            raise ValueError(f"protocol {self.name}: expected pred joints (N, {len(self.eval_joints)}, 3) in the order "
                             f"{list(self.eval_joints)}, got {tuple(j.shape)}")
        root_in_eval = self.pred_joint_set.indices(self.root_joints)
        return j - j[:, root_in_eval].mean(dim=1, keepdim=True), None

    def _gt_side(self, gt: GroundTruth, regs: "JointRegressors", n: int):
        """(joints (N, J_eval, 3), vertices or None), centred on the ground truth's root."""
        if self.has_mesh:
            if gt.vertices is None:
                raise ValueError(f"protocol {self.name}: the ground truth is a mesh, got none")
            v = _as_f64(gt.vertices)
            if v.ndim != 3 or v.shape != (n, NUM_SMPL_VERTICES, 3):
                raise ValueError(f"protocol {self.name}: expected pred and gt vertices (N, {NUM_SMPL_VERTICES}, 3), "
                                 f"got {n} predictions and gt {tuple(v.shape)}")
            if self.gt_regressor == "gendered":
                if not regs.gt:
                    raise ValueError(f"protocol {self.name}: gendered ground-truth joints need the gendered SMPL "
                                     f"J_regressors (`load_regressor`), got one matrix")
                if len(gt.genders) != len(v):
                    raise ValueError(f"protocol {self.name}: gendered ground-truth joints need one gender per "
                                     f"sample, got {len(gt.genders)} for {len(v)} samples")
                j = _regress_by_gender(regs.gt, v, gt.genders, self.name)  # (N, J, 3)
            else:
                j = torch.einsum("jv,nvc->njc", _as_f64(regs.pred), v)  # (N, J, 3)
        else:
            if gt.joints is None:
                raise ValueError(f"protocol {self.name}: the ground truth is joints, got none")
            j = _as_f64(gt.joints)
            if j.shape != (n, len(self.gt_joint_set), 3):
                raise ValueError(f"protocol {self.name}: expected gt joints ({n}, {len(self.gt_joint_set)}, 3) in "
                                 f"{self.gt_joint_set.name} order, got {tuple(j.shape)}")
            v = None
        root = j[:, self.gt_root_index].mean(dim=1, keepdim=True)  # (N, 1, 3)
        return j[:, self.gt_eval_index] - root, None if v is None else v - root


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


class _MeshGroundTruth:
    """A ground-truth mesh built from the records' SMPL-family targets (`body_model`) by
    `vertices(pose, betas, genders)`; joints come from the protocol's regressor."""

    joint_set = None
    body_model = ""

    def of_records(self, records, protocol: "Protocol | None" = None) -> GroundTruth:
        """The ground truth of records: a GroundTruthError unless each has `body_model` targets."""
        lacking = [r.key for r in records if not r.has_smpl]
        if lacking:
            raise GroundTruthError(f"samples without SMPL ground truth in the evaluation split (e.g. {lacking[:3]}); "
                                   f"the protocol scores every sample")
        other = [r.key for r in records if r.body_model != self.body_model]
        if other:
            raise GroundTruthError(f"samples whose ground truth is not {self.body_model} (e.g. {other[:3]})")
        genders = tuple(r.gender for r in records)
        return GroundTruth(vertices=self.vertices(np.stack([r.smpl_pose for r in records]),
                                                  np.stack([r.betas for r in records]), genders), genders=genders)


class SMPLGroundTruth(_MeshGroundTruth):
    """Gendered SMPL meshes from the record's pose (24 x 3 axis-angle, row 0 the global
    orientation) and betas (10); no translation (the protocol centres on the root)."""

    body_model = "smpl"

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



class SMPLXToSMPLGroundTruth(_MeshGroundTruth):
    """Gendered SMPL-X meshes (global orientation = pose row 0, body pose = rows 1-21,
    betas; hands, jaw, eyes and expression at zero, i.e. smplx's mean hands as WHAM's
    `SMPLX(gender=...)` call) mapped to SMPL topology by the smplx2smpl matrix
    (`datasets/rich.py` records)."""

    NUM_BODY_JOINTS = 21  # SMPL-X body joints after the global orientation
    body_model = "smplx"

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



class RecordJointsGroundTruth:
    """The records' own 3D joints (`joints_3d`, KEYPOINTS_2D order, camera frame, metres):
    MPI-INF-3DHP's `univ_annot3` (`datasets/mpi_inf_3dhp.py`). No mesh. Every joint the
    protocol scores or centres on must be present (confidence > 0)."""

    joint_set = KEYPOINTS_2D
    is_synthetic = False  # no asset is read; the records say whether they are synthetic

    def __init__(self, assets=None):
        pass

    def of_records(self, records, protocol: "Protocol") -> GroundTruth:
        used = np.union1d(protocol.gt_eval_index, protocol.gt_root_index)
        for r in records:
            absent = [self.joint_set.names[j] for j in used if not r.joints_3d[j, 3] > 0]
            if absent:
                raise GroundTruthError(f"sample {r.key}: ground-truth joints {absent} are absent (joints_3d "
                                       f"confidence 0); the protocol scores {list(protocol.eval_joints)}")
        return GroundTruth(joints=np.stack([r.joints_3d[:, :3] for r in records]).astype(np.float64),
                           genders=tuple(r.gender for r in records))


def _as_f32(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


# name -> class built from `assets` whose `.of_records(records, protocol)` is the ground
# truth; its `joint_set` is None for a mesh, else the order of the joints it gives.
GROUND_TRUTH_BODIES = {
    "smpl": SMPLGroundTruth,
    "smplx_to_smpl": SMPLXToSMPLGroundTruth,
    "joints_3d": RecordJointsGroundTruth,
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

# RICH's joints and root (CameraHMR / TokenHMR: J_regressor @ vertices, (j[1] + j[2]) / 2) on a
# gendered SMPL ground truth
EMDB = dataclasses.replace(
    RICH,
    name="emdb",
    dataset="emdb",  # test = EMDB 1, good frames only (datasets/emdb.py)
    ground_truth="smpl",
    # eth-ait/emdb evaluation_engine.py / WHAM evaluate_emdb.py: frames outside good_frames_mask are not scored
    allowed_rejects=("invalid_frame",),
    source="CameraHMR core/camerahmr_trainer_smpl.py ('emdb') / TokenHMR lib/utils/pose_utils.py Evaluator ('EMDB'): "
           "gendered SMPL GT, neutral SMPL J_regressor on both sides, root = mean of hips; EMDB 1 good frames "
           "(eth-ait/emdb evaluate.py)",
)

THREEDHP = Protocol(
    name="3dhp",
    dataset="mpi_inf_3dhp",
    split="test",
    regressor="h36m",
    joint_set=H36M_17,
    eval_joints=SPIN_J17.names,  # SPIN H36M_TO_J17 (prediction) / J24_TO_J17 (ground truth), by name
    root_joints=("pelvis_mpii",),  # SPIN eval.py: H36M joint 0; its GT is centred on the 3DHP pelvis
    ground_truth="joints_3d",  # univ_annot3 (datasets/mpi_inf_3dhp.py)
    metrics=("pa_mpjpe", "mpjpe", "pck", "auc"),
    inputs=("smpl", "vertices", "joints"),
    rank_metric="mpjpe",
    expected_sequences=6,  # TS1..TS6
    allowed_rejects=("invalid_frame",),  # valid_frame 0: "invalid frames won't be used for evaluation"
    source="SPIN eval.py ('mpi-inf-3dhp': H36M regressor, H36M_TO_J17, pelvis-centred univ_annot3); PCK@150 mm, "
           "AUC over 0:5:150 mm, 17 joints: mpii_compute_3d_pck.m (MPI-INF-3DHP test set code)",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (THREEDPW, RICH, RICH_GENDERED, EMDB, THREEDHP)}
# What `make eval` scores when no protocol is named: one protocol per benchmark, RICH with
# the neutral ground-truth regressor of WHAM / CameraHMR (BEDLAM's is `rich-gendered`);
# those whose split is not in the features are reported as not evaluated.
DEFAULT_PROTOCOLS = ("3dpw", "rich", "emdb", "3dhp")
