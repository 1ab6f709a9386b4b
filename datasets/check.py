"""`make check-data`: do a dataset's labels agree with its images and with each other?

    python -m datasets.check --raw data/raw --out data/check [--datasets 3dpw coco] [-n 16]
    make check-data RAW=data/raw [DATASETS="3dpw coco"] [N=16]

For every (dataset, split) found under the raw root (`datasets.readers.available`), read
through the same reader `make shards` uses:
1. Coverage (`label_coverage`, also in `make shards`' summary and stats.json): of the
   reader's records, how many carry SMPL (`has_smpl`; RICH's are SMPL-X), 3D joints, 2D
   keypoints (at least one joint with confidence > 0) and intrinsics; and the rejected frames.
2. Disagreement, on a random sample of records (`--sample`): the record's ground-truth
   body (`datasets.reader.BodyModels`, gendered; SMPL-X for RICH) against the labels of the
   source that do NOT come from that body (INDEPENDENT_LABELS):
   - 2D: the body's KEYPOINTS_2D points projected with the record's intrinsics vs the
     independent 2D labels, per (record, joint) where both exist: median and 95th
     percentile in px, and as a share of the person box side (max of `box_size`), the unit
     of the limits (the same labels give ~4x fewer px in a 1/4-size image);
   - 3D: the body's points vs the 3D labels, in mm;
   - per joint: the median of each joint, so one wrong column shows even when the rest agree;
   - swaps: a pair of labelled joints at least SWAP_MIN_SEPARATION_M apart on the body that
     fits the body better exchanged (left/right, or SPIN's jaw/head columns) in most records;
   - box: the share of the body's projected points (in the image) inside the record's box.
   Placement (the rule for bodies without a translation): a record with `has_transl` is in
   the camera as given (3DPW, CLIFF's `global_t`, RICH) and its 3D comparison is absolute;
   a record without one (SPIN's 3DHP fits, H36M's MoSh fits carry none) is moved so that
   the body's pelvis (KEYPOINTS_2D `pelvis_mpii`) sits on the 3D label's pelvis, which
   makes its 3D comparison pelvis-aligned (as H36M's root-centred `S` is stored) and places
   it for the 2D one; without a 3D-label pelvis it is not placed (no 2D, no mesh drawn).
3. Flags: a split whose coverage is below, or whose disagreement is above, what its source
   promises (LIMITS, each with its reasoning; `--limit NAME.FIELD=VALUE` overrides).
4. A contact sheet `OUT/<dataset>-<split>.png`: N random records of the sample, each cropped
   around its box, with the ground-truth mesh shaded in, the independent 2D labels as a
   skeleton (right red, left blue, centre green), the body's projected points as white
   crosses joined to their label by magenta lines, the box in yellow; the tile's title says
   the record and its median 2D disagreement. `OUT/check.json` holds every number printed.
The exit status is 1 when a split is flagged or cannot be read.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from datasets.errors import fail
from datasets.joints import KEYPOINTS_2D, SMPL_24, convert
from datasets.progress import progress
from datasets.record import PersonFrame, RecordError, Reject

COVERAGE_FIELDS = ("smpl", "joints_3d", "keypoints_2d", "intrinsics")
COVERAGE_ABBREV = {"smpl": "smpl", "joints_3d": "3d", "keypoints_2d": "2d", "intrinsics": "K"}
PELVIS = KEYPOINTS_2D.index["pelvis_mpii"]
M_TO_MM = 1000.0
CHUNK = 128  # records per body-model call
# swap test: only pairs of joints this far apart on the ground-truth body (a pair closer than
# that, e.g. neck and thorax, is within the joint-definition differences of the sources), and
# only once a pair was seen in this many records
SWAP_MIN_SEPARATION_M = 0.06
SWAP_MIN_RECORDS = 3


# ---- coverage: one function for check-data and make shards ------------------------------------
def label_coverage(records: Iterable[PersonFrame]) -> dict[str, int]:
    """{"records": n, "smpl", "joints_3d", "keypoints_2d", "intrinsics": how many of the n
    carry it}: SMPL = `has_smpl` (any body model), 3D joints / 2D keypoints = at least one
    joint with confidence > 0, intrinsics = not None."""
    out = dict.fromkeys(("records",) + COVERAGE_FIELDS, 0)
    for rec in records:
        out["records"] += 1
        out["smpl"] += bool(rec.has_smpl)
        out["joints_3d"] += bool(np.any(rec.joints_3d[:, 3] > 0))
        out["keypoints_2d"] += bool(np.any(rec.keypoints_2d[:, 2] > 0))
        out["intrinsics"] += rec.intrinsics is not None
    return out


def coverage_cell(coverage: dict[str, int]) -> str:
    """'smpl/3d/2d/K' counts as one table cell, e.g. '15/15/15/0'."""
    return "/".join(str(coverage[f]) for f in COVERAGE_FIELDS)


# ---- what each source promises ------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What a correct reading of a source gives; a split beyond a limit is flagged (None: not
    checked, the source promises no such label or comparison).

    min_<label>: least share of the records carrying it (`label_coverage`);
    px_median / px_p95 / px_joint: most 2D disagreement (overall median, 95th percentile,
      any joint's median) as a share of the person box side;
    mm_median / mm_p95 / mm_joint: the same in 3D, mm;
    min_in_box: least share of the body's projected points inside the record's box;
    max_swapped: most share of records in which a pair of joints fits better exchanged.
    """

    min_smpl: float | None = None
    min_joints_3d: float | None = None
    min_keypoints_2d: float | None = None
    min_intrinsics: float | None = None
    px_median: float | None = None
    px_p95: float | None = None
    px_joint: float | None = None
    mm_median: float | None = None
    mm_p95: float | None = None
    mm_joint: float | None = None
    min_in_box: float | None = None
    max_swapped: float | None = 0.5  # a column convention breaks every record; a detector's swap a minority


# Where each source's independent labels are (2D, 3D); the records' other labels are the body's own:
# - 3dpw: 2D `poses2d` (OpenPose detections, `datasets.pw3d.detections_2d`; the records' 2D are the
#   GT projection), 3D `jointPositions` (the reader's option joints_3d="joint_positions": SMPL-24
#   joints, compared with the body's SMPL-24 joints);
# - coco / mpii / h36m: 2D `part` (the records' keypoints_2d, SPIN base_dataset.py), 3D `S` where the
#   file has it (SPIN base_dataset.py `pose_3d`; without `S` the records' 3D are the SMPL's own);
# - mpi_inf_3dhp: annot2 / annot3 (the records' keypoints_2d / joints_3d; the SPIN fits are separate);
# - rich: none (BEDLAM's rich_test.npz holds only the SMPL-X, its camera and the box);
# - emdb: none (its `kp2d` are the same SMPL's joints projected, eth-ait/emdb dataset.md).
INDEPENDENT_LABELS: dict[str, tuple[str | None, str | None]] = {
    "3dpw": ("poses2d", "joint_positions"),
    "coco": ("record", "file_S"),
    "mpii": ("record", "file_S"),
    "h36m": ("record", "file_S"),
    "mpi_inf_3dhp": ("record", "record"),
    "rich": (None, None),
    "emdb": (None, None),
}

# Limits per "dataset" or "dataset/split" (the latter first). Shares of the box side: the box
# is SPIN's, 1.2 x the person's extent, so 1% of it is ~2 cm on a 1.7 m person.
LIMITS: dict[str, Limits] = {
    # 3DPW: the reader builds SMPL, camera and 3D for every valid frame; its 2D targets are the
    # GT projection (confidence 0 only off the image). poses2d are OpenPose detections: at
    # 3DPW's 1080x1920 a few px off (<1% of a 600-1000 px box), plus OpenPose's hips against
    # the H36M-regressor hips (~5 cm, 2 of 14 joints), so median <= 3%; the detections are at
    # times misplaced or left/right swapped (noah-research issue #163): a swapped limb is a
    # hip or shoulder width to a limb length off (10-30% of the box), in the p95 once more
    # than 5% of the points are, so p95 <= 40% (beyond: points not on this person). jointPositions are the same fits' SMPL joints (3DPW readme): the gendered
    # SMPL with the file's 10 betas gives them back to float and model-version rounding, so a
    # cm is already a wrong gender, camera transform or translation rule.
    "3dpw": Limits(min_smpl=0.99, min_joints_3d=0.99, min_keypoints_2d=0.95, min_intrinsics=0.99,
                   px_median=0.03, px_p95=0.40, px_joint=0.08, mm_median=10.0, mm_p95=25.0, mm_joint=20.0,
                   min_in_box=0.9),
    # CLIFF pseudo-GT: a fit per row (has_smpl 1), `focal_l` and `global_t` per row, `part` with
    # visible points in every row (SPIN's preprocessing keeps no row without). The fits are
    # optimised against these 2D keypoints (CLIFF annotator), so they agree to the fit's
    # residual plus COCO/MPII's joint definitions against the mesh points (hips, neck):
    # median <= 5%, p95 <= 20%, any joint's median <= 10% of the box. The box is SPIN's
    # 1.2 x the keypoints' extent: >= 90% of the body's points inside.
    "coco": Limits(min_smpl=0.95, min_joints_3d=0.95, min_keypoints_2d=0.99, min_intrinsics=0.95,
                   px_median=0.05, px_p95=0.20, px_joint=0.10, min_in_box=0.9),
    "mpii": Limits(min_smpl=0.95, min_joints_3d=0.95, min_keypoints_2d=0.99, min_intrinsics=0.95,
                   px_median=0.05, px_p95=0.20, px_joint=0.10, min_in_box=0.9),
    # Human3.6M train: SPIN reads every row as SMPL (MoSh fits, no `has_smpl`), `S` and `part` in
    # every row, no camera in the file (no 2D comparison). MoSh fits the mesh to the mocap
    # markers (~1-2 cm), the H36M regressor maps it to H36M's joints: median <= 50 mm,
    # p95 <= 120 mm, any joint's median <= 80 mm, pelvis-aligned (S is root-centred).
    "h36m/train": Limits(min_smpl=0.95, min_joints_3d=0.99, min_keypoints_2d=0.99,
                         mm_median=50.0, mm_p95=120.0, mm_joint=80.0),
    "h36m/test": Limits(min_joints_3d=0.99),  # SPIN's h36m_valid_protocol2.npz: `S` only
    # MPI-INF-3DHP train: annot2 / annot3 / camera.calibration in every frame; SPIN's fits are
    # multi-view fits to these labels (mpi-inf-3dhp_mview_fits.npz) with a per-fit quality flag
    # (SPIN README, "Final fits"): the share of good fits is not published, half is our floor;
    # no fits file (the reader's own frame set) gives 0 and is flagged. A fit on its own frame
    # agrees to the fit's residual plus 3DHP's joint definitions (a few cm); a fit attached to
    # another frame or view (SPIN issue #84's failure) is off by a limb's motion or a whole-body
    # rotation (tens of cm): median <= 60 mm / 6%, p95 <= 150 mm / 20%, joint <= 100 mm / 10%.
    "mpi_inf_3dhp/train": Limits(min_smpl=0.5, min_joints_3d=0.99, min_keypoints_2d=0.95, min_intrinsics=0.99,
                                 px_median=0.06, px_p95=0.20, px_joint=0.10, mm_median=60.0, mm_p95=150.0,
                                 mm_joint=100.0, min_in_box=0.9),
    # the test set: annot2 and univ_annot3 in every valid frame, no SMPL, no intrinsics
    "mpi_inf_3dhp/test": Limits(min_joints_3d=0.99, min_keypoints_2d=0.95),
    # RICH (BEDLAM's parsed labels): SMPL-X, `cam_int` and a translation in every row, nothing
    # independent but the box (SPIN-style around the person): >= 90% of the body's points in it.
    "rich": Limits(min_smpl=0.99, min_joints_3d=0.99, min_keypoints_2d=0.99, min_intrinsics=0.99, min_in_box=0.9),
    # EMDB 1 (good frames): SMPL, camera and translation in every frame; the 2D are the body's
    # projection (confidence 0 off the image); the box is SPIN's 1.2 x EMDB's tight `bboxes`.
    "emdb": Limits(min_smpl=0.99, min_joints_3d=0.99, min_keypoints_2d=0.95, min_intrinsics=0.99, min_in_box=0.9),
}


def limits_for(dataset: str, split: str, table: dict[str, Limits] | None = None) -> Limits:
    table = LIMITS if table is None else table
    return table.get(f"{dataset}/{split}") or table.get(dataset) or Limits()


def override_limits(table: dict[str, Limits], items: list[str]) -> dict[str, Limits]:
    """Apply `NAME.FIELD=VALUE` items (NAME a dataset or dataset/split; VALUE a number or
    'none') to a copy of `table`; a new NAME starts from that dataset's limits."""
    out = dict(table)
    fields = {f.name for f in dataclasses.fields(Limits)}
    for item in items:
        name_field, sep, value = item.partition("=")
        name, dot, fname = name_field.rpartition(".")
        if not sep or not dot or fname not in fields:
            raise ValueError(f"--limit {item!r}: expected NAME.FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            number = None if value.lower() == "none" else float(value)
        except ValueError:
            raise ValueError(f"--limit {item!r}: value {value!r} is not a number or 'none'") from None
        dataset, _, split = name.partition("/")
        base = out.get(name) or limits_for(dataset, split, out)
        out[name] = dataclasses.replace(base, **{fname: number})
    return out


# ---- reading a split -------------------------------------------------------------------------------
@dataclass
class Scan:
    """One pass over a reader: coverage of all its records, rejects, and a uniform random
    sample of at most `size` records (reservoir sampling, seeded)."""

    coverage: dict[str, int]
    rejected: int
    sample: list[PersonFrame]


def scan(reader, size: int, seed: int, show_progress: bool = True) -> Scan:
    rng = np.random.default_rng(seed)
    sample: list[PersonFrame] = []
    counts = label_coverage(())
    rejected = 0
    for item in progress(reader.frames(), f"check {reader.name}/{reader.split}", "frames", show=show_progress,
                         leave=False):
        if isinstance(item, Reject):
            rejected += 1
            continue
        one = label_coverage((item,))
        for k, v in one.items():
            counts[k] += v
        i = counts["records"] - 1
        if i < size:
            sample.append(item)
        else:
            j = int(rng.integers(0, i + 1))
            if j < size:
                sample[j] = item
    sample.sort(key=lambda r: r.key)
    return Scan(counts, rejected, sample)


def independent_labels(name: str, reader, sample: list[PersonFrame]) -> tuple[list, list, bool, list[str]]:
    """(2D labels (24, 3) or None per sample record, 3D labels (24, 4) or None, whether the 3D
    labels are SMPL-24 joints (mapped to KEYPOINTS_2D), notes) of a split (INDEPENDENT_LABELS)."""
    kind_2d, kind_3d = INDEPENDENT_LABELS.get(name, (None, None))
    notes: list[str] = []
    labels_2d: list = [None] * len(sample)
    labels_3d: list = [None] * len(sample)
    if kind_2d == "record":
        labels_2d = [r.keypoints_2d for r in sample]
    elif kind_2d == "poses2d":
        from datasets.pw3d import detections_2d

        found = detections_2d(reader.root, reader.split)
        labels_2d = [found.get(r.key) for r in sample]
    if kind_3d == "record":
        labels_3d = [r.joints_3d for r in sample]
    elif kind_3d == "file_S":
        with np.load(reader.label_file, allow_pickle=False) as z:
            has_s = "S" in z.files
        if has_s:
            labels_3d = [r.joints_3d for r in sample]
        else:
            notes.append(f"3D: {reader.label_file.name} has no 'S' (its 3D joints are the fits' own)")
    elif kind_3d == "joint_positions":
        from datasets.pw3d import Options as PW3DOptions
        from datasets.reader import AnnotationError

        keys = {r.key: i for i, r in enumerate(sample)}
        try:
            other = type(reader)(reader.root, reader.split, PW3DOptions(joints_3d="joint_positions"))
            for item in other.frames():
                if isinstance(item, PersonFrame) and item.key in keys:
                    labels_3d[keys[item.key]] = item.joints_3d
        except AnnotationError as e:
            notes.append(f"3D: not compared ({e})")
        return labels_2d, labels_3d, True, notes
    return labels_2d, labels_3d, False, notes


# ---- ground-truth bodies --------------------------------------------------------------------------
def gt_bodies(models, records: list[PersonFrame], vertices: bool = False) -> list[dict]:
    """Per record with SMPL: {"keypoints" (24, 4) KEYPOINTS_2D + confidence, "joints" (24, 3)
    SMPL-24, ["vertices" (V, 3)], "faces"} in the camera frame at the record's translation
    (zero when it has none); None for records without SMPL. Gendered SMPL, or SMPL-X for
    `body_model == "smplx"` (`BodyModels.smplx`)."""
    out: list[dict | None] = [None] * len(records)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, rec in enumerate(records):
        if rec.has_smpl:
            groups.setdefault((rec.body_model, rec.gender), []).append(i)
    for (body_model, gender), idx in sorted(groups.items()):
        bodies = models.smplx() if body_model == "smplx" else models
        for s in range(0, len(idx), CHUNK):
            sel = idx[s:s + CHUNK]
            res = bodies.forward(gender, np.stack([records[i].smpl_pose for i in sel]),
                                 np.stack([records[i].betas for i in sel]),
                                 np.stack([records[i].smpl_transl for i in sel]))
            for n, i in enumerate(sel):
                body = dict(keypoints=res["keypoints"][n], joints=res["joints"][n])
                if vertices:
                    body.update(vertices=res["vertices"][n], faces=bodies.faces)
                out[i] = body
    return out


def placement(rec: PersonFrame, body: dict, label_3d: np.ndarray | None) -> np.ndarray | None:
    """(3,) offset that puts the body in the record's camera (module doc, "Placement"), or None."""
    if rec.has_transl:
        return np.zeros(3)
    if label_3d is not None and label_3d[PELVIS, 3] > 0 and body["keypoints"][PELVIS, 3] > 0:
        return label_3d[PELVIS, :3] - body["keypoints"][PELVIS, :3]
    return None


def project_points(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(J, 4) camera points + confidence -> (J, 3) px + confidence (0 at or behind the camera)."""
    from datasets.reader import project

    conf = np.where(points[:, 2] > 1e-3, points[:, 3], 0.0)
    return np.concatenate([project(points[:, :3], K), conf[:, None]], 1)


@dataclass
class Comparison:
    """One record against its independent labels. err_2d (24,) px, err_3d (24,) mm, NaN where
    not compared; swapped_*: (24, 24) bool, the pair fits better exchanged; valid_*: the pair
    was tested; in_box: (points inside the box, points in the image)."""

    err_2d: np.ndarray
    err_3d: np.ndarray
    swapped_2d: np.ndarray
    valid_2d: np.ndarray
    swapped_3d: np.ndarray
    valid_3d: np.ndarray
    in_box: tuple[int, int]
    projected: np.ndarray | None  # (24, 3) the body's points in the image (px + confidence)
    offset: np.ndarray | None


def compare(rec: PersonFrame, body: dict, label_2d, label_3d, smpl24_labels: bool) -> Comparison:
    nan = np.full(len(KEYPOINTS_2D), np.nan)
    none = np.zeros((len(KEYPOINTS_2D),) * 2, bool)
    cmp = Comparison(nan.copy(), nan.copy(), none, none, none, none, (0, 0), None, None)
    offset = placement(rec, body, None if smpl24_labels else label_3d)
    if offset is None:
        return cmp
    cmp.offset = offset
    kp = body["keypoints"].copy()
    kp[:, :3] += offset
    if smpl24_labels:  # the labels are SMPL-24 joints: compare the body's SMPL-24 joints by name
        joints = np.concatenate([body["joints"] + offset, np.ones((len(SMPL_24), 1))], 1)
        gt_3d = convert(joints, SMPL_24, KEYPOINTS_2D)
    else:
        gt_3d = kp
    separation = np.linalg.norm(kp[:, None, :3] - kp[None, :, :3], axis=-1)  # (24, 24) m on the body
    apart = (separation >= SWAP_MIN_SEPARATION_M) & (kp[:, None, 3] > 0) & (kp[None, :, 3] > 0)
    if label_3d is not None:
        both = (gt_3d[:, 3] > 0) & (label_3d[:, 3] > 0)
        cmp.err_3d[both] = np.linalg.norm(gt_3d[both, :3] - label_3d[both, :3], axis=1) * M_TO_MM
        cmp.swapped_3d, cmp.valid_3d = _swaps(label_3d[:, :3], gt_3d[:, :3], both, apart)
    if rec.intrinsics is not None:
        proj = project_points(kp, rec.intrinsics)
        h, w = (int(v) for v in rec.image_hw)
        on_image = (proj[:, 2] > 0) & (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h)
        half = rec.box_size / 2
        inside = on_image & np.all(np.abs(proj[:, :2] - rec.box_center) <= half, axis=1)
        cmp.in_box = (int(inside.sum()), int(on_image.sum()))
        cmp.projected = proj
        if label_2d is not None:
            both = (proj[:, 2] > 0) & (label_2d[:, 2] > 0)
            cmp.err_2d[both] = np.linalg.norm(proj[both, :2] - label_2d[both, :2], axis=1)
            cmp.swapped_2d, cmp.valid_2d = _swaps(label_2d[:, :2], proj[:, :2], both, apart)
    return cmp


def _swaps(labels: np.ndarray, gt: np.ndarray, both: np.ndarray, apart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(swapped, valid) (24, 24): pairs (j, k) labelled and apart on the body, and whether
    labels j, k at body points k, j are closer, by more than half the points' distance, than
    as given (exchanged labels gain twice that distance; a label halfway gains nothing)."""
    d = np.linalg.norm(labels[:, None] - gt[None, :], axis=-1)  # (label j, body point k)
    own = np.diag(d)
    gain = own[:, None] + own[None, :] - d - d.T
    separation = np.linalg.norm(gt[:, None] - gt[None, :], axis=-1)
    valid = both[:, None] & both[None, :] & apart
    np.fill_diagonal(valid, False)
    return valid & (gain > separation / 2), valid


# ---- one split -------------------------------------------------------------------------------------
def summarize(comparisons: list[Comparison], records: list[PersonFrame]) -> dict:
    """The split's disagreement numbers (JSON-ready; None where nothing was compared)."""
    out: dict = {}
    box = np.array([float(np.max(r.box_size)) for r in records])
    for dim in ("2d", "3d"):
        err = np.stack([getattr(c, f"err_{dim}") for c in comparisons]) if comparisons else np.zeros((0, 24))
        have = np.isfinite(err)
        stats = dict(pairs=int(have.sum()), records=int(have.any(1).sum()))
        if have.any():
            stats.update({"median": float(np.median(err[have])), "p95": float(np.percentile(err[have], 95))})
            if dim == "2d":
                rel = err / box[:, None]
                stats.update(median_box=float(np.median(rel[have])), p95_box=float(np.percentile(rel[have], 95)))
            per_joint = {}
            for j, name in enumerate(KEYPOINTS_2D.names):
                if have[:, j].any():
                    col = (err / box[:, None] if dim == "2d" else err)[have[:, j], j]
                    per_joint[name] = float(np.median(col))
            stats["joint_median" + ("_box" if dim == "2d" else "")] = per_joint
            swapped = sum(getattr(c, f"swapped_{dim}").astype(int) for c in comparisons)
            valid = sum(getattr(c, f"valid_{dim}").astype(int) for c in comparisons)
            stats["swapped"] = {f"{KEYPOINTS_2D.names[j]}/{KEYPOINTS_2D.names[k]}": [int(swapped[j, k]), int(valid[j, k])]
                                for j, k in zip(*np.nonzero(np.triu(valid >= SWAP_MIN_RECORDS, 1)))}
        out[dim] = stats
    inside = sum(c.in_box[0] for c in comparisons)
    total = sum(c.in_box[1] for c in comparisons)
    out["in_box"] = dict(inside=inside, points=total, share=inside / total if total else None)
    return out


def flags(result: dict, limits: Limits) -> list[str]:
    """Why a split is far from what its source promises (empty: it is not)."""
    out = []
    cov = result["coverage"]
    n = cov["records"]
    if n == 0:
        return [f"no records ({result['rejected']} frames rejected)"]
    for field in COVERAGE_FIELDS:
        least = getattr(limits, f"min_{field}")
        if least is not None and cov[field] < least * n:
            out.append(f"coverage: {COVERAGE_ABBREV[field]} in {cov[field]} of {n} records "
                       f"({cov[field] / n:.0%} < {least:.0%}, min_{field})")
    d = result["disagreement"]
    for dim, scale, key in (("2d", 100.0, "px"), ("3d", 1.0, "mm")):
        stats = d[dim]
        suffix, shown = ("_box", "% of box") if dim == "2d" else ("", " mm")
        expected = [getattr(limits, f"{key}_{s}") for s in ("median", "p95", "joint")]
        if stats["pairs"] == 0:
            if any(v is not None for v in expected) and cov["smpl"]:
                out.append(f"{dim.upper()}: nothing compared (no record with a body, a camera and labels)")
            continue
        for stat, limit in (("median", expected[0]), ("p95", expected[1])):
            value = stats[stat + suffix]
            if limit is not None and value > limit:
                raw = f"; {stats[stat]:.1f} px" if dim == "2d" else ""
                out.append(f"{dim.upper()}: {stat} {value * scale:.1f}{shown} > {limit * scale:.1f}{shown} "
                           f"({key}_{stat}{raw})")
        if expected[2] is not None:
            over = {j: v for j, v in stats["joint_median" + suffix].items() if v > expected[2]}
            if over:
                out.append(f"{dim.upper()}: joint medians over {expected[2] * scale:.1f}{shown} ({key}_joint): "
                           + ", ".join(f"{j} {v * scale:.1f}" for j, v in over.items()))
        if limits.max_swapped is not None:
            for pair, (swapped, valid) in stats["swapped"].items():
                if swapped > limits.max_swapped * valid:
                    out.append(f"{dim.upper()}: {pair} fit the body better exchanged in {swapped} of {valid} "
                               f"records (> {limits.max_swapped:.0%}, max_swapped)")
    share = d["in_box"]["share"]
    if limits.min_in_box is not None and share is not None and share < limits.min_in_box:
        out.append(f"box: {share:.0%} of the body's projected points inside the box < "
                   f"{limits.min_in_box:.0%} (min_in_box)")
    return out + result.get("image_flags", [])


def check_split(name: str, reader, models, limits: Limits, out: Path | None, n_sheet: int = 16,
                sample_size: int = 2000, seed: int = 0, show_progress: bool = True) -> dict:
    """Coverage, disagreement, flags and (with `out`) the contact sheet of one reader's split."""
    s = scan(reader, sample_size, seed, show_progress)
    labels_2d, labels_3d, smpl24, notes = independent_labels(name, reader, s.sample)
    bodies = gt_bodies(models, s.sample)
    comparisons = [compare(r, b, l2, l3, smpl24) for r, b, l2, l3 in zip(s.sample, bodies, labels_2d, labels_3d)
                   if b is not None]
    compared = [r for r, b in zip(s.sample, bodies) if b is not None]
    result = dict(dataset=name, split=reader.split, coverage=s.coverage, rejected=s.rejected,
                  sampled=len(s.sample), disagreement=summarize(comparisons, compared), notes=notes)
    if out is not None and s.sample:
        result["sheet"], result["image_flags"] = write_sheet(out / f"{name}-{reader.split}.png", reader.root, models,
                                                             s.sample, labels_2d, labels_3d, smpl24, n_sheet, seed)
    result["flags"] = flags(result, limits)
    result["limits"] = dataclasses.asdict(limits)
    return result


# ---- contact sheet -----------------------------------------------------------------------------------
def write_sheet(path: Path, root: Path, models, sample: list[PersonFrame], labels_2d: list, labels_3d: list,
                smpl24: bool, n: int, seed: int) -> tuple[str, list[str]]:
    """Draw n random records of the sample (module doc, item 4) into `path`; returns (path,
    flags of images that do not decode to the size the labels were made on)."""
    import cv2

    from datasets.synthetic.contact_sheet import draw_tile, load_image, save_sheet, tile_grid
    from datasets.record import CROP_HW

    pick = sorted(np.random.default_rng(seed).permutation(len(sample))[:n])
    recs = [sample[i] for i in pick]
    bodies = gt_bodies(models, recs, vertices=True)
    tiles, image_flags = [], []
    for i, rec, body in zip(pick, recs, bodies):
        image = load_image(Path(root), rec)
        title = f"{rec.sequence[-14:]} f{rec.frame} p{rec.person}"
        if image is None or tuple(image.shape[:2]) != tuple(int(v) for v in rec.image_hw):
            got = "undecodable" if image is None else f"{image.shape[0]}x{image.shape[1]}"
            image_flags.append(f"image: {rec.image_path} frame {rec.video_frame} decodes {got}, labels say "
                               f"{int(rec.image_hw[0])}x{int(rec.image_hw[1])}")
            tile = np.full(CROP_HW + (3,), 40, np.uint8)
            cv2.putText(tile, f"{title}: {got}", (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
            continue
        shown = rec if labels_2d[i] is None else rec.replace(keypoints_2d=labels_2d[i])
        mesh = points = None
        if body is not None:
            cmp = compare(rec, body, labels_2d[i], labels_3d[i], smpl24)
            if cmp.projected is not None:
                mesh = (body["vertices"] + cmp.offset, body["faces"], rec.intrinsics)
                points = cmp.projected
            if np.isfinite(cmp.err_2d).any():
                title += f" {np.nanmedian(cmp.err_2d):.1f}px"
            elif cmp.projected is None:
                title += " (body not placed)"
        else:
            title += " (no SMPL)"
        tiles.append(draw_tile(image, shown, title, mesh=mesh, points=points))
    save_sheet(tile_grid(tiles, max(1, math.ceil(math.sqrt(len(tiles))))), path)
    return str(path), image_flags


# ---- all splits ----------------------------------------------------------------------------------------
def run(raw: str | Path, out: str | Path | None, names: list[str] | None = None, n_sheet: int = 16,
        sample_size: int = 2000, seed: int = 0, limits: dict[str, Limits] | None = None,
        show_progress: bool = True, log=print) -> list[dict]:
    """check_split for every (dataset, split) under `raw` (or of `names`); a split whose files
    cannot be read is a result with `failed` set. Writes OUT/check.json and the sheets.
    The bodies are the readers' own (`reader.models`: a synthetic tree's assets, else the
    configured ones, as `make shards` reads them)."""
    from datasets.assets import Assets
    from datasets.reader import AnnotationError, BodyModels, resolve_assets_root
    from datasets.readers import READERS, available

    unknown = sorted(set(names or []) - set(READERS))
    if unknown:
        raise ValueError(f"unknown datasets {unknown}; known: {sorted(READERS)}")
    splits = [(name, split) for name, split in available(raw) if not names or name in names]
    out = Path(out) if out is not None else None
    if out is not None and splits:  # nothing found: nothing written
        out.mkdir(parents=True, exist_ok=True)
    assets = Assets(raw_root=raw)
    shared: dict[Path, BodyModels] = {}  # one set of loaded bodies per assets root
    results = []
    for name, split in splits:
        root = assets.raw(name)
        t0 = time.perf_counter()
        try:
            reader = READERS[name](root, split)
            models = getattr(reader, "models", None)
            if models is None:
                assets_root = resolve_assets_root(root, None)
                models = shared.setdefault(assets_root, BodyModels(assets_root))
            result = check_split(name, reader, models, limits_for(name, split, limits), out, n_sheet, sample_size,
                                 seed, show_progress)
        except (AnnotationError, RecordError, ValueError, OSError, KeyError) as e:
            result = dict(dataset=name, split=split, failed=f"{type(e).__name__}: {e}", flags=[f"FAILED: {e}"])
        result["seconds"] = round(time.perf_counter() - t0, 2)
        log(f"  {name}/{split}: {'FLAGGED' if result['flags'] else 'ok'} ({result['seconds']:.1f} s)")
        results.append(result)
    if out is not None and splits:
        (out / "check.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def table(results: list[dict]) -> str:
    """The printed table: one row per split, then every flag and note."""
    header = ("dataset", "split", "records", "rejected", "smpl", "3d", "2d", "K", "2D px med/p95",
              "(% of box)", "3D mm med/p95", "in box", "result")
    rows = []
    for r in results:
        if "failed" in r:
            rows.append((r["dataset"], r["split"]) + ("",) * (len(header) - 3) + ("FAILED",))
            continue
        cov, d = r["coverage"], r["disagreement"]
        d2, d3, box = d["2d"], d["3d"], d["in_box"]
        rows.append((r["dataset"], r["split"], str(cov["records"]), str(r["rejected"]),
                     *(str(cov[f]) for f in COVERAGE_FIELDS),
                     f"{d2['median']:.1f} / {d2['p95']:.1f}" if d2["pairs"] else "-",
                     f"({100 * d2['median_box']:.1f} / {100 * d2['p95_box']:.1f})" if d2["pairs"] else "",
                     f"{d3['median']:.0f} / {d3['p95']:.0f}" if d3["pairs"] else "-",
                     f"{box['share']:.0%}" if box["share"] is not None else "-",
                     f"FLAGGED ({len(r['flags'])})" if r["flags"] else "ok"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i in (0, 1, len(row) - 1) else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]
    for r in results:
        lines += [f"{r['dataset']}/{r['split']}: FLAG {f}" for f in r["flags"]]
        lines += [f"{r['dataset']}/{r['split']}: note {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    ap = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default=None, help="raw datasets root (default: $RAW or the configured one)")
    ap.add_argument("--out", default="data/check", help="folder of the sheets and check.json (default %(default)s)")
    ap.add_argument("--datasets", nargs="+", default=None, help="only these datasets (default: every present one)")
    ap.add_argument("-n", type=int, default=16, help="frames per contact sheet (default %(default)s)")
    ap.add_argument("--sample", type=int, default=2000,
                    help="records per split compared with their labels, drawn at random (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random sample and sheet (default %(default)s)")
    ap.add_argument("--limit", action="append", default=[], metavar="NAME.FIELD=VALUE",
                    help="override a limit, e.g. 3dpw.px_median=0.05 or mpi_inf_3dhp/train.min_smpl=0.8 "
                         "(fields: see datasets/check.py Limits; 'none' turns one off)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.n < 1 or args.sample < 1:
        ap.error("-n and --sample must be >= 1")
    from datasets.assets import Assets
    from datasets.readers import READERS

    raw = args.raw or os.environ.get("RAW") or str(Assets().raw_root)
    try:
        limits = override_limits(LIMITS, args.limit)
    except ValueError as e:
        ap.error(str(e))
    if unknown := sorted(set(args.datasets or []) - set(READERS)):
        return fail("check-data", ValueError(f"unknown datasets {unknown}; known: {sorted(READERS)}"))
    if not Path(raw).is_dir():
        return fail("check-data", FileNotFoundError(f"{raw}: no such folder (the raw datasets root, RAW=; `make "
                                                    f"synthetic` writes data/synthetic/raw)"))
    print(f"== check-data: {raw} -> {args.out} (sample {args.sample} records per split, {args.n} per sheet)", flush=True)
    t0 = time.perf_counter()
    results = run(raw, args.out, args.datasets, args.n, args.sample, args.seed, limits,
                  show_progress=not args.no_progress)
    if not results:
        return fail("check-data", FileNotFoundError(f"no dataset found under {raw} (make synthetic writes "
                                                    f"data/synthetic/raw)"))
    print(table(results))
    flagged = sum(bool(r["flags"]) for r in results)
    sheets = sum("sheet" in r for r in results)
    print(f"{len(results)} splits, {flagged} flagged; {sheets} contact sheets and check.json in {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
