"""Training losses (paper §3.3, "following CLIFF"): SMPL parameters, 3D joints, 2D joints
and mesh vertices, each term masked by what its sample has.

    L = global_weight * (λ_pose L_pose + λ_betas L_betas + λ_3d L_3d + λ_2d L_2d + λ_mesh L_mesh + λ_cam L_cam)

Every term runs in fp32 with autocast off (as `model.deforhmr.predict_body`: a bf16
projection puts 2D keypoints ~0.4 px off). The options are `train.config.LossConfig` keys:

- L_pose: MSE on the rotation matrices (SPIN `train/trainer.py` regresses rotation
  matrices, not angles) of all 24 joints, or of the 23 body joints without the global
  orientation (`pose_root` false: BEDLAM `train/losses/losses.py smpl_losses`,
  `pred_rotmat[:, 1:]`); samples with `has_smpl` whose parameters are SMPL's
  (`body_model` 'smpl'; SMPL-X targets, RICH's, never supervise them, nor L_mesh).
- L_betas: MSE on betas, samples with `has_smpl`.
- L_3d (`joints_3d_target`):
  - labels: MSE on the record's KEYPOINTS_2D 3D joints in metres, each side relative to its
    own pelvis (the labels mix camera-frame joints and root-centred mocap, SPIN's H36M `S`),
    per joint weighted by the target confidence (joints_3d column 3), only where the target
    has both hips and the predicted mesh defines the joint (SPIN `keypoint_3d_loss`);
  - mesh: MSE on the joints of the target mesh (GT SMPL parameters), both sides as the body
    model returns them (SMPL origin, not centred), unweighted, samples with `has_smpl`
    (BEDLAM `hmr_trainer_smpl.py`: `batch['joints3d'] = gt_out.joints`; losses.py
    `keypoint_3d_loss` compares them as they are).
- L_2d (`reprojection`), weighted by the target confidence (keypoints_2d column 2) where the
  mesh defines the joint:
  - full (the paper's "reprojected onto the original image using ground-truth camera
    parameters"): the predicted crop camera becomes a translation in the sample's camera
    (CLIFF `cam_crop2full`, `model.geometry.cam_crop_to_full`), the 3D keypoints are
    projected with the sample's intrinsics (the dataset's, else CLIFF's: focal = image
    diagonal, principal point at the centre; `model.geometry.full_image_intrinsics`) and
    compared with the 2D labels in original-image pixels, normalised as BEDLAM's CLIFF
    trainer does (losses.py with TRIAL.bedlam_bbox, configs/orig_cliff.yaml):
    u -> 2 u / image size - 1 per axis, the squared error then multiplied by
    image size / box size per axis (BEDLAM's box is square, scale x 200; ours the 4:3
    (w, h)). An augmented view's "original image" is the original turned with it
    (`model.geometry` module doc).
  - crop (HMR2.0: 4D-Humans `hmr2/models/hmr2.py` projects with EXTRA.FOCAL_LENGTH at the
    crop, `hmr2/models/losses.py Keypoint2DLoss` compares): the weak-perspective crop camera
    at FOCAL_CROP (`ModelOutput.keypoints_2d`), in normalised crop coordinates
    (`normalise_crop_pixels`, units of half the crop height).
- L_mesh: MSE (or L1: `vertices_criterion`) on the 6890 vertices, samples with `has_smpl`;
  `vertices_frame` smpl: both meshes as the body model returns them (SMPL origin, no
  translation), as SPIN `train/trainer.py shape_loss`, CLIFF and BEDLAM `losses.py
  shape_loss` compare them; pelvis: each side relative to its own pelvis. The target mesh is
  the neutral SMPL of the target pose and betas, as SPIN's trainer builds it
  (`gt_vertices = smpl(gt_pose, gt_betas)`).
- L_cam: BEDLAM's `loss_cam = exp(-10 s)^2` (losses.py), keeping the crop camera's scale s
  positive; every real row (box height > 0: a padded row has none).

Each term is a mean over the valid entries only (sum of weighted squared errors divided
by the number of entries with weight > 0), so a pseudo-labelled sample without 3D joints
or a 2D-only sample trains only what it has, and a batch without any valid entry for a
term contributes 0 to it (ours: SPIN and BEDLAM average over the whole batch instead).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from datasets.joints import KEYPOINTS_2D
from model.geometry import (axis_angle_to_matrix, cam_crop_to_full, full_image_intrinsics, normalise_crop_pixels,
                            project, uncrop_points)

# The pelvis used for pelvis-relative 3D joints and vertices: the mean of the two hips of
# KEYPOINTS_2D, present in every SMPL-derived target and in the predicted mesh's joints
# (ours; RICH's protocol centres on the same pair, WHAM `evaluate_rich.py`).
PELVIS_JOINTS = ("left_hip", "right_hip")
# Python ints, not an index tensor: slicing with them makes no host-to-device copy per step
PELVIS_INDEX: tuple[int, ...] = tuple(int(i) for i in KEYPOINTS_2D.indices(PELVIS_JOINTS))
BEDLAM_CAM_SHARPNESS = 10.0  # BEDLAM losses.py: loss_cam = exp(-pred_cam[:, 0] * 10) ** 2
CAM_SCALE_FLOOR = -4.0  # ours: L_cam reads s >= -4 (exp(80) is finite in fp32)

TERMS = ("pose", "betas", "joints_3d", "joints_2d", "vertices", "cam")
# the batch tensors the losses read (train.batch): all a step needs besides the features
TARGET_FIELDS = ("smpl_pose", "betas", "has_smpl", "is_smpl", "joints_3d", "keypoints_2d",
                 "image_hw", "box_center", "box_size", "crop_affine", "intrinsics", "has_intrinsics")


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
    keypoints_2d (B, 24, 3) crop pixels; the sample's full image (`model.geometry` module
    doc): keypoints_full (B, 24, 3) the 2D labels in its pixels (confidence kept), K_full
    (B, 3, 3) its intrinsics, box_center (B, 2), box_size (B, 2) and image_wh (B, 2) (width,
    height) in its pixels; vertices (B, 6890, 3) and mesh_keypoints (B, 24, 3) of the target
    mesh (body frame), or None when no body model is given.
    """

    rotmats: torch.Tensor
    betas: torch.Tensor
    has_smpl: torch.Tensor
    joints_3d: torch.Tensor
    keypoints_2d: torch.Tensor
    keypoints_full: torch.Tensor
    K_full: torch.Tensor
    box_center: torch.Tensor
    box_size: torch.Tensor
    image_wh: torch.Tensor
    vertices: torch.Tensor | None = None
    mesh_keypoints: torch.Tensor | None = None


def make_targets(batch: dict, body_model: torch.nn.Module | None) -> Targets:
    """Targets of a batch dict (train.batch; the tensors of TARGET_FIELDS); the target mesh
    from `body_model` (neutral, fp32: the body model runs outside autocast). `has_smpl` is
    the record's, and off for SMPL-X parameters (`is_smpl`)."""
    with torch.autocast(batch["betas"].device.type, enabled=False):
        f = {k: batch[k].float() for k in ("smpl_pose", "betas", "joints_3d", "keypoints_2d", "image_hw",
                                           "box_center", "box_size", "crop_affine", "intrinsics")}
        rotmats = axis_angle_to_matrix(f["smpl_pose"])  # (B, 24, 3, 3)
        kp = f["keypoints_2d"]
        full = uncrop_points(kp[..., :2], f["box_center"], f["box_size"])  # (B, 24, 2)
        t = Targets(rotmats=rotmats, betas=f["betas"], has_smpl=batch["has_smpl"] & batch["is_smpl"],
                    joints_3d=f["joints_3d"], keypoints_2d=kp, keypoints_full=torch.cat([full, kp[..., 2:]], -1),
                    K_full=full_image_intrinsics(f["intrinsics"], batch["has_intrinsics"], f["crop_affine"],
                                                 f["box_center"], f["box_size"], f["image_hw"]),
                    box_center=f["box_center"], box_size=f["box_size"], image_wh=f["image_hw"].flip(-1))
    if body_model is not None:
        with torch.no_grad():
            body = body_model(betas=t.betas, body_pose=rotmats[:, 1:], global_orient=rotmats[:, :1])
        t.vertices, t.mesh_keypoints = body.vertices.float(), body.keypoints.float()
    return t


def project_full(pred, targets: Targets) -> torch.Tensor:
    """(B, 24, 2) the predicted 3D keypoints in the sample's full-image pixels: the crop camera
    as a translation in its camera (CLIFF `cam_crop2full`), then its intrinsics."""
    transl = cam_crop_to_full(pred.cam.float(), targets.box_center, targets.box_size, targets.K_full)  # (B, 3)
    return project(pred.keypoints_3d.float() + transl[:, None], targets.K_full)


def compute_losses(pred, targets: Targets, cfg) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """pred: a model.deforhmr.ModelOutput (rotmats, betas, cam, vertices, keypoints_3d,
    keypoints_valid, keypoints_2d); cfg: train.config.LossConfig.

    Returns (total, {term: unweighted value}) — the dict holds the TERMS.
    """
    with torch.autocast(targets.betas.device.type, enabled=False):
        terms = _terms(pred, targets, cfg)
    weights = {"pose": cfg.pose, "betas": cfg.betas, "joints_3d": cfg.joints_3d,
               "joints_2d": cfg.joints_2d, "vertices": cfg.vertices, "cam": cfg.cam}
    total = cfg.global_weight * sum(weights[k] * terms[k] for k in TERMS)
    return total, terms


def _terms(pred, targets: Targets, cfg) -> dict[str, torch.Tensor]:
    has = targets.has_smpl.float()  # (B,)
    b = has.shape[0]
    defined = pred.keypoints_valid.to(has.device).float()[None].expand(b, -1)  # (B, 24) joints the mesh has

    terms: dict[str, torch.Tensor] = {}
    # SMPL parameters: rotation matrices (without the global orientation: BEDLAM) and betas
    first = 0 if cfg.pose_root else 1
    rot_err = (pred.rotmats.float() - targets.rotmats)[:, first:].square().flatten(2)  # (B, 24 or 23, 9)
    terms["pose"] = masked_mean(rot_err, has[:, None].expand(-1, rot_err.shape[1]))
    beta_err = (pred.betas.float() - targets.betas).square()[:, None]  # (B, 1, 10)
    terms["betas"] = masked_mean(beta_err, has[:, None])

    p3d = pred.keypoints_3d.float()
    if cfg.joints_3d_target == "labels":  # the record's joints, pelvis-relative on each side
        gt3d, conf3d = targets.joints_3d[..., :3], targets.joints_3d[..., 3]  # (B, 24, 3), (B, 24)
        err3d = ((p3d - pelvis(p3d)) - (gt3d - pelvis(gt3d))).square()  # (B, 24, 3)
        terms["joints_3d"] = masked_mean(err3d, conf3d * has_pelvis(conf3d)[:, None] * defined)
    else:  # "mesh": the target mesh's joints, SMPL origin on both sides (BEDLAM)
        _need_mesh(targets, pred)
        terms["joints_3d"] = masked_mean((p3d - targets.mesh_keypoints).square(), has[:, None] * defined)

    conf2d = targets.keypoints_2d[..., 2] * defined  # (B, 24)
    if cfg.reprojection == "full":
        size = targets.image_wh.clamp_min(1.0)[:, None]  # (B, 1, 2)
        diff = 2 * (project_full(pred, targets) - targets.keypoints_full[..., :2]) / size  # BEDLAM: 2 u / size - 1
        scale = size / targets.box_size.clamp_min(1.0)[:, None]  # BEDLAM loss_keypoints_scale = img_size / bbox
        terms["joints_2d"] = masked_mean(diff.square() * scale, conf2d)
    else:  # "crop"
        p2d = normalise_crop_pixels(pred.keypoints_2d.float())  # (B, 24, 2)
        g2d = normalise_crop_pixels(targets.keypoints_2d[..., :2])
        terms["joints_2d"] = masked_mean((p2d - g2d).square(), conf2d)

    _need_mesh(targets, pred)
    pv, gv = pred.vertices.float(), targets.vertices  # (B, 6890, 3), SMPL origin
    if cfg.vertices_frame == "pelvis":
        pv, gv = pv - pelvis(p3d), gv - pelvis(targets.mesh_keypoints)
    diff = pv - gv
    verr = diff.abs() if cfg.vertices_criterion == "l1" else diff.square()
    terms["vertices"] = masked_mean(verr, has[:, None].expand(-1, verr.shape[1]))

    # BEDLAM's camera term on every real row (a padded row has box size 0); s floored (ours) so
    # that exp stays finite in fp32 (exp(-20 s) overflows below s = -4.4; 0 x inf would be NaN)
    s = pred.cam.float()[:, :1].clamp_min(CAM_SCALE_FLOOR)  # (B, 1)
    cam_err = torch.exp(-BEDLAM_CAM_SHARPNESS * s).square()[:, None]  # (B, 1, 1)
    terms["cam"] = masked_mean(cam_err, (targets.box_size[:, 1:] > 0).float())
    return terms


def _need_mesh(targets: Targets, pred) -> None:
    if targets.vertices is None or pred.vertices is None:
        raise ValueError("compute_losses: the vertex and mesh-joint losses need the predicted and the target mesh "
                         "(build the model and the targets with a body model)")
