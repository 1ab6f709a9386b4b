"""The full-image camera against CLIFF's and BEDLAM's rules, on hand-built numbers:
- CLIFF `common/utils.py cam_crop2full`: b = scale * 200, bs = b * s, tz = 2 f / bs,
  tx = 2 (cx - w / 2) / bs + s_x, ty = 2 (cy - h / 2) / bs + s_y (principal point at the
  image centre; BEDLAM `smpl_cam_head.py convert_pare_to_full_img_cam` is the same);
- CLIFF `common/utils.py estimate_focal_length`: focal = sqrt(w^2 + h^2), BEDLAM
  `dataset_smpl.py` `estimated_fl` the same, principal point at the centre (BEDLAM
  `hmr.py`: cam_intrinsics[:, 0, 2] = img_w / 2).
Our pixels have their centres at integers, so our image centre is ((w - 1) / 2, (h - 1) / 2);
CLIFF's w / 2 is compared by handing it in as the principal point.
"""
import math

import numpy as np
import torch

from model.geometry import cam_crop_to_full, cam_full_to_crop, cliff_intrinsics

H, W = 1080.0, 1920.0
DIAG = math.sqrt(H * H + W * W)  # 2202.9071...


def test_cam_crop2full_numbers():
    # crop camera (0.8, 0.1, -0.2), box centre (700, 400), box height 300 (CLIFF: scale 1.5)
    K = torch.tensor([[DIAG, 0, W / 2], [0, DIAG, H / 2], [0, 0, 1]], dtype=torch.float64)
    t = cam_crop_to_full(torch.tensor([0.8, 0.1, -0.2], dtype=torch.float64), torch.tensor([700.0, 400.0]).double(),
                         torch.tensor([225.0, 300.0]).double(), K)
    bs = 300 * 0.8
    expect = [2 * (700 - 960) / bs + 0.1, 2 * (400 - 540) / bs - 0.2, 2 * DIAG / bs]
    np.testing.assert_allclose(t.numpy(), expect, rtol=1e-12)
    np.testing.assert_allclose(t.numpy(), [-2.0666667, -1.3666667, 18.3575592], rtol=1e-7)
    # and back
    np.testing.assert_allclose(cam_full_to_crop(t, torch.tensor([700.0, 400.0]).double(),
                                                torch.tensor([225.0, 300.0]).double(), K).numpy(),
                               [0.8, 0.1, -0.2], rtol=1e-12, atol=1e-12)


def test_estimated_focal_length_is_the_image_diagonal():
    K = cliff_intrinsics(torch.tensor([[H, W], [480.0, 640.0]]).double()).numpy()
    np.testing.assert_allclose(K[:, 0, 0], [DIAG, 800.0])
    np.testing.assert_allclose(K[:, 1, 1], K[:, 0, 0])
    np.testing.assert_allclose(K[0, :2, 2], [(W - 1) / 2, (H - 1) / 2])
    np.testing.assert_allclose(K[:, 2], [[0, 0, 1]] * 2)
