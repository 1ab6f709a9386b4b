"""The 2D loss in the original image (paper §3.2.1 with CLIFF's reprojection): records of the
synthetic datasets in their real layouts, through the reader, the crop, augmented views, the
targets row and the batch, keep a camera under which the ground truth lands on the 2D labels;
the loss is zero there and its gradient reaches the camera head."""
from __future__ import annotations

from itertools import islice
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets.reader import BodyModels, centred_intrinsics
from datasets.readers import reader
from model.geometry import cam_full_to_crop, project
from pipelines.augment import ViewParams, augment
from pipelines.crop import transform_record
from train.batch import TargetRow, collate
from train.config import LossConfig
from train.losses import compute_losses, make_targets, project_full

# a turn, a mirror, a zoom, all three: views whose full image is the original turned with them
VIEWS = [ViewParams(), ViewParams(rotation=0.6), ViewParams(flip=True), ViewParams(box_scale=1.3),
         ViewParams(1.2, -0.9, True)]


@pytest.fixture(scope="module")
def read(synthetic_dir):
    """(dataset, split) -> its first 4 records (not rejects), as its reader gives them."""
    out = {}
    for name, split in (("3dpw", "test"), ("mpi_inf_3dhp", "train")):
        frames = reader(name, split, synthetic_dir / "raw").frames()
        out[name, split] = list(islice((f for f in frames if hasattr(f, "keypoints_2d")), 4))
    return out


def _batch(records):
    """The batch of the records' targets rows (the loader's fast path)."""
    feats = np.zeros((len(records), 4, 4, 3), np.float16)
    return collate([(f, TargetRow(r.key, r.to_targets_bytes(), r.key)) for f, r in zip(feats, records)])


def _view(rec, params: ViewParams):
    crop = np.zeros((256, 192, 3), np.uint8)
    return augment(rec, crop, params, view=1)[0]


def test_gt_smpl_with_gt_translation_lands_on_the_2d_labels_and_the_loss_is_zero(synthetic_dir, read):
    """3DPW (intrinsics and SMPL translation): the gendered GT mesh moved by the GT
    translation, projected with the batch's full-image intrinsics, lands on the 2D labels
    carried back from the crop within 1 px; a prediction of that mesh with the crop camera
    that CLIFF's cam_crop2full turns into the GT translation has a zero 2D term."""
    raw = read["3dpw", "test"]
    records = [transform_record(r) for r in raw]
    assert records and all(r.has_transl and r.intrinsics is not None for r in records)
    batch = _batch(records)
    t = make_targets(batch, None)
    assert batch["has_transl"].all() and batch["has_intrinsics"].all()
    models = BodyModels(synthetic_dir / "assets")
    kp = np.stack([models.keypoints(r.gender, r.smpl_pose[None].astype(np.float64), r.betas[None].astype(np.float64),
                                    np.zeros((1, 3)))[0, :, :3] for r in records])  # (B, 24, 3) body frame
    kp = torch.from_numpy(kp).float()
    labelled = t.keypoints_full[..., 2] > 0
    assert labelled.sum() > 10 * len(records)
    px = project(kp + batch["smpl_transl"][:, None], t.K_full)
    err = (px - t.keypoints_full[..., :2]).norm(dim=-1)[labelled]
    assert float(err.max()) < 1.0, float(err.max())
    # the original image's own pixels: the 2D labels as the reader gave them (before the crop)
    for r, full, lab in zip(raw, t.keypoints_full, labelled):
        np.testing.assert_allclose(full[lab, :2].numpy(), r.keypoints_2d[lab.numpy(), :2], atol=1e-2)
    # a prediction of the GT mesh with the matching crop camera: zero 2D loss, and the camera reaches it
    cam = cam_full_to_crop(batch["smpl_transl"], batch["box_center"], batch["box_size"], t.K_full).requires_grad_(True)
    valid = torch.ones(24, dtype=torch.bool)
    pred = SimpleNamespace(cam=cam, keypoints_3d=kp, keypoints_valid=valid)
    np.testing.assert_allclose(project_full(pred, t).detach()[labelled], t.keypoints_full[..., :2][labelled], atol=1.0)
    pred = SimpleNamespace(rotmats=t.rotmats, betas=t.betas, cam=cam, keypoints_3d=kp, keypoints_valid=valid,
                           vertices=torch.zeros(len(records), 5, 3), keypoints_2d=None)
    t.vertices, t.mesh_keypoints = pred.vertices, kp
    _, terms = compute_losses(pred, t, LossConfig())
    assert float(terms["joints_2d"]) < 1e-9 and float(terms["joints_3d"]) < 1e-9


@pytest.mark.parametrize("params", VIEWS)
@pytest.mark.parametrize("dataset,split", [("3dpw", "test"), ("mpi_inf_3dhp", "train")])
def test_views_keep_the_full_image_camera_consistent(read, dataset, split, params):
    """An augmented view's full-image quantities agree: its camera-frame 3D joints (3DPW: the
    GT mesh's; MPI-INF-3DHP: annot3, independent of any SMPL) projected with the batch's
    full-image intrinsics land on its 2D labels carried back from the view's crop."""
    crops = [transform_record(r) for r in read[dataset, split]]
    records = [_view(r, params) for r in crops]
    batch = _batch(records)
    t = make_targets(batch, None)
    both = (t.keypoints_full[..., 2] > 0) & (t.joints_3d[..., 3] > 0)
    assert both.sum() > 10 * len(records)
    px = project(t.joints_3d[..., :3], t.K_full)
    err = (px - t.keypoints_full[..., :2]).norm(dim=-1)[both]
    assert float(err.max()) < 1.0, float(err.max())
    # the view's full image is the original turned about the box centre: same focal, box centre kept
    plain = make_targets(_batch([_view(r, ViewParams()) for r in crops]), None)
    np.testing.assert_allclose(t.K_full[:, 2], plain.K_full[:, 2], atol=1e-6)
    np.testing.assert_allclose(torch.linalg.det(t.K_full[:, :2, :2]).abs(), torch.linalg.det(plain.K_full[:, :2, :2]),
                               rtol=1e-4)
    np.testing.assert_allclose(t.box_center, plain.box_center, atol=1e-3)


@pytest.mark.parametrize("params", VIEWS)
def test_without_intrinsics_cliffs_camera_follows_the_view_as_a_datasets_would(read, params):
    """A record without intrinsics gets CLIFF's camera of its original image (focal = the
    diagonal, principal point at the centre: CLIFF common/utils.py estimate_focal_length),
    taken through the crop and the view exactly as a dataset's K is."""
    with_k, without = [], []
    for r in read["mpi_inf_3dhp", "train"]:
        cliff = centred_intrinsics(float(np.hypot(*r.image_hw)), tuple(r.image_hw))
        with_k.append(_view(transform_record(r.replace(intrinsics=cliff)), params))
        without.append(_view(transform_record(r.replace(intrinsics=None)), params))
    a, b = _batch(with_k), _batch(without)
    assert a["has_intrinsics"].all() and not b["has_intrinsics"].any() and (b["intrinsics"] == 0).all()
    np.testing.assert_allclose(make_targets(b, None).K_full, make_targets(a, None).K_full, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("reprojection", ["full", "crop"])
def test_gradients_reach_the_camera_head(synthetic_assets, reprojection):
    from model.config import get_config
    from model.deforhmr import DeforHMR
    from train.config import load_config
    from train.module import STEP_FIELDS, DeforHMRModule
    from train.profile_step import random_batch

    torch.manual_seed(0)
    model = DeforHMR.from_assets(get_config("def-m-tiny"), synthetic_assets)
    module = DeforHMRModule(load_config(None, ["model.preset=def-m-tiny", f"loss.reprojection={reprojection}"]), model)
    batch = random_batch(model, 3)
    loss, terms = module.step_losses({k: batch[k] for k in STEP_FIELDS})
    terms["joints_2d"].backward()
    grad = model.head_cam.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 0


@pytest.mark.parametrize("turn", [0.0, 0.5])
@pytest.mark.parametrize("dataset,split", [("3dpw", "test"), ("mpi_inf_3dhp", "train")])
def test_shifted_and_extreme_crop_views_keep_the_full_image_camera_consistent(read, dataset, split, turn):
    """HMR2.0's translation and extreme crops (pipelines/augment.py) move the view's box away
    from the crop's centre: the view's box centre and size follow it, so the 3D joints still
    project onto its 2D labels in its full image; without a turn that full image is the original
    (the dataset's camera, unchanged) and only the box moved."""
    from pipelines.augment import part_box

    crops = [transform_record(r) for r in read[dataset, split]]
    full = [r.replace(keypoints_2d=np.c_[r.keypoints_2d[:, :2], np.ones(len(r.keypoints_2d))].astype(np.float32))
            for r in crops]  # every joint visible, so every part has a box
    views = [ViewParams(1.1, turn, shift=(0.02, -0.015)),
             ViewParams(0.9, turn, part="torso", part_box=part_box(full[0], "torso"), shift=(-0.01, 0.02))]
    for params in views:
        records = [_view(r, params) for r in crops]
        t = make_targets(_batch(records), None)
        both = (t.keypoints_full[..., 2] > 0) & (t.joints_3d[..., 3] > 0)
        assert both.sum() > 10 * len(records)
        err = (project(t.joints_3d[..., :3], t.K_full) - t.keypoints_full[..., :2]).norm(dim=-1)[both]
        assert float(err.max()) < 1.0, (params, float(err.max()))
        plain = make_targets(_batch([_view(r, ViewParams()) for r in crops]), None)
        assert (t.box_center - plain.box_center).abs().max() > 1.0  # the box moved
        if turn == 0.0:
            np.testing.assert_allclose(t.K_full, plain.K_full, rtol=1e-5, atol=1e-3)
