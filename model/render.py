"""A small z-buffered triangle rasteriser in numpy: shaded meshes over images.

No GPU and no renderer dependency: each triangle's pixel bounding box is expanded into
candidate pixels with numpy, tested against the triangle's edge functions, and the
nearest candidate per pixel wins (largest 1/z; 1/z is affine in screen space, so the
depth test and the barycentrics are perspective-correct). Shading is Lambert + ambient
per vertex, interpolated across each face (Gouraud).

Conventions: camera frame OpenCV (x right, y down, z forward), metres; K (3, 3) pinhole
intrinsics with pixel (0, 0) at the centre of the top-left pixel (as datasets.record);
images are RGB uint8 (H, W, 3); colours are RGB floats in [0, 1].

    image, mask = render_mesh(image, vertices_cam, faces, K, color=LIGHT_BLUE)
    picture = render_views(vertices, faces, size=512)   # front | left side, SMPL frame
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIGHT_BLUE = (0.65, 0.74, 0.86)
# Direction towards the light in the camera frame: from the camera, a little above and left.
LIGHT_DIR = np.array([-0.3, -0.5, -1.0]) / np.linalg.norm([-0.3, -0.5, -1.0])
AMBIENT, DIFFUSE = 0.35, 0.65


@dataclass
class Raster:
    """Per-pixel result of `rasterize`.

    depth: (H, W) float32, camera z of the visible surface, inf where empty.
    face: (H, W) int64, index of the visible face, -1 where empty.
    bary: (H, W, 3) float32, perspective-correct barycentrics of the pixel in that face.
    """

    depth: np.ndarray
    face: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def rasterize(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, hw: tuple[int, int],
              cull_backfaces: bool = True, near: float = 1e-3) -> Raster:
    """Visible face and barycentrics per pixel of a (V, 3) camera-frame mesh.

    Faces with a vertex closer than `near` are dropped (no clipping). With
    `cull_backfaces`, faces whose outward normal points away from the camera are dropped
    (right for closed, outward-oriented meshes such as SMPL's).
    """
    H, W = int(hw[0]), int(hw[1])
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    K = np.asarray(K, dtype=np.float64)
    z = v[:, 2]
    keep = (z[f] > near).all(1)
    if cull_backfaces:
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        keep &= np.einsum("ij,ij->i", n, v[f[:, 0]]) < 0
    fids = np.flatnonzero(keep)
    zs = np.where(z > near, z, 1.0)
    px = (v @ K.T)[:, :2] / zs[:, None]  # (V, 2) pixels
    P = px[f[fids]]  # (F', 3, 2)
    X, Y = P[..., 0], P[..., 1]
    # Edge functions: w_k(x, y) = a_k x + b_k y + c_k, the signed area opposite vertex k,
    # normalised by the triangle's (so the three sum to 1): screen-space barycentrics.
    i1, i2 = [1, 2, 0], [2, 0, 1]
    coef = np.stack([Y[:, i1] - Y[:, i2], X[:, i2] - X[:, i1], X[:, i1] * Y[:, i2] - X[:, i2] * Y[:, i1]], -1)
    area = coef[:, :, 2].sum(1)  # (F',) twice the signed screen area
    x0 = np.clip(np.ceil(X.min(1)), 0, W).astype(np.int64)
    x1 = np.clip(np.floor(X.max(1)), -1, W - 1).astype(np.int64)
    y0 = np.clip(np.ceil(Y.min(1)), 0, H).astype(np.int64)
    y1 = np.clip(np.floor(Y.max(1)), -1, H - 1).astype(np.int64)
    nx, ny = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    ok = (nx * ny > 0) & (np.abs(area) > 1e-12)
    fids, coef, area, x0, y0, nx, ny = (t[ok] for t in (fids, coef, area, x0, y0, nx, ny))
    # Candidates: every pixel of every face's bounding box, relative to the box corner
    # (small numbers, so float32 keeps the edge functions exact enough). Per-edge 1-D
    # arrays throughout: numpy is much faster on them than on (N, 3) rows.
    coef = coef / area[:, None, None]
    coef[:, :, 2] += coef[:, :, 0] * x0[:, None] + coef[:, :, 1] * y0[:, None]
    coef = coef.astype(np.float32)  # (F', 3 edges, (a, b, c))
    invz = (1.0 / z[f[fids]]).astype(np.float32)  # (F', 3)
    counts = nx * ny
    t = np.repeat(np.arange(len(fids)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    dy, dx = np.divmod(local, nx[t])
    dxf, dyf = dx.astype(np.float32), dy.astype(np.float32)
    w = [coef[t, k, 0] * dxf + coef[t, k, 1] * dyf + coef[t, k, 2] for k in range(3)]
    keep = np.flatnonzero((w[0] >= -1e-6) & (w[1] >= -1e-6) & (w[2] >= -1e-6))
    t = t[keep]
    w = [wk[keep] * invz[t, k] for k, wk in enumerate(w)]  # w_k / z_k
    pix = (y0[t] + dy[keep]) * W + x0[t] + dx[keep]
    iz = w[0] + w[1] + w[2]  # 1/z at the pixel (affine in screen space)
    best = np.zeros(H * W, dtype=np.float32)
    np.maximum.at(best, pix, iz)
    win = np.flatnonzero(iz >= best[pix])
    face = np.full(H * W, -1, dtype=np.int64)
    bary = np.zeros((H * W, 3), dtype=np.float32)
    face[pix[win]] = fids[t[win]]
    bary[pix[win]] = np.stack([wk[win] for wk in w], 1) / iz[win, None]  # perspective-correct
    depth = np.full(H * W, np.inf, dtype=np.float32)
    hit = best > 0
    depth[hit] = 1.0 / best[hit]
    return Raster(depth.reshape(H, W), face.reshape(H, W), bary.reshape(H, W, 3))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: area-weighted sums of the adjacent faces' normals."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # (F, 3), |fn| = 2 area
    vn = np.stack([np.bincount(f.reshape(-1), np.repeat(fn[:, k], 3), minlength=len(v)) for k in range(3)], 1)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def render_mesh(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
                color: tuple[float, float, float] = LIGHT_BLUE, alpha: float = 1.0,
                cull_backfaces: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw a shaded mesh (camera-frame vertices, intrinsics K) over an RGB uint8 image.

    Returns (new image, mask (H, W) bool of the mesh's pixels); `image` is not modified.
    alpha blends the mesh over the image (1 = opaque).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"render_mesh: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    r = rasterize(vertices, faces, K, image.shape[:2], cull_backfaces=cull_backfaces)
    out = image.copy()
    idx = np.flatnonzero(r.face.reshape(-1) >= 0)  # the mesh's pixels
    if idx.size:
        corners = np.asarray(faces, dtype=np.int64)[r.face.reshape(-1)[idx]]  # (M, 3)
        lit = AMBIENT + DIFFUSE * np.clip(vertex_normals(vertices, faces) @ LIGHT_DIR, 0, 1)  # (V,)
        bary = r.bary.reshape(-1, 3)[idx]  # (M, 3)
        shade = sum(bary[:, k] * lit[corners[:, k]] for k in range(3))  # (M,) Gouraud
        rgb = 255.0 * np.clip(np.asarray(color, dtype=np.float64)[None] * shade[:, None], 0, 1)
        flat = out.reshape(-1, 3)
        flat[idx] = np.round((1 - alpha) * flat[idx] + alpha * rgb).astype(np.uint8)
    return out, r.mask


def _view_rotation(yaw: float) -> np.ndarray:
    """Body frame (y up, facing +z) -> camera frame looking at the body, after turning
    the body by `yaw` about its vertical axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.diag([1.0, -1.0, -1.0]) @ turn  # camera on the +z side, looking back at the body


def render_views(vertices: np.ndarray, faces: np.ndarray, size: int = 512,
                 color: tuple[float, float, float] = LIGHT_BLUE, background: int = 255) -> np.ndarray:
    """(size, 2 * size, 3) uint8: the mesh from the front and from its left side.

    vertices: (V, 3) in the body frame (SMPL: y up, the body facing +z), metres. Both
    views share one scale, set so that the mesh fills about 90% of a view.
    """
    v = np.asarray(vertices, dtype=np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    extent = float((v.max(0) - v.min(0)).max())
    focal = 2.5 * size
    dist = focal * extent / (0.9 * size) + extent
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])
    views = []
    for yaw in (0.0, -np.pi / 2):  # front; the body turned so its left side faces us
        cam = (v - centre) @ _view_rotation(yaw).T + (0, 0, dist)
        canvas = np.full((size, size, 3), background, dtype=np.uint8)
        views.append(render_mesh(canvas, cam, faces, K, color=color)[0])
    return np.concatenate(views, axis=1)
