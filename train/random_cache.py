"""A feature cache of random feature maps with self-consistent targets, in exactly the
layout `pipelines/features.py` writes (encoder.json, tars of `<key>.enc`,
`<key>.v<v>.f16`, `<key>.v<v>.npz`, `<key>.v<v>.tgt`, index.json, manifest.parquet) — for the
training tests and the loader benchmark, which need shards without running an encoder.

Targets of a sample: SMPL pose ~ N(0, 0.2) rad per joint, betas ~ N(0, 0.5), a crop camera
(s, tx, ty) near the mean, a person box in an IMAGE_HW original image seen by CLIFF's camera
(focal = the image diagonal, principal point at the centre). With a body model the SMPL
translation is the crop camera's in that camera (`model.geometry.cam_crop_to_full`),
joints_3d the mesh's KEYPOINTS_2D joints moved by it, and keypoints_2d their projection into
the original image carried into the crop: what the model's full-image reprojection predicts
for the same parameters (train/losses.py), so a decoder can fit them. Without one, joints and
keypoints are random. Every record is marked synthetic.

Feature maps are random too, but each is drawn from a generator seeded by its sample's key
and view (`feature_map`), so a test can tell from a map alone which sample and view it
belongs to: a loader that pairs one view's map with another view's targets (or one
sample's map with another's) makes batches whose maps differ from `feature_map(key, view)`
of their own targets.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from datasets.reader import centred_intrinsics
from datasets.record import CROP_HW, NUM_KEYPOINTS, PersonFrame, make_key
from model.geometry import (affine_intrinsics, apply_affine, cam_crop_to_full, crop_affine, expand_to_aspect,
                            project)
from pipelines.features import (ENCODER_EXT, FEATURE_DTYPE, FEATURE_EXT, MANIFEST_SCHEMA, OK, RECORD_EXT, SPEC,
                                TARGETS_EXT, targets_spec, view_ext)
from pipelines.shard_index import ShardWriter, write_index
from pipelines.shard_reader import MANIFEST, shard_name

ENCODER_ID = "random-features"
IMAGE_HW = (480, 640)  # (height, width) of the original images


def feature_map(key: str, view: int, shape: tuple[int, int, int]) -> np.ndarray:
    """(C, H, W) float16 map of view `view` of sample `key`: N(0, 1) values from a generator
    seeded by (key, view), the same every time it is asked for."""
    return np.random.default_rng([zlib.crc32(key.encode()), view]).standard_normal(shape).astype(FEATURE_DTYPE)


def write_cache_spec(cache: Path, shape: tuple[int, int, int]) -> dict:
    spec = {"encoder_id": ENCODER_ID, "encoder": {"encoder": "random", "feature_shape": list(shape)},
            "storage": {"member": FEATURE_EXT, "dtype": FEATURE_DTYPE, "shape": list(shape), "order": "C"},
            "views": None, "synthetic": True, "targets": targets_spec()}
    cache.mkdir(parents=True, exist_ok=True)
    (cache / SPEC).write_text(json.dumps(spec, indent=1) + "\n")
    return spec


def random_records(dataset: str, split: str, n: int, rng: np.random.Generator, body_model=None,
                   has_smpl_rate: float = 1.0, first: int = 0,
                   genders: tuple[str, ...] = ("neutral",)) -> list[PersonFrame]:
    """`n` records of one dataset split (see the module doc for the targets); frame k has
    gender `genders[k % len(genders)]`."""
    pose = (0.2 * rng.standard_normal((n, 24, 3))).astype(np.float32)
    pose[:, 0] += np.array([np.pi, 0, 0], np.float32)  # upright in the OpenCV camera (y down)
    betas = (0.5 * rng.standard_normal((n, 10))).astype(np.float32)
    cam = np.stack([0.9 + 0.1 * rng.standard_normal(n), 0.05 * rng.standard_normal(n),
                    0.2 + 0.05 * rng.standard_normal(n)], 1).astype(np.float32)
    h, w = IMAGE_HW
    centers = np.stack([w / 2 + 0.15 * w * rng.uniform(-1, 1, n), h / 2 + 0.15 * h * rng.uniform(-1, 1, n)], 1)
    sizes = np.stack([expand_to_aspect(np.array([side, side])) for side in h * rng.uniform(0.3, 0.6, n)])
    K = centred_intrinsics(float(np.hypot(h, w)), IMAGE_HW)  # CLIFF's camera of an uncalibrated image
    affines = [crop_affine(c, b) for c, b in zip(centers, sizes)]
    if body_model is not None:
        with torch.no_grad():
            out = body_model(betas=torch.from_numpy(betas), body_pose=torch.from_numpy(pose[:, 1:]),
                             global_orient=torch.from_numpy(pose[:, :1]))
            transl = cam_crop_to_full(torch.from_numpy(cam).double(), torch.from_numpy(centers),
                                      torch.from_numpy(sizes), torch.from_numpy(K)[None])  # (n, 3) camera frame
            kp3d = out.keypoints.double() + transl[:, None]  # (n, 24, 3) camera frame
            full = project(kp3d, torch.from_numpy(K)).numpy()  # (n, 24, 2) original pixels
        kp2d = np.stack([apply_affine(full[i], affines[i]) for i in range(n)])
        conf = out.keypoints_valid.numpy().astype(np.float32)[None].repeat(n, 0)
        kp3d, transl = kp3d.numpy(), transl.numpy()
    else:
        kp3d = rng.standard_normal((n, NUM_KEYPOINTS, 3)).astype(np.float32) + [0, 0, 10]
        kp2d = (rng.uniform(0, 1, (n, NUM_KEYPOINTS, 2)) * [CROP_HW[1], CROP_HW[0]]).astype(np.float32)
        conf = np.ones((n, NUM_KEYPOINTS), np.float32)
        transl = None
    has = rng.uniform(size=n) < has_smpl_rate
    frames = []
    for i in range(n):
        k = first + i
        frames.append(PersonFrame(
            key=make_key(dataset, split, "seq", k, 0), dataset=dataset, split=split, sequence="seq", frame=k,
            person=0, image_path=f"seq/{k:06d}.jpg", image_hw=np.array(IMAGE_HW, np.int64),
            box_center=centers[i].astype(np.float32), box_size=sizes[i].astype(np.float32), box_expand=1.2,
            smpl_pose=pose[i], betas=betas[i], gender=genders[k % len(genders)],
            smpl_transl=np.zeros(3, np.float32) if transl is None else transl[i].astype(np.float32),
            joints_3d=np.concatenate([kp3d[i], conf[i, :, None] * has[i]], 1),
            keypoints_2d=np.concatenate([kp2d[i], conf[i, :, None]], 1),
            has_smpl=bool(has[i]), has_transl=bool(transl is not None and has[i]), synthetic=True,
            crop_affine=affines[i].astype(np.float32),
            intrinsics=affine_intrinsics(K, affines[i]).astype(np.float32)))
    return frames


def write_split(cache: Path, dataset: str, split: str, shards: int, per_shard: int, shape: tuple[int, int, int],
                views: int = 1, seed: int = 0, body_model=None, has_smpl_rate: float = 1.0,
                genders: tuple[str, ...] = ("neutral",), keep: Callable[[PersonFrame], bool] | None = None) -> int:
    """Write `shards` tars of `per_shard` samples (each with `views` views), the index and the
    manifest of `cache/<dataset>/<split>`; returns the number of samples. With `keep`, only
    the records it keeps are written (the others are drawn all the same, so a split written
    with and without `keep` holds the same records and maps where both hold a key)."""
    rng = np.random.default_rng([seed, len(dataset), shards])
    out = cache / dataset / split
    out.mkdir(parents=True, exist_ok=True)
    rows, entries = [], {}
    for s in range(shards):
        name = shard_name(dataset, split, s)
        frames = random_records(dataset, split, per_shard, rng, body_model, has_smpl_rate, first=s * per_shard,
                                genders=genders)
        frames = [fr for fr in frames if keep is None or keep(fr)]
        with open(out / name, "wb") as f:
            tar = ShardWriter(f)
            for fr in frames:
                members = [(f"{fr.key}.{ENCODER_EXT}", ENCODER_ID.encode())]
                for v in range(views):
                    members.append((f"{fr.key}.{view_ext(v, FEATURE_EXT)}", feature_map(fr.key, v, shape).tobytes()))
                    view = fr.replace(view=v)
                    members.append((f"{fr.key}.{view_ext(v, RECORD_EXT)}", view.to_npz_bytes()))
                    members.append((f"{fr.key}.{view_ext(v, TARGETS_EXT)}", view.to_targets_bytes()))
                for m, data in members:
                    tar.add(m, data)
                rows.append(dict(key=fr.key, shard=name, image_shard=name, views=views, status=OK, reason=None))
            entries[name] = tar.close()
    write_index(str(out), entries)
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), out / MANIFEST)
    return len(rows)
