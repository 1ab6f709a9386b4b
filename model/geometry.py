"""Geometry: rotations, cameras and the crop affine, named once for every stage.

Conventions:
- Camera frame: OpenCV (x right, y down, z forward). Pixels: (0, 0) is the centre of the
  top-left pixel, as in `cv2.warpAffine`.
- Rotations: axis-angle (radians), 3x3 matrices, and the 6D representation of Zhou et
  al. in SPIN's *interleaved* layout (SPIN utils/geometry.py `rot6d_to_rotmat` views the 6
  numbers as 3x2 and takes the two columns), the layout `smpl_mean_params.npz` is written
  in, so a real file's mean pose decodes to the mean pose. Not HMR2.0's: 4D-Humans
  hmr2/utils/geometry.py `rot6d_to_rotmat` reads a1 = x[0:3], a2 = x[3:6] (x.reshape(-1, 2, 3)),
  and applies it to the same file.
- Crop camera (HMR2.0 style, weak perspective): `cam = (s, tx, ty)`; a point X (metres,
  camera axes, body-centred) lands at normalised crop coordinates n = s * (X_xy + t_xy),
  where n = (pixel - crop centre) / (crop height / 2). It equals a perspective camera
  with focal FOCAL_CROP px at the crop centre and translation (tx, ty, 2 f / (H s)).
- Full-image camera (CLIFF `cam_crop2full`): the same person seen by the original camera
  (focal f, principal point p): translation (tx + 2 (c_x - p_x) / (b s), ty + 2 (c_y - p_y) / (b s),
  2 f / (b s)) for a box of centre c and height b (`cam_crop_to_full`). CLIFF puts p at the
  image centre; with a dataset's intrinsics p is theirs.
- A view's full image: an augmented view (`pipelines.augment`) turns / mirrors the crop
  about the box centre; its "original image" is the original turned the same way about that
  centre, seen by the camera with axes Q (`affine_rotation`). Its intrinsics are
  `uncrop_matrix` @ the view's crop intrinsics (`full_image_intrinsics`): for the plain
  crop, the dataset's K itself.

Torch functions take any leading dimensions. The crop helpers are numpy (data path).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from datasets.record import CROP_HW

FOCAL_CROP = 5000.0  # px, HMR2.0 `EXTRA.FOCAL_LENGTH` for the crop camera
SPIN_BOX_EXPAND = 1.2  # SPIN preprocess: box side = 1.2 x the larger side of the visible keypoints
CROP_ASPECT = CROP_HW[1] / CROP_HW[0]  # width / height = 192 / 256


# ---- rotations -------------------------------------------------------------------------
def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3), Rodrigues; exact gradient at zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True)  # (..., 1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos t)/t^2 with their Taylor series near 0
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 3) axis-angle with angle in [0, pi]."""
    # via the quaternion, which is stable at 0 and pi
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 4) unit quaternion (w, x, y, z), w >= 0 (Shepperd's method)."""
    m = R.reshape(*R.shape[:-2], 9)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    q_abs = torch.sqrt(torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                                    1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1).clamp_min(0) + 1e-12)
    # candidate quaternions: row i is 4 q_i q, accurate where |q_i| is large (Shepperd); the
    # row kept is normalised below, which divides out its factor 4 |q_i|
    cands = torch.stack([
        torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], -1),
    ], -2)  # (..., 4, 4)
    best = q_abs.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) (w, x, y, z) -> (..., 3)."""
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s < 1e-8, 2.0 / q[..., :1].clamp_min(1e-8), angle / s.clamp_min(1e-12))
    return v * scale


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3); Gram-Schmidt on the two columns of x viewed as 3x2.

    Interleaved layout of SPIN `utils/geometry.py rot6d_to_rotmat` (x.view(-1, 3, 2), a1 =
    x[:, :, 0], a2 = x[:, :, 1]): the 6 numbers are the row-major 3x2 matrix [R[:, 0], R[:, 1]],
    as in `smpl_mean_params.npz`. (HMR2.0's reads a1 = x[0:3], a2 = x[3:6]; see the module doc.)
    """
    m = x.reshape(*x.shape[:-1], 3, 2)  # (..., 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)  # columns


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6), the inverse of `rot6d_to_matrix` on rotations."""
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


# ---- cameras ---------------------------------------------------------------------------
def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(..., N, 3) camera-frame points, (..., 3, 3) intrinsics -> (..., N, 2) pixels."""
    uvw = points @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3].clamp_min(1e-6)


def crop_intrinsics(crop_hw: tuple[int, int] = CROP_HW, focal: float = FOCAL_CROP) -> np.ndarray:
    """(3, 3) K of the crop camera: focal `focal`, principal point at the crop centre."""
    h, w = crop_hw
    return np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]], np.float64)


def weak_cam_to_transl(cam: torch.Tensor, focal: float = FOCAL_CROP,
                       crop_hw: tuple[int, int] = CROP_HW) -> torch.Tensor:
    """(..., 3) (s, tx, ty) -> (..., 3) translation for the crop camera (HMR2.0).

    tz = 2 f / (H s): then f X / tz = (H / 2) s X, i.e. the weak-perspective model.
    """
    s, tx, ty = cam.unbind(-1)
    tz = 2 * focal / (crop_hw[0] * s.clamp_min(1e-6))
    return torch.stack([tx, ty, tz], -1)


def normalise_crop_pixels(px, crop_hw: tuple[int, int] = CROP_HW):
    """Crop pixels -> normalised crop coordinates n = (px - centre) / (H / 2).

    Tensors: per axis with Python scalars (no tensor from host data: on a GPU that would be
    a host-to-device copy per call)."""
    h, w = crop_hw
    if torch.is_tensor(px):
        x, y = px.unbind(-1)
        return torch.stack([x - (w - 1) / 2, y - (h - 1) / 2], -1) / (h / 2)
    return (px - np.array([(w - 1) / 2, (h - 1) / 2])) / (h / 2)


def cam_crop_to_full(cam: torch.Tensor, box_center: torch.Tensor, box_size: torch.Tensor,
                     K: torch.Tensor) -> torch.Tensor:
    """Crop camera (s, tx, ty) -> (..., 3) translation in the camera of intrinsics K (..., 3, 3)
    of the full image (CLIFF `common/utils.py cam_crop2full`; BEDLAM
    `train/models/head/smpl_cam_head.py convert_pare_to_full_img_cam`).

    box_center (..., 2) px, box_size (..., 2) px (w, h) of the crop's box in that image. CLIFF
    takes the image centre for the principal point and one focal; here the principal point is
    K's and the focal sqrt(fx fy) (ours: fx when fx = fy, unchanged by a view's turn). The box
    height pairs with the crop camera's normalisation by half the crop height. Guards (ours):
    s and the box height floored, so a padded zero row stays finite.
    """
    s, tx, ty = cam.unbind(-1)
    focal = torch.sqrt((K[..., 0, 0] * K[..., 1, 1]).abs())
    d = box_center - K[..., :2, 2]  # (..., 2) box centre relative to the principal point
    bs = box_size[..., 1].clamp_min(1.0) * s.clamp_min(1e-6)
    return torch.stack([tx + 2 * d[..., 0] / bs, ty + 2 * d[..., 1] / bs, 2 * focal / bs], -1)


def cam_full_to_crop(transl: torch.Tensor, box_center: torch.Tensor, box_size: torch.Tensor,
                     K: torch.Tensor) -> torch.Tensor:
    """The inverse of `cam_crop_to_full`: a full-image translation (..., 3) -> the crop camera
    (s, tx, ty) that `cam_crop_to_full` maps back onto it."""
    focal = torch.sqrt((K[..., 0, 0] * K[..., 1, 1]).abs())
    bh = box_size[..., 1]
    s = 2 * focal / (bh * transl[..., 2])
    d = box_center - K[..., :2, 2]
    return torch.stack([s, transl[..., 0] - 2 * d[..., 0] / (bh * s), transl[..., 1] - 2 * d[..., 1] / (bh * s)], -1)


def cliff_intrinsics(image_hw: torch.Tensor) -> torch.Tensor:
    """(..., 2) (height, width) -> (..., 3, 3) the K CLIFF assumes for an image without
    calibration: focal = the image diagonal (CLIFF `common/utils.py estimate_focal_length`,
    BEDLAM `train/dataset/dataset_smpl.py` `estimated_fl`), principal point at the image centre
    (in our pixel-centre convention ((w - 1) / 2, (h - 1) / 2), as `datasets.reader.centred_intrinsics`)."""
    h, w = image_hw.unbind(-1)
    f = torch.sqrt(h * h + w * w)
    zero, one = torch.zeros_like(f), torch.ones_like(f)
    return torch.stack([f, zero, (w - 1) / 2, zero, f, (h - 1) / 2, zero, zero, one], -1).unflatten(-1, (3, 3))


def affine_rotation(A: torch.Tensor) -> torch.Tensor:
    """(..., 2, 3) similarity (a crop affine) -> (..., 3, 3) Q = diag(L / sqrt|det L|, 1), L its
    linear part: the change of camera axes of a turned or mirrored view (`pipelines.augment`
    `apply_view`); the identity for a plain crop. A zero affine (a padded row) gives zeros."""
    L = A[..., :2, :2]
    det = L[..., 0, 0] * L[..., 1, 1] - L[..., 0, 1] * L[..., 1, 0]
    q = L / det.abs().sqrt().clamp_min(1e-12)[..., None, None]  # (..., 2, 2)
    zero, one = torch.zeros_like(det), torch.ones_like(det)
    return torch.stack([q[..., 0, 0], q[..., 0, 1], zero, q[..., 1, 0], q[..., 1, 1], zero, zero, zero, one],
                       -1).unflatten(-1, (3, 3))


def uncrop_matrix(box_center: torch.Tensor, box_size: torch.Tensor, crop_hw: tuple[int, int] = CROP_HW) -> torch.Tensor:
    """(..., 3, 3) crop pixels -> full-image pixels for the box (centre (..., 2), size (..., 2)):
    x = c + k (u - u_0), k = box height / crop height, u_0 the crop centre; the inverse of
    `crop_affine` without turn or mirror (for a view: into its full image, module doc)."""
    h, w = crop_hw
    k = box_size[..., 1].clamp_min(1.0) / h
    zero, one = torch.zeros_like(k), torch.ones_like(k)
    cx, cy = box_center.unbind(-1)
    return torch.stack([k, zero, cx - k * (w - 1) / 2, zero, k, cy - k * (h - 1) / 2, zero, zero, one],
                       -1).unflatten(-1, (3, 3))


def uncrop_points(px: torch.Tensor, box_center: torch.Tensor, box_size: torch.Tensor,
                  crop_hw: tuple[int, int] = CROP_HW) -> torch.Tensor:
    """(..., N, 2) crop pixels -> full-image pixels (`uncrop_matrix`); box (..., 2) each."""
    M = uncrop_matrix(box_center, box_size, crop_hw)  # (..., 3, 3)
    return px @ M[..., :2, :2].transpose(-1, -2) + M[..., None, :2, 2]


def full_image_intrinsics(intrinsics: torch.Tensor, has_intrinsics: torch.Tensor, crop_affine: torch.Tensor,
                          box_center: torch.Tensor, box_size: torch.Tensor, image_hw: torch.Tensor,
                          crop_hw: tuple[int, int] = CROP_HW) -> torch.Tensor:
    """(..., 3, 3) intrinsics of a crop's (view's) full image (module doc): `uncrop_matrix` @ the
    crop intrinsics. Where `has_intrinsics` (...,) is False, the crop intrinsics are CLIFF's K
    of the original image (`cliff_intrinsics`) taken through the crop and view as
    pipelines.crop / pipelines.augment take a dataset's K: [A; 0 0 1] K Q^T.

    intrinsics (..., 3, 3) crop pixels; crop_affine (..., 2, 3) original -> crop pixels;
    box (..., 2) each, original pixels; image_hw (..., 2) of the original image.
    """
    last = F.pad(torch.zeros_like(crop_affine[..., :1, :2]), (0, 1), value=1.0)  # (..., 1, 3) [0 0 1]
    A3 = torch.cat([crop_affine, last], -2)  # (..., 3, 3)
    cliff = A3 @ cliff_intrinsics(image_hw) @ affine_rotation(crop_affine).transpose(-1, -2)
    K = torch.where(has_intrinsics[..., None, None], intrinsics, cliff)
    return uncrop_matrix(box_center, box_size, crop_hw) @ K


# ---- boxes and the crop affine (numpy, data path) ----------------------------------------
def expand_to_aspect(box_size: np.ndarray, aspect: float = CROP_ASPECT) -> np.ndarray:
    """Grow (w, h) to width/height == aspect, keeping the larger extent (HMR2.0 `expand_to_aspect_ratio`)."""
    w, h = float(box_size[0]), float(box_size[1])
    if w / h > aspect:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([w, h], np.float64)


def box_from_keypoints(keypoints: np.ndarray, expand: float = SPIN_BOX_EXPAND,
                       min_conf: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Square person box from visible 2D keypoints (SPIN's rule: side = expand x the larger
    side of the tight box; SPIN `datasets/preprocess/pw3d.py`).

    keypoints (N, 3) px + confidence. Returns (center (2,), size (2,) = (side, side)),
    or None when no keypoint has confidence > min_conf.
    """
    box = tight_box(keypoints, min_conf)
    if box is None:
        return None
    return square_box(box[:2], box[2:], expand)


def square_box(lo: np.ndarray, hi: np.ndarray, expand: float = SPIN_BOX_EXPAND) -> tuple[np.ndarray, np.ndarray]:
    """SPIN's person box around the tight box [lo, hi] (x, y corners, px): (center (2,),
    size (2,) = (side, side)), side = expand x the larger side (SPIN `datasets/preprocess/pw3d.py`)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    side = expand * float((hi - lo).max())
    return (lo + hi) / 2, np.array([side, side], np.float64)


def tight_box(keypoints: np.ndarray, min_conf: float = 0.0) -> np.ndarray | None:
    """(4,) x0, y0, x1, y1 of the keypoints with confidence > min_conf ((N, 3) px +
    confidence), or None when there is none: the tight box `box_from_keypoints` grows."""
    vis = keypoints[:, 2] > min_conf
    if not vis.any():
        return None
    pts = np.asarray(keypoints[vis, :2], np.float64)
    return np.concatenate([pts.min(0), pts.max(0)])


def crop_affine(box_center: np.ndarray, box_size: np.ndarray, crop_hw: tuple[int, int] = CROP_HW,
                rotation: float = 0.0, flip: bool = False) -> np.ndarray:
    """(2, 3) affine from original pixels to crop pixels.

    The box (centre, (w, h)) maps onto the whole crop; `rotation` (radians,
    counter-clockwise in the image) turns the content about the box centre; `flip`
    mirrors it horizontally. Use with `cv2.warpAffine(img, A, (W, H))`.
    """
    h, w = crop_hw
    scale = w / float(box_size[0])
    c, s = np.cos(rotation), np.sin(rotation)
    # image y points down, so a counter-clockwise turn on screen is [[c, s], [-s, c]]
    R = np.array([[c, s], [-s, c]]) * scale
    if flip:
        R = np.array([[-1.0, 0], [0, 1]]) @ R
    dst_c = np.array([(w - 1) / 2, (h - 1) / 2])
    t = dst_c - R @ np.asarray(box_center, np.float64)
    return np.concatenate([R, t[:, None]], 1)


def apply_affine(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(..., 2) points -> (..., 2) under the (2, 3) affine A."""
    return points @ A[:, :2].T + A[:, 2]


def invert_affine(A: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    Ri = np.linalg.inv(A[:, :2])
    return np.concatenate([Ri, (-Ri @ A[:, 2])[:, None]], 1)


def affine_intrinsics(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Intrinsics of the warped image: [A; 0 0 1] @ K (projection then warp).

    Exact for any affine: the warped pixel of a camera point X is A (K X / z). With a
    rotation or flip the result is no longer upper-triangular; it is still the 3x3 map
    from camera rays to warped pixels that `project` takes.
    """
    A3 = np.vstack([A, [0.0, 0.0, 1.0]])
    return A3 @ K


def transform_keypoints(keypoints: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(N, 3) px + confidence -> the same in the warped image (confidence kept)."""
    out = keypoints.copy()
    out[:, :2] = apply_affine(keypoints[:, :2], A)
    return out
