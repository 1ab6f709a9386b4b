"""Training losses (paper §3.3, "following CLIFF"): SMPL parameters, 3D joints, 2D joints
and mesh vertices, each term masked by what its sample has.

    L = global_weight * (λ_pose L_pose + λ_betas L_betas + λ_3d L_3d + λ_2d L_2d + λ_mesh L_mesh)

- L_pose: MSE on the 24 rotation matrices (SPIN `train/trainer.py` regresses rotation
  matrices, not angles), samples with `has_smpl` whose parameters are SMPL's
  (`body_model` 'smpl'; SMPL-X targets, RICH's, never supervise them, nor L_mesh).
- L_betas: MSE on betas, samples with `has_smpl`.
- L_3d: MSE on KEYPOINTS_2D joints in metres, each side relative to its own pelvis, per
  joint weighted by the target confidence (joints_3d column 3), only where the target
  has both hips (the pelvis) and the predicted mesh defines the joint.
- L_2d: MSE on 2D joints in normalised crop coordinates (model.geometry
  `normalise_crop_pixels`, units of half the crop height), weighted by the target
  confidence (keypoints_2d column 2) where the mesh defines the joint.
- L_mesh: MSE (or L1: `vertices_criterion`) on the 6890 vertices, each side relative to
  its own pelvis, samples with `has_smpl`. The target mesh is the neutral SMPL of the
  target pose and betas, as SPIN's trainer builds it (`gt_vertices = smpl(gt_pose, gt_betas)`).

Each term is a mean over the valid entries only (sum of weighted squared errors divided
by the number of entries with weight > 0), so a pseudo-labelled sample without 3D joints
or a 2D-only sample trains only what it has, and a batch without any valid entry for a
term contributes 0 to it (ours: SPIN averages over the whole batch instead).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from datasets.joints import KEYPOINTS_2D
from model.geometry import axis_angle_to_matrix, normalise_crop_pixels

# The pelvis used for pelvis-relative 3D joints and vertices: the mean of the two hips of
# KEYPOINTS_2D, present in every SMPL-derived target and in the predicted mesh's joints
# (ours; RICH's protocol centres on the same pair, WHAM `evaluate_rich.py`).
PELVIS_JOINTS = ("left_hip", "right_hip")
# Python ints, not an index tensor: slicing with them makes no host-to-device copy per step
PELVIS_INDEX: tuple[int, ...] = tuple(int(i) for i in KEYPOINTS_2D.indices(PELVIS_JOINTS))

TERMS = ("pose", "betas", "joints_3d", "joints_2d", "vertices")
# the batch tensors the losses read (train.batch): all a step needs besides the features
TARGET_FIELDS = ("smpl_pose", "betas", "has_smpl", "is_smpl", "joints_3d", "keypoints_2d")


def pelvis(joints: torch.Tensor) -> torch.Tensor:
    """(B, 24, C) KEYPOINTS_2D joints -> (B, 1, C) mean of the hips."""
    return torch.stack([joints[:, i] for i in PELVIS_INDEX], 1).mean(dim=1, keepdim=True)


def has_pelvis(confidence: torch.Tensor) -> torch.Tensor:
    """(B, 24) KEYPOINTS_2D confidences -> (B,) bool: every pelvis joint is present."""
    return torch.stack([confidence[:, i] > 0 for i in PELVIS_INDEX], 1).all(dim=1)


def masked_mean(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """err (B, N, D) per-element errors, weight (B, N) >= 0 ->
    sum(weight * err) / (D * #{weight > 0}); 0 when no entry is valid."""
    w = weight.to(err.dtype)
    count = (w > 0).sum() * err.shape[-1]
    return (w[..., None] * err).sum() / count.clamp_min(1)


@dataclass
class Targets:
    """What the losses compare against, derived once per batch (all float32, on device).

    rotmats (B, 24, 3, 3), betas (B, 10), has_smpl (B,) bool, joints_3d (B, 24, 4),
    keypoints_2d (B, 24, 3); vertices (B, 6890, 3) and keypoints_3d (B, 24, 3) of the
    target mesh (body frame), or None when no body model is given.
    """

    rotmats: torch.Tensor
    betas: torch.Tensor
    has_smpl: torch.Tensor
    joints_3d: torch.Tensor
    keypoints_2d: torch.Tensor
    vertices: torch.Tensor | None = None
    mesh_keypoints: torch.Tensor | None = None


def make_targets(batch: dict, body_model: torch.nn.Module | None) -> Targets:
    """Targets of a batch dict (train.batch; the tensors of TARGET_FIELDS); the target mesh
    from `body_model` (neutral, fp32: the body model runs outside autocast). `has_smpl` is
    the record's, and off for SMPL-X parameters (`is_smpl`)."""
    rotmats = axis_angle_to_matrix(batch["smpl_pose"].float())  # (B, 24, 3, 3)
    t = Targets(rotmats=rotmats, betas=batch["betas"].float(), has_smpl=batch["has_smpl"] & batch["is_smpl"],
                joints_3d=batch["joints_3d"].float(), keypoints_2d=batch["keypoints_2d"].float())
    if body_model is not None:
        with torch.no_grad():
            body = body_model(betas=t.betas, body_pose=rotmats[:, 1:], global_orient=rotmats[:, :1])
        t.vertices, t.mesh_keypoints = body.vertices.float(), body.keypoints.float()
    return t


def compute_losses(pred, targets: Targets, cfg) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """pred: a model.deforhmr.ModelOutput (rotmats, betas, vertices, keypoints_3d,
    keypoints_valid, keypoints_2d); cfg: train.config.LossConfig.

    Returns (total, {term: unweighted value}) — the dict holds the five TERMS.
    """
    has = targets.has_smpl.float()  # (B,)
    b = has.shape[0]
    defined = pred.keypoints_valid.to(has.device).float()[None].expand(b, -1)  # (B, 24) joints the mesh has

    terms: dict[str, torch.Tensor] = {}
    # SMPL parameters: rotation matrices and betas
    rot_err = (pred.rotmats.float() - targets.rotmats).square().flatten(2)  # (B, 24, 9)
    terms["pose"] = masked_mean(rot_err, has[:, None].expand(-1, rot_err.shape[1]))
    beta_err = (pred.betas.float() - targets.betas).square()[:, None]  # (B, 1, 10)
    terms["betas"] = masked_mean(beta_err, has[:, None])

    # 3D joints, pelvis-relative on each side
    gt3d, conf3d = targets.joints_3d[..., :3], targets.joints_3d[..., 3]  # (B, 24, 3), (B, 24)
    p3d = pred.keypoints_3d.float()
    err3d = ((p3d - pelvis(p3d)) - (gt3d - pelvis(gt3d))).square()  # (B, 24, 3)
    terms["joints_3d"] = masked_mean(err3d, conf3d * has_pelvis(conf3d)[:, None] * defined)

    # 2D joints in normalised crop coordinates
    p2d = normalise_crop_pixels(pred.keypoints_2d.float())  # (B, 24, 2)
    g2d = normalise_crop_pixels(targets.keypoints_2d[..., :2])
    terms["joints_2d"] = masked_mean((p2d - g2d).square(), targets.keypoints_2d[..., 2] * defined)

    # vertices, pelvis-relative on each side
    if targets.vertices is None or pred.vertices is None:
        raise ValueError("compute_losses: the vertex loss needs the predicted and the target mesh "
                         "(build the model and the targets with a body model)")
    pv = pred.vertices.float() - pelvis(pred.keypoints_3d.float())  # (B, 6890, 3)
    gv = targets.vertices - pelvis(targets.mesh_keypoints)
    diff = pv - gv
    verr = diff.abs() if cfg.vertices_criterion == "l1" else diff.square()
    terms["vertices"] = masked_mean(verr, has[:, None].expand(-1, verr.shape[1]))

    weights = {"pose": cfg.pose, "betas": cfg.betas, "joints_3d": cfg.joints_3d,
               "joints_2d": cfg.joints_2d, "vertices": cfg.vertices}
    total = cfg.global_weight * sum(weights[k] * terms[k] for k in TERMS)
    return total, terms
