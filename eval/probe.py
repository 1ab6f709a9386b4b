"""Linear probes: how much 3D pose a linear map reads from a feature cache, and from 2D keypoints.

Launch:
    python -m eval.probe --cache data/demo/features/tiny --test 3dpw/test rich/test 3dpw/val
    python -m eval.probe --cache data/demo/features/tiny --noise 0 6 12    # 2D keypoints with noise

A diagnostic for a decoder that does not beat the mean pose. Ridge regressions are fitted
on every training split of the cache (samples with 3D joints) and scored on each test
split by PA-MPJPE (mm, `eval.metrics.pa_mpjpe`, over the joints with 3D labels), next to
the training-mean pose:
- `features`: the flattened (C x H x W) feature map -> the 3D joints. It is a linear
  readout that knows each value's position, so it reads where a joint is only as far as
  the features say it linearly.
- `2D (sigma px)`: the ground-truth 2D keypoints (crop pixels) -> the 3D joints, with
  Gaussian noise of sigma px per axis on both the training and the test keypoints (the
  probe learns the noise it is tested with).
If the 2D probe beats the mean pose and the feature probe does not, the features, not the
decoder, lack the pose.

It also prints how well one cell's C features say where the cell is (`cell_position_r2`:
a least-squares map from a cell's features to its row and column, fitted on half of the
training samples, R^2 on the other half). The decoders read positions from the features
(DeforHMR's relative position encoding only biases the attention logits), so a cache
near R^2 0 leaves them guessing where a joint is; the demo encoder's MAE start
(train/pretrain_encoder.py `--pos-init`) took its column R^2 from 0.16 to 0.82 (row: 0.51 to 0.72).

The target is the KEYPOINTS_2D joints in metres relative to the mid-hip (joints with
confidence in at least half of the training samples that have 3D; samples missing one
of them are left out of the fit). Ridge strength: `--alpha` (features, in units of the
features as stored; 1000 was the best of 10, 100, 1000 on the demo cache) and
`--alpha-2d` (2D, on keypoints in units of the crop height).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from datasets.errors import USER_ERRORS, fail
from datasets.joints import KEYPOINTS_2D
from datasets.record import CROP_HW
from eval.metrics import pa_mpjpe
from pipelines.features import iter_feature_shard, read_cache_spec
from pipelines.shard_reader import join, list_shards

HIPS = KEYPOINTS_2D.indices(["left_hip", "right_hip"])


class ProbeData:
    """Flattened view-0 feature maps, 2D keypoints and 3D joints of some splits of a cache."""

    def __init__(self, cache: str, splits: list[tuple[str, str]]):
        spec = read_cache_spec(cache)
        feats, kp2d, j3d = [], [], []
        for dataset, split in splits:
            for shard in list_shards(cache, dataset, split):
                for _, views in iter_feature_shard(shard, spec):
                    f, rec = views[0]
                    feats.append(np.asarray(f, np.float32).reshape(-1))
                    kp2d.append(rec.keypoints_2d)
                    j3d.append(rec.joints_3d)
        if not feats:
            raise FileNotFoundError(f"{cache}: no feature shards for {splits}")
        self.shape = tuple(spec["storage"]["shape"])  # (C, H, W)
        self.features = np.stack(feats)  # (N, C*H*W)
        self.keypoints_2d = np.stack(kp2d)  # (N, J, 3) crop pixels + confidence
        self.joints_3d = np.stack(j3d)  # (N, J, 4) metres + confidence

    def relative(self, joints: np.ndarray) -> np.ndarray:
        """(N, len(joints), 3) metres relative to the mid-hip."""
        j = self.joints_3d[:, :, :3]
        return (j - j[:, HIPS].mean(1, keepdims=True))[:, joints]


def ridge(x: np.ndarray, y: np.ndarray, alpha: float):
    """The ridge map x -> y (centred, intercept unpenalised) as a function of new x."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return lambda q: (q - mx) @ w + my


def cell_position_r2(features: np.ndarray, shape: tuple[int, int, int], chunk: int = 256) -> tuple[float, float]:
    """R^2 (row, column) of a linear map from one cell's C features to its grid position:
    (N, C*H*W) flattened maps, fitted on the first half of the samples, scored on the rest
    (normal equations, `chunk` samples at a time, so memory does not grow with N)."""
    c, h, w = shape
    n, half = len(features), len(features) // 2
    if n < 2:
        raise ValueError(f"cell_position_r2: {n} sample(s), need 2 or more (one to fit, one to score)")
    cells = features.reshape(n, c, h * w)
    grid = np.stack(np.divmod(np.arange(h * w), w), 1).astype(np.float64)  # (HW, 2) row, column

    def design(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:  # samples lo:hi -> (cells, C + 1), (cells, 2)
        x = cells[lo:hi].transpose(0, 2, 1).reshape(-1, c).astype(np.float64)
        return np.concatenate([x, np.ones((len(x), 1))], 1), np.tile(grid, (hi - lo, 1))

    xtx, xty = np.zeros((c + 1, c + 1)), np.zeros((c + 1, 2))
    for lo in range(0, half, chunk):
        x, y = design(lo, min(lo + chunk, half))
        xtx += x.T @ x
        xty += x.T @ y
    coef = np.linalg.lstsq(xtx, xty, rcond=None)[0]  # (C + 1, 2)
    sse = np.zeros(2)
    for lo in range(half, n, chunk):
        x, y = design(lo, min(lo + chunk, n))
        sse += ((x @ coef - y) ** 2).sum(0)
    r2 = 1.0 - sse / ((n - half) * h * w) / grid.var(0)  # every map has the same grid: its variance
    return float(r2[0]), float(r2[1])


def probe(cache: str, tests: list[str], noise: list[float], alpha: float, alpha_2d: float,
          seed: int = 0) -> tuple[list[dict], tuple[float, float]]:
    """(rows {split, probe, pa_mpjpe_mm, n} for the mean pose and each probe on each test
    split, `cell_position_r2` (row, column) of the training maps)."""
    read_cache_spec(cache)  # a folder that is no feature cache: said as such, before listing it
    names = [path.rsplit("/", 1)[0] for path in _train_splits(cache)]
    train = ProbeData(cache, [(d, "train") for d in names])
    conf = train.joints_3d[:, :, 3] > 0
    labelled = conf.any(1)
    joints = np.flatnonzero(conf[labelled].mean(0) >= 0.5)
    fit = labelled & conf[:, joints].all(1) & (conf[:, HIPS].all(1))
    y = train.relative(joints)[fit].reshape(fit.sum(), -1)
    mean_pose = y.mean(0)
    by_features = ridge(train.features[fit], y, alpha)
    rng = np.random.default_rng(seed)

    def flat_2d(data: ProbeData, sigma: float) -> np.ndarray:
        xy = data.keypoints_2d[:, :, :2] + rng.normal(0.0, sigma, data.keypoints_2d[:, :, :2].shape)
        return xy.reshape(len(xy), -1) / CROP_HW[0]

    by_2d = {s: ridge(flat_2d(train, s)[fit], y, alpha_2d) for s in noise}
    rows = []
    for split in tests:
        dataset, sp = split.split("/")
        test = ProbeData(cache, [(dataset, sp)])
        tconf = test.joints_3d[:, joints, 3] > 0
        gt = test.relative(joints)
        n = len(gt)

        def score(pred_flat: np.ndarray) -> float:
            pred = pred_flat.reshape(n, len(joints), 3)
            errs = [float(pa_mpjpe(pred[i:i + 1, m], gt[i:i + 1, m])[0]) for i, m in enumerate(tconf) if m.sum() >= 3]
            return 1000.0 * float(np.mean(errs))

        rows.append(dict(split=split, probe="mean pose (training mean)", pa_mpjpe_mm=score(np.tile(mean_pose, (n, 1))), n=n))
        rows.append(dict(split=split, probe="features (ridge)", pa_mpjpe_mm=score(by_features(test.features)), n=n))
        for s in noise:
            rows.append(dict(split=split, probe=f"2D keypoints, sigma {s:g} px (ridge)",
                             pa_mpjpe_mm=score(by_2d[s](flat_2d(test, s))), n=n))
    return rows, cell_position_r2(train.features, train.shape)


def _train_splits(cache: str) -> list[str]:
    """`<dataset>/train` of every dataset of the cache that has training shards."""
    import pyarrow.fs as pafs

    from pipelines.shard_reader import resolve

    fs, root = resolve(cache)
    out = []
    for info in fs.get_file_info(pafs.FileSelector(root)):
        if info.type == pafs.FileType.Directory and list_shards(cache, info.base_name, "train"):
            out.append(f"{info.base_name}/train")
    if not out:
        raise FileNotFoundError(f"{join(cache, '*', 'train')}: no training feature shards")
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="feature cache folder (FEATURES/<encoder>)")
    ap.add_argument("--test", nargs="+", default=["3dpw/test", "rich/test"], help="<dataset>/<split> to score")
    ap.add_argument("--noise", nargs="+", type=float, default=[0.0], help="2D keypoint noise, px per axis")
    ap.add_argument("--alpha", type=float, default=1000.0, help="ridge strength of the feature probe")
    ap.add_argument("--alpha-2d", type=float, default=0.1, help="ridge strength of the 2D probe")
    args = ap.parse_args(argv)
    try:
        rows, (r2_row, r2_col) = probe(args.cache, args.test, args.noise, args.alpha, args.alpha_2d)
    except USER_ERRORS as e:
        return fail("probe", e)
    print("| split | probe | PA-MPJPE (mm) | n |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['split']} | {r['probe']} | {r['pa_mpjpe_mm']:.1f} | {r['n']} |")
    print(f"\nWhere a cell is, from its own features (linear; half the training maps fit, half score): "
          f"R^2 {r2_row:.2f} for the row, {r2_col:.2f} for the column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
