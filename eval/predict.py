"""Single-image inference: encoder + decoder from a run, one person box -> overlay and mesh.

    python -m eval.predict IMAGE --box x,y,w,h --run runs/def-m --out out.png
        [--ckpt PATH] [--features DIR/<cache>] [--encoder-ckpt PATH] [--assets DIR] [--device auto]

- The box is the tight person box in original pixels (x, y = top-left corner, w, h). It
  becomes the readers' person box (`model.geometry.square_box`, as `box_from_keypoints`
  makes it from the keypoints' tight box: square, SPIN's 1.2 x the larger side), then the
  crop stage's box (`pipelines.crop.crop_box`: its `DEFAULT_EXPAND`, widened to 4:3), and
  is warped to the 256x192 crop with `model.geometry.crop_affine`: the affine the shards
  hold for the same person.
- The encoder is the one the run's features were made with: `encoder.json` of the run's
  feature cache (the checkpoint's `meta.features`, or `--features`) names it and its
  weights — random weights by seed (the synthetic demo), or a checkpoint file whose
  sha256 must match (`--encoder-ckpt`, default the assets' `vitpose_h`).
- Writes OUT (the shaded mesh over the original image, mapped back through the crop
  affine), OUT with suffix `.npz` (vertices, camera, parameters, affine, faces) and `.obj`
  (the mesh in the crop camera's frame: OpenCV axes, metres).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from datasets.assets import Assets, assets_for_data
from datasets.errors import USER_ERRORS, fail
from eval.evaluate import EvalError, _device, default_checkpoint, load_run, read_checkpoint



def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise EvalError(f"--box {text!r}: expected x,y,w,h (four numbers, original pixels)") from None
    if w <= 0 or h <= 0:
        raise EvalError(f"--box {text!r}: width and height must be positive")
    return x, y, w, h


def crop_for_box(image: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(crop (256, 192, 3) uint8 RGB, affine (2, 3) original -> crop) for a tight box."""
    from model.geometry import crop_affine, square_box
    from pipelines.crop import crop_box, warp

    x, y, w, h = box
    A = crop_affine(*crop_box(*square_box((x, y), (x + w, y + h))))
    return warp(image, A), A


def load_run_encoder(spec: dict, encoder_ckpt: Path | None, assets: Assets):
    """The frozen encoder a feature cache's `encoder.json` describes (weights checked)."""
    from model.vitpose import file_sha256, load_encoder

    enc = spec.get("encoder") or {}
    name, weights = enc.get("encoder"), enc.get("weights") or {}
    if not name:
        raise EvalError("encoder.json names no encoder")
    if "random_seed" in weights:
        return load_encoder(name, None, int(weights["random_seed"]))
    path = encoder_ckpt or assets.require("vitpose_h")
    sha = file_sha256(path)
    if sha != weights.get("sha256"):
        raise EvalError(f"encoder checkpoint {path} (sha256 {sha[:12]}…) is not the one the run's features were made "
                        f"with ({weights.get('file')}, sha256 {str(weights.get('sha256'))[:12]}…); pass --encoder-ckpt")
    return load_encoder(name, path)


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("# DeforHMR prediction: crop-camera frame (OpenCV axes), metres\n")
        f.writelines(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices)
        f.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces)


@torch.no_grad()
def predict(image_path: Path, box, run: Path, out: Path, ckpt: Path | None = None, features: str | None = None,
            encoder_ckpt: Path | None = None, assets: str | None = None, device: str = "auto") -> dict[str, Path]:
    """`assets`: the assets root (default: the stand-ins of a synthetic cache, else the configured ones)."""
    import cv2

    from datasets.image_file import read_image
    from eval import figures as F
    from model.vitpose import normalize
    from pipelines.features import read_cache_spec, shard_sets
    from pipelines.shard_reader import join, read_split_marker

    if not Path(image_path).is_file():
        raise EvalError(f"{image_path}: no such image")
    dev = _device(device)
    ckpt = ckpt or default_checkpoint(run)
    saved = read_checkpoint(ckpt)
    cache = features or (saved.get("meta") or {}).get("features")
    if not cache:
        raise EvalError(f"{ckpt}: the checkpoint does not name its feature cache (meta.features); pass --features")
    try:
        spec = read_cache_spec(cache)
    except FileNotFoundError as e:
        raise EvalError(f"{e}: needed to know which encoder the run's features came from") from None
    splits = [join(cache, *s) for s in shard_sets(cache)]
    found, where = assets_for_data(assets, {d: read_split_marker(d) for d in splits})
    if where:
        print(f"predict: {where}")
    loaded = load_run(run, ckpt, found, dev)
    encoder = load_run_encoder(spec, encoder_ckpt, found).to(dev)
    shape = [loaded.model.cfg.context_dim, *loaded.model.cfg.feature_hw]
    if list(spec["storage"]["shape"]) != shape:
        raise EvalError(f"{cache}: encoder features {spec['storage']['shape']}, the model reads {shape}")
    bgr = read_image(image_path)  # as stored, EXIF orientation ignored, as the shards' crops
    if bgr is None:
        raise EvalError(f"{image_path}: not a readable image")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    crop, A = crop_for_box(image, box)
    feats = encoder(normalize(torch.from_numpy(crop[None]).to(dev)))  # (1, C, H, W)
    pred = loaded.model(feats)
    vertices = pred.vertices[0].float().cpu().numpy()
    cam_t = pred.cam_t[0].float().cpu().numpy()
    faces = loaded.model.body_model.faces
    overlay = F.overlay_original(image, vertices, cam_t, faces, A)
    side = F.side_view(vertices + cam_t, faces, size=image.shape[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate([overlay, side], 1), cv2.COLOR_RGB2BGR))
    npz, obj = out.with_suffix(".npz"), out.with_suffix(".obj")
    np.savez(npz, vertices=vertices, vertices_camera=vertices + cam_t, cam=pred.cam[0].float().cpu().numpy(),
             cam_t=cam_t, rotmats=pred.rotmats[0].float().cpu().numpy(), betas=pred.betas[0].float().cpu().numpy(),
             crop_affine=A, box=np.asarray(box), K_original=F.original_intrinsics(A), faces=faces,
             synthetic=bool(loaded.meta.get("synthetic")) or bool(spec.get("synthetic")))
    write_obj(obj, vertices + cam_t, faces)
    return {"overlay": out, "npz": npz, "obj": obj}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DeforHMR on one image and person box -> overlay, .npz and .obj.")
    ap.add_argument("image", type=Path)
    ap.add_argument("--box", required=True, help="tight person box x,y,w,h in original pixels")
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="overlay PNG; .npz and .obj are written beside it")
    ap.add_argument("--ckpt", type=Path, default=None, help="default RUN/checkpoints/best.ckpt, else last.ckpt")
    ap.add_argument("--features", default=None, help="the run's feature cache (default: the checkpoint's meta.features)")
    ap.add_argument("--encoder-ckpt", type=Path, default=None, help="encoder weights (default: the assets' vitpose_h)")
    ap.add_argument("--assets", default=None, help="assets root (default: a synthetic cache's own stand-ins, else "
                    "datasets/assets.yaml / $ASSETS)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        paths = predict(args.image, parse_box(args.box), args.run, args.out, args.ckpt, args.features,
                        args.encoder_ckpt, args.assets, args.device)
    except USER_ERRORS as e:
        return fail("predict", e)
    print("predict: wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
