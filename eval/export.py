"""Export a protocol's exact test set, so another method can be run on precisely these people.

    python -m eval.export --protocol 3dpw|rich|emdb|3dhp --out FILE [--shards data/shards]
    make eval-export PROTOCOL=3dpw OUT=FILE [SHARDS=data/shards]

The samples are those `make eval` scores: every ok sample of the protocol's split in the
image shards (their manifest's ok rows, checked). Writes `FILE.parquet` (one row per
sample) and `FILE.json` (the protocol — what it scores, the joint order a predictions file
uses, its source — and the same rows). Per sample (original image pixels, (0, 0) the centre
of the top-left pixel, `datasets.record`):
- `key`, `dataset`, `split`, `sequence`, `frame`, `person`, `image_path` (relative to the
  dataset's raw root), `video_frame` (-1: an image file), `image_h`, `image_w`;
- `box_tight` (x0, y0, x1, y1): the tight person box the crop was grown from (the visible
  2D keypoints' box, or the dataset's own box, e.g. EMDB `bboxes`); NaN where the source
  gives only an expanded box (RICH) or the shards predate it;
- `box_center` (x, y), `box_size` (w, h): the 256x192 crop's box; `box_expand` the total
  expansion of the tight box (SPIN's 1.2 x the crop stage's);
- `crop_affine` (2 x 3, row-major): original pixels -> crop pixels (`cv2.warpAffine(image,
  A, (192, 256))` gives the crop the evaluated models saw);
- `intrinsics` (3 x 3, row-major) of the original image, NaN when the dataset has none.
A predictions file is then keyed by `key` (docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from datasets.errors import USER_ERRORS, InputError, fail
from datasets.record import CROP_HW, PersonFrame
from eval.protocols import PROTOCOLS, Protocol


class ExportError(InputError, RuntimeError):
    """The protocol's samples cannot be listed (no or incomplete shards)."""


def sample_row(rec: PersonFrame) -> dict:
    """The export row of a cropped record (see the module doc)."""
    from model.geometry import affine_intrinsics, invert_affine

    A = np.asarray(rec.crop_affine, np.float64)
    K = None if rec.intrinsics is None else affine_intrinsics(np.asarray(rec.intrinsics, np.float64), invert_affine(A))
    tight = np.full(4, np.nan) if rec.box_tight is None else np.asarray(rec.box_tight, np.float64)
    return {
        "key": rec.key, "dataset": rec.dataset, "split": rec.split, "sequence": rec.sequence, "frame": int(rec.frame),
        "person": int(rec.person), "image_path": rec.image_path, "video_frame": int(rec.video_frame),
        "image_h": int(rec.image_hw[0]), "image_w": int(rec.image_hw[1]),
        "box_tight": tight.tolist(), "box_center": np.asarray(rec.box_center, np.float64).tolist(),
        "box_size": np.asarray(rec.box_size, np.float64).tolist(), "box_expand": float(rec.box_expand),
        "crop_affine": A.reshape(-1).tolist(),
        "intrinsics": (np.full(9, np.nan) if K is None else K.reshape(-1)).tolist(),
    }


def protocol_header(protocol: Protocol, shards_root: str, n: int, synthetic: bool) -> dict:
    """What a predictions file for this protocol must hold, and where the protocol comes from."""
    return {
        "protocol": protocol.name, "dataset": protocol.dataset, "split": protocol.split, "samples": n,
        "shards": str(shards_root), "synthetic": synthetic, "crop_hw": list(CROP_HW),
        "metrics": list(protocol.metrics), "units": {"pa_mpjpe": "mm", "mpjpe": "mm", "pve": "mm", "pck": "%", "auc": "%"},
        "predictions": {
            "format": "docs/evaluation.md: npz or parquet with 'key' and one of the accepted inputs",
            "accepted": list(protocol.inputs),
            "joints_order": list(protocol.eval_joints) if "joints" in protocol.inputs else None,
            "root_joints": list(protocol.root_joints),
        },
        "source": protocol.source,
    }


def export(protocol: Protocol, shards_root: str, out: str | Path) -> tuple[Path, Path, int]:
    """Write OUT.parquet and OUT.json; returns their paths and the number of samples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eval.evaluate import EvalError, split_records

    try:
        records = split_records(shards_root, protocol)
    except EvalError as e:
        raise ExportError(str(e)) from None
    rows = [sample_row(r) for r in records]
    synthetic = any(r.synthetic for r in records)
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".parquet", ".json") else out
    parquet, js = stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".json")
    stem.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    header = protocol_header(protocol, shards_root, len(rows), synthetic)
    js.write_text(json.dumps({**header, "sample_rows": rows}, indent=1, allow_nan=True) + "\n")
    return parquet, js, len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a protocol's exact test set (keys, images, boxes, crops, "
                                             "intrinsics) as parquet + JSON.")
    ap.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    ap.add_argument("--out", required=True, help="output path without suffix (writes OUT.parquet and OUT.json)")
    ap.add_argument("--shards", default="data/shards", help="image shards root (default data/shards)")
    args = ap.parse_args(argv)
    protocol = PROTOCOLS[args.protocol]
    print(f"== export: {protocol.name} ({protocol.dataset}/{protocol.split}) from {args.shards}")
    try:
        parquet, js, n = export(protocol, args.shards, args.out)
    except USER_ERRORS as e:
        return fail("export", e)
    print(f"== export done: {n} samples -> {parquet}, {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
