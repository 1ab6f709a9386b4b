"""Synthetic stand-ins for the SMPL-family assets: a mannequin in SMPL's file layouts.

`write_synthetic_assets(assets_root, seed=0)` writes, at exactly the paths that
`datasets/assets.yaml` names under `assets_root`:
- `body_models/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`: pickles (protocol 2, like the real
  Python-2 files) of a dict of plain numpy arrays under SMPL's key names (`v_template`,
  `f`, `J_regressor`, `kintree_table`, `weights`, `posedirs`, `shapedirs`, `J`,
  `vert_sym_idxs`, `bs_type`, `bs_style`) plus `synthetic: True`;
- `J_regressor_h36m.npy` (17, 6890) and its sidecar `J_regressor_h36m.npy.synthetic`;
- `smpl_mean_params.npz`: `pose` (144,) in SPIN's interleaved 6D layout, `shape` (10,),
  `cam` (3,), `synthetic`;
- `body_models/smplx/SMPLX_{MALE,FEMALE}.npz`: SMPL-X's npz layout (10475 vertices,
  55 joints, the keys `smplx.SMPLX` reads) plus `synthetic`;
- `body_models/smplx2smpl.pkl`: `{'matrix': (6890, 10475) sparse, 'synthetic': True}`.

The body. A mannequin of 15 closed parts (torso, neck, head; per side upper arm,
forearm, hand, thigh, shin, foot), each a UV sphere wrapped around an axis and shaped by
an axial profile of superelliptic cross-sections; parts overlap at the joints. Rest pose
and frame as SMPL's template: T-pose, y up, x towards the body's left, z forward, root
near the origin, soles at y = -1.20 m, top of the head at y = +0.50 m. Everything is
generated for the neutral body; the male and female templates are the neutral one moved
along its own shape directions (taller / broader shoulders; shorter / wider hips / bust)
and share its joint regressor, skinning weights and blend shapes.

Exact counts. A UV sphere of R rings of S vertices has V = R*S + 2 vertices and
F = 2*R*S = 2V - 4 triangles. The part sizes (`_PARTS`) sum to 6890 vertices, SMPL's
count. Each of the 14 non-root parts is joined to its parent part by a bridge: one
triangle is removed from each, where it lies inside the other part, and the two holes are
joined by a tube of 6 triangles (+4 faces per bridge). The result is one closed,
consistently oriented surface of genus 0 (self-intersecting where parts overlap, inside
the body): F = sum(2 V_i - 4) + 4 * 14 = 2 * 6890 - 4 = 13776, SMPL's face count.

Vertex ids. The vertices that `smplx` reads keypoints from (`vertex_ids['smplh']`: nose,
eyes, ears, toes, heels, fingertips) are renumbered to sit where those landmarks are.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import PchipInterpolator
from scipy.optimize import nnls
from scipy.spatial import cKDTree
from smplx.vertex_ids import vertex_ids as _SMPLX_VERTEX_IDS

from datasets.assets import SYNTHETIC_SIDECAR, Assets
from datasets.joints import H36M_17, SMPL_24
from model.body_model import SMPL, SMPLX, SMPLX_JOINT_NAMES, SMPLX_PARENTS

MIRROR = np.array([-1.0, 1.0, 1.0])  # x -> -x: the body's left <-> right

# Rest joints of the neutral stand-in (metres, SMPL frame), close to SMPL's neutral
# template joints; central joints on x = 0, right side = mirror of the left (ours).
_REST = {
    "pelvis": (0.0, -0.225, 0.02),
    "left_hip": (0.07, -0.315, 0.015),
    "spine1": (0.0, -0.11, 0.0),
    "left_knee": (0.10, -0.69, 0.02),
    "spine2": (0.0, 0.02, 0.01),
    "left_ankle": (0.09, -1.09, -0.02),
    "spine3": (0.0, 0.075, 0.025),
    "left_foot": (0.115, -1.16, 0.10),
    "neck": (0.0, 0.27, -0.01),
    "left_collar": (0.075, 0.205, -0.01),
    "head": (0.0, 0.36, 0.02),
    "left_shoulder": (0.19, 0.235, -0.015),
    "left_elbow": (0.45, 0.22, -0.03),
    "left_wrist": (0.715, 0.225, -0.035),
    "left_hand": (0.80, 0.215, -0.045),
}


def _side(name: str, side: str) -> str:
    return name.replace("left_", side + "_") if side == "right" else name


def _all_sides(table: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Complete a left/central table with the mirrored right entries."""
    out = {k: np.asarray(v, dtype=np.float64) for k, v in table.items()}
    for k, v in table.items():
        if k.startswith("left_"):
            out["right_" + k[5:]] = np.asarray(v, dtype=np.float64) * MIRROR
    return out


REST_JOINTS = _all_sides(_REST)

# H36M-17 joints on the mannequin (rows of the H36M regressor), by H36M_17 name. Limb
# joints coincide with SMPL's; the H36M-only points as in SPIN's regressor (ours).
_H36M_TARGETS = _all_sides({
    "pelvis_mpii": (0.0, -0.315, 0.015),
    "left_hip": _REST["left_hip"],
    "left_knee": _REST["left_knee"],
    "left_ankle": _REST["left_ankle"],
    "spine_h36m": (0.0, 0.0, 0.02),
    "neck_lsp": (0.0, 0.25, 0.0),
    "jaw": (0.0, 0.41, 0.05),  # row 9, the mocap head (SPIN's 'Jaw (H36M)')
    "head_h36m": (0.0, 0.49, 0.015),  # row 10, the head top (SPIN's 'Head (H36M)')
    "left_shoulder": _REST["left_shoulder"],
    "left_elbow": _REST["left_elbow"],
    "left_wrist": _REST["left_wrist"],
})


def _smplx_extra_joints() -> dict[str, np.ndarray]:
    """SMPL-X joints beyond SMPL's first 22: jaw, eyeballs, 3 joints per finger (ours)."""
    table = {"jaw": (0.0, 0.34, 0.045), "left_eye_smplhf": (0.032, 0.425, 0.09)}
    finger_z = {"index": 0.018, "middle": -0.002, "ring": -0.022, "pinky": -0.04}  # across the palm
    for finger, dz in finger_z.items():
        for k, x in enumerate((0.815, 0.85, 0.88), start=1):
            table[f"left_{finger}{k}"] = (x - (0.01 if finger == "pinky" else 0.0), 0.215, -0.045 + dz)
    for k, p in enumerate(((0.745, 0.219, -0.012), (0.775, 0.216, -0.008), (0.80, 0.214, -0.006)), start=1):
        table[f"left_thumb{k}"] = p
    return _all_sides(table)


SMPLX_EXTRA_JOINTS = _smplx_extra_joints()

# Where the smplx `vertex_ids['smplh']` landmarks are on the mannequin: (part, point);
# the vertex of that part nearest to the point gets the landmark's id (ours).
_LANDMARKS = {
    "nose": ("head", (0.0, 0.395, 0.17)),
    "leye": ("head", (0.032, 0.425, 0.15)),
    "lear": ("head", (0.11, 0.405, 0.015)),
    "lthumb": ("left_hand", (0.83, 0.205, 0.03)),
    "lindex": ("left_hand", (0.92, 0.215, -0.02)),
    "lmiddle": ("left_hand", (0.93, 0.215, -0.04)),
    "lring": ("left_hand", (0.92, 0.215, -0.06)),
    "lpinky": ("left_hand", (0.90, 0.215, -0.085)),
    "LBigToe": ("left_foot", (0.09, -1.175, 0.22)),
    "LSmallToe": ("left_foot", (0.15, -1.18, 0.18)),
    "LHeel": ("left_foot", (0.09, -1.20, -0.10)),
}
_LANDMARK_MIRROR = {"leye": "reye", "lear": "rear", "lthumb": "rthumb", "lindex": "rindex",
                    "lmiddle": "rmiddle", "lring": "rring", "lpinky": "rpinky",
                    "LBigToe": "RBigToe", "LSmallToe": "RSmallToe", "LHeel": "RHeel"}


@dataclass(frozen=True)
class PartSpec:
    """One closed part of the mannequin.

    axis: two points (or joint names) a -> b; s is the coordinate along it from a (m).
    e1: direction hint of the cross-section's first axis; e2 = e1 x u.
    profile: rows (s, half-extent along e1, along e2, centre offset along e1, along e2),
      interpolated monotonically; the part spans the first to the last s.
    caps: lengths of the rounded ends at the first / last s.
    chain: skinning labels along the axis; each after the first starts at the projection
      of its own joint onto the axis, with a smooth blend of half-width `blend`.
    """

    name: str
    parent: str | None
    axis: tuple
    e1: tuple
    profile: tuple
    rings: int
    segments: int
    caps: tuple[float, float]
    chain: tuple[str, ...]
    blend: float = 0.035
    exponent: float = 2.0


_PARTS = (
    PartSpec("torso", None, ((0, 0, 0), (0, 1, 0)), (1, 0, 0), (
        (-0.40, 0.10, 0.075, 0, 0.005), (-0.33, 0.150, 0.105, 0, 0.005), (-0.25, 0.168, 0.115, 0, 0.0),
        (-0.15, 0.155, 0.105, 0, 0.012), (-0.05, 0.140, 0.098, 0, 0.018), (0.05, 0.150, 0.103, 0, 0.02),
        (0.13, 0.168, 0.108, 0, 0.018), (0.20, 0.178, 0.098, 0, 0.005), (0.26, 0.16, 0.075, 0, -0.01),
        (0.30, 0.12, 0.06, 0, -0.015)),
        41, 60, (0.06, 0.07), ("pelvis", "spine1", "spine2", "spine3"), blend=0.05, exponent=2.4),
    PartSpec("neck", "torso", ((0, 0.17, -0.025), (0, 0.40, 0.015)), (1, 0, 0), (
        (0.0, 0.056, 0.058, 0, 0), (0.23, 0.05, 0.054, 0, 0)),
        8, 24, (0.03, 0.03), ("spine3", "neck", "head")),
    PartSpec("head", "neck", ((0, 0, 0), (0, 1, 0)), (1, 0, 0), (
        (0.295, 0.045, 0.06, 0, 0.045), (0.33, 0.058, 0.082, 0, 0.038), (0.37, 0.068, 0.094, 0, 0.028),
        (0.42, 0.076, 0.100, 0, 0.018), (0.47, 0.074, 0.096, 0, 0.008), (0.505, 0.06, 0.08, 0, 0.0)),
        28, 32, (0.05, 0.055), ("neck", "head")),
    PartSpec("left_upper_arm", "torso", ("left_shoulder", "left_elbow"), (0, 1, 0), (
        (-0.06, 0.060, 0.062, 0, 0), (0.0, 0.058, 0.058, 0, 0), (0.12, 0.047, 0.047, 0, 0),
        (0.26, 0.040, 0.040, 0, 0), (0.29, 0.038, 0.038, 0, 0)),
        18, 16, (0.04, 0.03), ("left_collar", "left_shoulder", "left_elbow")),
    PartSpec("left_forearm", "left_upper_arm", ("left_elbow", "left_wrist"), (0, 1, 0), (
        (-0.035, 0.040, 0.040, 0, 0), (0.06, 0.042, 0.044, 0, 0), (0.20, 0.031, 0.036, 0, 0),
        (0.265, 0.024, 0.032, 0, 0), (0.28, 0.024, 0.032, 0, 0)),
        16, 16, (0.03, 0.02), ("left_shoulder", "left_elbow", "left_wrist")),
    PartSpec("left_hand", "left_forearm", ("left_wrist", "left_hand"), (0, 1, 0), (
        (-0.02, 0.022, 0.032, 0, 0), (0.04, 0.020, 0.044, 0, 0), (0.10, 0.017, 0.046, 0, 0),
        (0.20, 0.011, 0.038, 0, 0)),
        12, 12, (0.02, 0.03), ("left_elbow", "left_wrist", "left_hand"), blend=0.02, exponent=2.6),
    PartSpec("left_thigh", "torso", ("left_hip", "left_knee"), (1, 0, 0), (
        (-0.09, 0.085, 0.092, 0, 0), (0.0, 0.088, 0.094, 0, 0), (0.12, 0.075, 0.080, 0, 0),
        (0.30, 0.056, 0.060, 0, 0), (0.41, 0.050, 0.054, 0, 0)),
        22, 20, (0.06, 0.04), ("pelvis", "left_hip", "left_knee"), blend=0.045),
    PartSpec("left_shin", "left_thigh", ("left_knee", "left_ankle"), (1, 0, 0), (
        (-0.04, 0.050, 0.052, 0, 0), (0.05, 0.050, 0.056, 0, 0.008), (0.13, 0.051, 0.058, 0, 0.012),
        (0.30, 0.036, 0.040, 0, 0.005), (0.40, 0.033, 0.037, 0, 0), (0.43, 0.033, 0.037, 0, 0)),
        20, 18, (0.035, 0.03), ("left_hip", "left_knee", "left_ankle")),
    PartSpec("left_foot", "left_shin", ((0.085, -1.15, -0.11), (0.12, -1.165, 0.2)), (0, 1, 0), (
        (0.0, 0.040, 0.034, 0.0, 0), (0.08, 0.046, 0.036, 0.01, 0), (0.17, 0.036, 0.046, 0.003, 0),
        (0.24, 0.025, 0.044, -0.005, 0), (0.315, 0.02, 0.036, -0.008, 0)),
        14, 12, (0.035, 0.035), ("left_ankle", "left_foot"), blend=0.03, exponent=2.5),
)

# Torso vertices that follow a limb-side joint in part (ours): (joint, x0, x1, y0, y1,
# fraction): the fraction ramps up with |x| from x0 to x1 and with y from y0 to y1.
_TORSO_LATERAL = (
    ("left_collar", 0.06, 0.14, 0.14, 0.22, 0.7),
    ("left_hip", 0.03, 0.10, -0.24, -0.33, 0.5),
)

# Gender templates as offsets along the neutral shape directions (SHAPE_DIRECTIONS order).
_GENDER_BETAS = {
    "neutral": np.zeros(10),
    "male": np.array([0.6, 0.3, 1.0, 0.2, 0.3, 0.1, -0.6, 0.0, -0.2, 0.4]),
    "female": np.array([-0.8, -0.3, -1.0, -0.2, -0.3, -0.2, 1.3, 0.2, 1.0, -0.5]),
}
SHAPE_DIRECTIONS = ("height", "girth", "shoulder width", "leg length", "arm length", "head size",
                    "hip width", "belly", "chest", "limb thickness")



@dataclass
class _Part:
    """A meshed part: its frame, profile and per-vertex axis data (neutral rest pose)."""

    spec: PartSpec
    a: np.ndarray
    u: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    profile: PchipInterpolator  # s -> (A, B, C1, C2)
    verts: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3) local indices, outward orientation
    s: np.ndarray  # (n,) axial coordinate of each vertex
    centre: np.ndarray  # (n, 3) cross-section centre of each vertex

    def inside(self, p: np.ndarray) -> np.ndarray:
        """rho of points: the superelliptic norm in the local section, < 1 inside."""
        s = (p - self.a) @ self.u
        s0, s1 = self.profile.x[0], self.profile.x[-1]
        sc = np.clip(s, s0, s1)
        A, B, C1, C2 = self.profile(sc).T
        cap = _cap(sc, s0, s1, self.spec.caps)
        q = p - self.a - np.outer(s, self.u)
        x1 = (q @ self.e1 - C1) / np.maximum(A * cap, 1e-9)
        x2 = (q @ self.e2 - C2) / np.maximum(B * cap, 1e-9)
        n = self.spec.exponent
        rho = (np.abs(x1) ** n + np.abs(x2) ** n) ** (1 / n)
        return np.where((s > s0) & (s < s1), rho, np.inf)


def _cap(s, s0, s1, caps) -> np.ndarray:
    """Rounding factor of the two ends: 0 at the tips, 1 beyond the cap lengths."""
    t0 = np.clip((s - s0) / caps[0], 0, 1)
    t1 = np.clip((s1 - s) / caps[1], 0, 1)
    return np.sqrt(t0 * (2 - t0)) * np.sqrt(t1 * (2 - t1))


def _smoothstep(x, x0, x1) -> np.ndarray:
    """0 at x0, 1 at x1 (either order), C1-smooth in between."""
    h = np.clip((np.asarray(x, dtype=np.float64) - x0) / (x1 - x0), 0, 1)
    return h * h * (3 - 2 * h)


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    t = verts[faces]
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6)


def _mesh_part(spec: PartSpec, joints: dict[str, np.ndarray]) -> _Part:
    """UV sphere around the part's axis, rings evenly spaced along the meridian."""
    a, b = (joints[p] if isinstance(p, str) else np.asarray(p, dtype=np.float64) for p in spec.axis)
    u = (b - a) / np.linalg.norm(b - a)
    e1 = np.asarray(spec.e1, dtype=np.float64)
    e1 = (e1 - (e1 @ u) * u) / np.linalg.norm(e1 - (e1 @ u) * u)
    e2 = np.cross(e1, u)
    rows = np.asarray(spec.profile, dtype=np.float64)
    profile = PchipInterpolator(rows[:, 0], rows[:, 1:], axis=0)
    s0, s1 = rows[0, 0], rows[-1, 0]
    dense = np.linspace(s0, s1, 4001)
    radius = profile(dense)[:, :2].mean(1) * _cap(dense, s0, s1, spec.caps)
    arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(dense), np.diff(radius)))])
    R, S = spec.rings, spec.segments
    s_ring = np.interp(np.linspace(0, arc[-1], R + 2)[1:-1], arc, dense)  # (R,)
    phi = 2 * np.pi * np.arange(S) / S  # S even: the ring is symmetric under x -> -x
    c1 = np.sign(np.cos(phi)) * np.abs(np.cos(phi)) ** (2 / spec.exponent)
    c2 = np.sign(np.sin(phi)) * np.abs(np.sin(phi)) ** (2 / spec.exponent)
    s_all = np.concatenate([[s0], s_ring, [s1]])  # pole, rings, pole
    A, B, C1, C2 = profile(s_all).T
    cap = _cap(s_all, s0, s1, spec.caps)
    centre = a + np.outer(s_all, u) + np.outer(C1, e1) + np.outer(C2, e2)  # (R+2, 3)
    ring = (centre[1:-1, None] + (A * cap)[1:-1, None, None] * c1[:, None] * e1
            + (B * cap)[1:-1, None, None] * c2[:, None] * e2)  # (R, S, 3)
    verts = np.concatenate([centre[:1], ring.reshape(-1, 3), centre[-1:]])
    s_v = np.concatenate([[s0], np.repeat(s_ring, S), [s1]])
    centre_v = np.concatenate([centre[:1], np.repeat(centre[1:-1], S, axis=0), centre[-1:]])
    # Faces: a fan at each pole and R-1 bands of two triangles per quad: 2*R*S in all.
    idx = 1 + np.arange(R * S).reshape(R, S)
    nxt = np.roll(idx, -1, axis=1)
    bottom = np.stack([np.zeros(S, dtype=np.int64), nxt[0], idx[0]], 1)
    band = np.concatenate([np.stack([idx[:-1], nxt[:-1], nxt[1:]], -1).reshape(-1, 3),
                           np.stack([idx[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3)])
    top = np.stack([np.full(S, R * S + 1), idx[-1], nxt[-1]], 1)
    faces = np.concatenate([bottom, band, top]).astype(np.int64)
    if _signed_volume(verts, faces) < 0:  # outward orientation
        faces = faces[:, ::-1].copy()
    return _Part(spec, a, u, e1, e2, profile, verts, faces, s_v, centre_v)


def _right_twin(part: _Part) -> _Part:
    """The right-side twin of a left part: positions mirrored in x, winding reversed."""
    sp_ = part.spec
    rn = lambda n: n.replace("left_", "right_") if isinstance(n, str) else n  # noqa: E731
    spec = PartSpec(rn(sp_.name), rn(sp_.parent), tuple(rn(p) for p in sp_.axis), sp_.e1, sp_.profile,
                    sp_.rings, sp_.segments, sp_.caps, tuple(rn(c) for c in sp_.chain), sp_.blend, sp_.exponent)
    return _Part(spec, part.a * MIRROR, part.u * MIRROR, part.e1 * MIRROR, part.e2 * MIRROR, part.profile,
                 part.verts * MIRROR, part.faces[:, ::-1].copy(), part.s.copy(), part.centre * MIRROR)


def _bridge(parent: _Part, child: _Part, faces: dict[str, np.ndarray], verts: np.ndarray) -> np.ndarray:
    """Remove one triangle of `child` lying inside `parent` and the nearest triangle of
    `parent` lying inside `child`; return the 6 triangles of the tube joining the holes."""
    fc, fp = faces[child.spec.name], faces[parent.spec.name]
    rho_c = parent.inside(verts[fc].mean(1))
    i_c = int(np.argmin(rho_c))
    rho_p = child.inside(verts[fp].mean(1))
    inside = np.flatnonzero(rho_p < 0.85)
    if rho_c[i_c] >= 0.85 or inside.size == 0:
        raise AssertionError(f"synthetic body: parts {parent.spec.name} and {child.spec.name} do not overlap")
    i_p = int(inside[np.argmin(np.linalg.norm(verts[fp[inside]].mean(1) - verts[fc[i_c]].mean(0), axis=1))])
    p = fp[i_p]
    d, e, f = fc[i_c]
    # The child's loop runs against the parent's (d, f, e); choose the rotation with the
    # shortest rungs. Edges p_k -> p_k+1 and q_k+1 -> q_k replace the removed faces' edges.
    q = min(((d, f, e), (f, e, d), (e, d, f)),
            key=lambda lp: sum(np.linalg.norm(verts[p[k]] - verts[lp[k]]) for k in range(3)))
    tube = []
    for k in range(3):
        k1 = (k + 1) % 3
        tube += [(p[k], p[k1], q[k1]), (p[k], q[k1], q[k])]
    faces[child.spec.name] = np.delete(fc, i_c, axis=0)
    faces[parent.spec.name] = np.delete(fp, i_p, axis=0)
    return np.asarray(tube, dtype=np.int64)


@dataclass
class _Body:
    """The neutral mannequin in rest pose, with per-vertex bookkeeping."""

    verts: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    part: np.ndarray  # (V,) index into `parts`
    parts: list[_Part]
    centre: np.ndarray  # (V, 3) cross-section centre (for radial directions)
    sym: np.ndarray  # (V,) index of the mirror-image vertex


def _assemble(joints: dict[str, np.ndarray]) -> _Body:
    parts: dict[str, _Part] = {}
    for spec in _PARTS:
        parts[spec.name] = _mesh_part(spec, joints)
        if spec.name.startswith("left_"):
            twin = _right_twin(parts[spec.name])
            parts[twin.spec.name] = twin
    offsets = np.cumsum([0] + [len(p.verts) for p in parts.values()])
    verts = np.concatenate([p.verts for p in parts.values()])
    if len(verts) != SMPL.num_vertices:
        raise AssertionError(f"synthetic body: part sizes give {len(verts)} vertices, not {SMPL.num_vertices}")
    faces = {name: p.faces + o for (name, p), o in zip(parts.items(), offsets)}
    tubes = [_bridge(parts[p.spec.parent], p, faces, verts) for p in parts.values() if p.spec.parent]
    all_faces = np.concatenate(list(faces.values()) + tubes)
    if len(all_faces) != SMPL.num_faces:
        raise AssertionError(f"synthetic body: {len(all_faces)} faces, not {SMPL.num_faces}")
    part_of = np.repeat(np.arange(len(parts)), np.diff(offsets))
    sym_dist, sym = cKDTree(verts).query(verts * MIRROR)
    if sym_dist.max() > 1e-6:
        raise AssertionError("synthetic body: the mesh is not mirror-symmetric")
    return _Body(verts, all_faces, part_of, list(parts.values()),
                 np.concatenate([p.centre for p in parts.values()]), sym)


def _renumber_landmarks(body: _Body) -> _Body:
    """Move the vertices at the smplx landmarks (`vertex_ids['smplh']`) to those ids."""
    ids = _SMPLX_VERTEX_IDS["smplh"]
    names = [p.spec.name for p in body.parts]
    chosen: dict[str, int] = {}
    for lm, (part, target) in _LANDMARKS.items():
        cand = np.flatnonzero(body.part == names.index(part))
        cand = cand[~np.isin(cand, list(chosen.values()))]
        chosen[lm] = int(cand[np.argmin(np.linalg.norm(body.verts[cand] - np.asarray(target), axis=1))])
    for lm, rm in _LANDMARK_MIRROR.items():
        chosen[rm] = int(body.sym[chosen[lm]])
    order = np.arange(len(body.verts))  # new vertex i is old vertex order[i]
    where = np.arange(len(body.verts))  # old vertex v is now at where[v]
    for lm, old in chosen.items():
        new, cur = ids[lm], where[old]
        moved = order[new]
        order[new], order[cur] = old, moved
        where[old], where[moved] = new, cur
    return _Body(body.verts[order], where[body.faces], body.part[order], body.parts, body.centre[order],
                 where[body.sym[order]])


def _skinning(body: _Body, joints: dict[str, np.ndarray]) -> np.ndarray:
    """(V, 24) weights: along each part's chain of joints, blended smoothly at each joint."""
    index = SMPL_24.index
    W = np.zeros((len(body.verts), len(SMPL_24)))
    for k, part in enumerate(body.parts):
        vid = np.flatnonzero(body.part == k)
        s = (body.verts[vid] - part.a) @ part.u
        chain = part.spec.chain
        starts = [(joints[j] - part.a) @ part.u for j in chain[1:]]
        H = [_smoothstep(s, b - part.spec.blend, b + part.spec.blend) for b in starts]  # 1 past joint
        H = [np.ones_like(s)] + H + [np.zeros_like(s)]
        for i, j in enumerate(chain):
            W[vid, index[j]] += H[i] - H[i + 1]
        if part.spec.name == "torso":
            x, y = body.verts[vid, 0], body.verts[vid, 1]
            for joint, x0, x1, y0, y1, frac in _TORSO_LATERAL:
                for side, sign in (("left", 1.0), ("right", -1.0)):
                    f = frac * _smoothstep(sign * x, x0, x1) * _smoothstep(y, y0, y1)
                    W[vid] *= (1 - f)[:, None]
                    W[vid, index[_side(joint, side)]] += f
    return W


def _regressor(verts: np.ndarray, targets: np.ndarray, k: int = 48, tol: float = 1e-3) -> np.ndarray:
    """(J, V) rows of non-negative weights summing to 1 over the vertices nearest each
    target, close to a Gaussian of distance, whose weighted mean is the target (NNLS).
    The neighbourhood grows (k, 2k, ...) until the target lies within its reach."""
    tree = cKDTree(verts)
    rows = np.zeros((len(targets), len(verts)))
    lam = 1e7  # weight of the constraints sum w (v - t) = 0, sum w = 1
    for j, t in enumerate(targets):
        for kk in (k, 2 * k, 4 * k, 8 * k):
            d, idx = tree.query(t, k=kk)
            w0 = np.exp(-((d / d.mean()) ** 2))
            w0 /= w0.sum()
            A = np.concatenate([np.eye(kk), np.sqrt(lam) * np.vstack([(verts[idx] - t).T, np.ones(kk)])])
            b = np.concatenate([w0, np.sqrt(lam) * np.array([0, 0, 0, 1.0])])
            w, _ = nnls(A, b)
            w /= w.sum()
            err = np.linalg.norm(w @ verts[idx] - t)
            if err <= tol:
                break
        else:
            raise AssertionError(f"synthetic body: regressor row {j} misses its target by {err * 1e3:.1f} mm")
        rows[j, idx] = w
    return rows


def _shape_dirs(body: _Body, joints: dict[str, np.ndarray]) -> np.ndarray:
    """(V, 3, 10) linear shape directions, in SHAPE_DIRECTIONS order (ours)."""
    v = body.verts
    x, y, z = v.T
    r = v - body.centre  # radial: from the section centre outwards
    names = [p.spec.name for p in body.parts]
    torso = body.part == names.index("torso")
    limb = ~torso & (body.part != names.index("neck")) & (body.part != names.index("head"))
    sgn, ax = np.sign(x), np.abs(x)
    front = np.maximum(r[:, 2], 0) / 0.1
    pelvis, head = joints["pelvis"], np.array([0.0, 0.40, 0.03])
    D = np.zeros((len(v), 3, 10))
    D[:, :, 0] = 0.04 * (v - pelvis) * (0.25, 1.0, 0.25)
    D[:, :, 1] = 0.10 * r
    D[:, 0, 2] = 0.02 * sgn * np.minimum(ax / 0.19, 1) * _smoothstep(y, -0.05, 0.15)
    D[:, 1, 3] = 0.04 * np.minimum(y - joints["left_hip"][1], 0)
    D[:, 0, 4] = 0.05 * sgn * np.maximum(ax - 0.19, 0) * _smoothstep(y, -0.1, 0.05)
    D[:, :, 5] = 0.08 * (v - head) * _smoothstep(y, 0.27, 0.33)[:, None]
    D[:, 0, 6] = 0.02 * sgn * np.minimum(ax / 0.17, 1) * _smoothstep(y, -0.05, -0.25)
    D[:, 2, 7] = torso * 0.03 * np.exp(-(((y + 0.08) / 0.1) ** 2)) * front
    D[:, 2, 8] = torso * 0.025 * np.exp(-(((y - 0.12) / 0.06) ** 2) - ((ax - 0.085) / 0.06) ** 2) * front
    D[:, :, 9] = (0.08 * limb - 0.04 * torso)[:, None] * r
    return D


def _pose_dirs(body: _Body, W: np.ndarray, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V, 3, 207) pose blend shapes: for joint k and each entry of (R_k - I), a small
    smooth bulge along the radial direction near joint k, on the vertices it moves (ours)."""
    r = body.verts - body.centre
    rhat = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-6)
    coef = rng.normal(size=(len(SMPL_24) - 1, 9)) * 0.01  # metres per unit of (R - I)
    P = np.zeros((len(body.verts), 3, 9 * (len(SMPL_24) - 1)))
    for k in range(1, len(SMPL_24)):
        parent = SMPL_24.parents[k]
        bump = np.exp(-np.sum((body.verts - joints[k]) ** 2, 1) / (2 * 0.05 ** 2))
        bump *= np.minimum(W[:, k] + W[:, parent], 1)
        bump[bump < 1e-3] = 0
        P[:, :, 9 * (k - 1):9 * k] = (bump[:, None] * rhat)[:, :, None] * coef[k - 1]
    return P


@dataclass
class SyntheticSMPL:
    """The neutral stand-in and what the three genders share (see module doc)."""

    templates: dict[str, np.ndarray]  # gender -> (6890, 3) rest vertices
    faces: np.ndarray  # (13776, 3)
    J_regressor: np.ndarray  # (24, 6890)
    weights: np.ndarray  # (6890, 24)
    posedirs: np.ndarray  # (6890, 3, 207)
    shapedirs: np.ndarray  # (6890, 3, 10)
    sym: np.ndarray  # (6890,) mirror vertex
    h36m_regressor: np.ndarray  # (17, 6890)
    body: _Body

    def model_dict(self, gender: str) -> dict:
        """The contents of SMPL_<GENDER>.pkl, under the real files' key names."""
        kintree = np.stack([np.asarray(SMPL_24.parents, dtype=np.int64), np.arange(len(SMPL_24))])
        kintree[0, 0] = 4294967295  # the real files' root parent (uint32 -1)
        v = self.templates[gender]
        return {
            "v_template": v, "f": self.faces.astype(np.uint32), "J_regressor": self.J_regressor,
            "kintree_table": kintree, "weights": self.weights, "posedirs": self.posedirs.astype(np.float32),
            "shapedirs": self.shapedirs, "J": self.J_regressor @ v, "vert_sym_idxs": self.sym,
            "bs_type": "lrotmin", "bs_style": "lbs", "synthetic": True,
        }


def build_smpl(seed: int = 0) -> SyntheticSMPL:
    """The synthetic SMPL stand-in (deterministic from `seed`, which sets the pose blend
    shapes; the geometry itself is fixed)."""
    rng = np.random.default_rng(seed)
    body = _renumber_landmarks(_assemble(REST_JOINTS))
    joints = np.stack([REST_JOINTS[n] for n in SMPL_24.names])
    W = _skinning(body, REST_JOINTS)
    J_reg = _regressor(body.verts, joints)
    h36m = _regressor(body.verts, np.stack([_H36M_TARGETS[n] for n in H36M_17.names]))
    D = _shape_dirs(body, REST_JOINTS)
    P = _pose_dirs(body, W, joints, rng)
    templates = {g: body.verts + D @ b for g, b in _GENDER_BETAS.items()}
    return SyntheticSMPL(templates, body.faces, J_reg, W, P, D, body.sym, h36m, body)


def mean_params() -> dict[str, np.ndarray]:
    """smpl_mean_params.npz contents: a relaxed upright pose in SPIN's layout (ours)."""
    from scipy.spatial.transform import Rotation

    aa = np.zeros((len(SMPL_24), 3))
    aa[0] = (np.pi, 0, 0)  # upright in a y-down camera frame, as SPIN's mean pose
    for name, rot in (("left_shoulder", (0, 0, -1.2)), ("left_elbow", (0, -0.3, 0)), ("left_knee", (0.15, 0, 0))):
        aa[SMPL_24.index[name]] = rot
        aa[SMPL_24.index[_side(name, "right")]] = np.asarray(rot) * (1, -1, -1)
    R = Rotation.from_rotvec(aa).as_matrix()  # (24, 3, 3)
    pose6d = R[:, :, :2].reshape(-1)  # SPIN's layout: per joint R[:, :2] row-major, i.e. interleaved
    return {"pose": pose6d.astype(np.float64), "shape": np.zeros(10), "cam": np.array([0.9, 0.0, 0.0])}


@dataclass
class SyntheticSMPLX:
    """SMPL-X stand-in topology: the SMPL stand-in with 3585 faces split at their centroid."""

    corners: np.ndarray  # (3585, 3) the split SMPL faces; new vertex i is their centroid
    faces: np.ndarray  # (20946, 3)
    weights: np.ndarray  # (10475, 55)
    J_regressor: np.ndarray  # (55, 10475)
    shapedirs: np.ndarray  # (10475, 3, 20): 10 shape + 10 expression
    posedirs: np.ndarray  # (10475, 3, 486)
    lmk_faces_idx: np.ndarray
    dynamic_lmk_faces_idx: np.ndarray

    def vertices(self, smpl_vertices: np.ndarray) -> np.ndarray:
        """SMPL-X vertices from SMPL ones: the SMPL vertices, then the split centroids."""
        return np.concatenate([smpl_vertices, smpl_vertices[..., self.corners, :].mean(-2)], axis=-2)

    def model_dict(self, smpl: SyntheticSMPL, gender: str) -> dict:
        kintree = np.stack([np.asarray(SMPLX_PARENTS, dtype=np.int64), np.arange(SMPLX.num_joints)])
        kintree[0, 0] = 4294967295
        v = self.vertices(smpl.templates[gender])
        return {
            "v_template": v, "f": self.faces.astype(np.uint32), "J_regressor": self.J_regressor,
            "kintree_table": kintree, "weights": self.weights, "posedirs": self.posedirs.astype(np.float32),
            "shapedirs": self.shapedirs, "J": self.J_regressor @ v,
            "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
            "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
            "lmk_faces_idx": self.lmk_faces_idx, "lmk_bary_coords": np.full((len(self.lmk_faces_idx), 3), 1 / 3),
            "dynamic_lmk_faces_idx": self.dynamic_lmk_faces_idx,
            "dynamic_lmk_bary_coords": np.full(self.dynamic_lmk_faces_idx.shape + (3,), 1 / 3),
            "synthetic": np.bool_(True),
        }


def build_smplx(smpl: SyntheticSMPL, seed: int = 0) -> SyntheticSMPLX:
    rng = np.random.default_rng(seed + 1)
    n_new = SMPLX.num_vertices - SMPL.num_vertices
    v = smpl.templates["neutral"]
    f = smpl.faces
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    split = np.sort(np.argsort(-area, kind="stable")[:n_new])
    m = SMPL.num_vertices + np.arange(n_new)
    a, b, c = f[split].T
    keep = np.ones(len(f), dtype=bool)
    keep[split] = False
    faces = np.concatenate([f[keep], np.stack([a, b, m], 1), np.stack([b, c, m], 1), np.stack([c, a, m], 1)])
    corners = f[split]

    def extend(x):  # per-SMPL-vertex array -> per-SMPL-X-vertex (centroid = corner mean)
        return np.concatenate([x, x[corners].mean(1)])

    vx = extend(v)
    # Skinning: SMPL-X shares SMPL's first 22 joints; SMPL's hand joints map to middle1.
    smpl_to_x = [SMPLX_JOINT_NAMES.index(n) for n in SMPL_24.names[:22]]
    smpl_to_x += [SMPLX_JOINT_NAMES.index("left_middle1"), SMPLX_JOINT_NAMES.index("right_middle1")]
    W = np.zeros((SMPL.num_vertices, SMPLX.num_joints))
    W[:, smpl_to_x] = smpl.weights
    J_reg = np.zeros((SMPLX.num_joints, SMPLX.num_vertices))
    J_reg[:22, :SMPL.num_vertices] = smpl.J_regressor[:22]
    extra = SMPLX_JOINT_NAMES[22:]
    J_reg[22:] = _regressor(vx, np.stack([SMPLX_EXTRA_JOINTS[n] for n in extra]), k=24)
    # Blend shapes: SMPL's 10 shape directions, 10 small expression bulges on the face;
    # pose blend shapes of SMPL's joints 1..21 (the shared body joints), none for the rest.
    head = smpl.body.part == [p.spec.name for p in smpl.body.parts].index("head")
    face_front = extend((head & (v[:, 2] > 0.06)).astype(np.float64))
    centres = np.stack([rng.uniform(-0.04, 0.04, 10), rng.uniform(0.33, 0.45, 10), np.full(10, 0.12)], 1)
    bumps = np.exp(-np.sum((vx[:, None] - centres[None]) ** 2, -1) / (2 * 0.02 ** 2)) * face_front[:, None]
    expr = bumps[:, None, :] * rng.normal(size=(1, 3, 10)) * 0.005
    shapedirs = np.concatenate([extend(smpl.shapedirs), expr], axis=2)
    posedirs = np.zeros((SMPLX.num_vertices, 3, 9 * (SMPLX.num_joints - 1)), dtype=np.float32)
    posedirs[:, :, :9 * 21] = extend(smpl.posedirs[:, :, :9 * 21])
    # Facial landmarks (51 static, 79 x 17 dynamic): faces on the front of the head.
    fc = vx[faces].mean(1)
    front = np.flatnonzero((extend(head.astype(float))[faces].min(1) > 0.99) & (fc[:, 2] > 0.08)
                           & (fc[:, 1] > 0.33) & (fc[:, 1] < 0.46))
    lmk = front[np.linspace(0, len(front) - 1, 51).round().astype(int)]
    dyn = front[(np.arange(79 * 17) * 7) % len(front)].reshape(79, 17)
    return SyntheticSMPLX(corners, faces, extend(W), J_reg, shapedirs, posedirs, lmk.astype(np.int64),
                          dyn.astype(np.int64))


def _atomic(path: Path, write) -> Path:
    """Write through a temporary name and rename, so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
    return path


def _savez(f, arrays: dict) -> None:
    """np.savez_compressed, but reproducible to the byte (fixed member dates) and with
    zlib level 1 (fast; the SMPL-X blend shapes are mostly zeros)."""
    import io
    import zipfile

    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def write_synthetic_assets(assets_root: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write the SMPL-family stand-ins under `assets_root` at the paths of assets.yaml.

    Returns {asset name: path} for smpl_{neutral,male,female}, h36m_regressor,
    mean_params, smplx_{male,female}, smplx2smpl.
    """
    assets = Assets(root=assets_root)
    smpl = build_smpl(seed)
    smplx = build_smplx(smpl, seed)
    written: dict[str, Path] = {}
    for gender in ("neutral", "male", "female"):
        d = smpl.model_dict(gender)
        written[f"smpl_{gender}"] = _atomic(assets.path(f"smpl_{gender}"), lambda f, d=d: pickle.dump(d, f, protocol=2))
    h36m = assets.path("h36m_regressor")
    written["h36m_regressor"] = _atomic(h36m, lambda f: np.save(f, smpl.h36m_regressor.astype(np.float32)))
    _atomic(Path(str(h36m) + SYNTHETIC_SIDECAR), lambda f: f.write(
        f"synthetic stand-in for {h36m.name}, written by `python -m datasets.synthetic` (seed {seed})\n".encode()))
    written["mean_params"] = _atomic(assets.path("mean_params"),
                                     lambda f: _savez(f, {**mean_params(), "synthetic": np.bool_(True)}))
    for gender in ("male", "female"):
        d = smplx.model_dict(smpl, gender)
        written[f"smplx_{gender}"] = _atomic(assets.path(f"smplx_{gender}"), lambda f, d=d: _savez(f, d))
    n_x = SMPLX.num_vertices
    matrix = sp.csc_matrix((np.ones(SMPL.num_vertices, dtype=np.float32),
                            (np.arange(SMPL.num_vertices), np.arange(SMPL.num_vertices))), shape=(SMPL.num_vertices, n_x))
    written["smplx2smpl"] = _atomic(assets.path("smplx2smpl"),
                                    lambda f: pickle.dump({"matrix": matrix, "synthetic": True}, f, protocol=2))
    return written
