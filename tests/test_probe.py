"""eval.probe: the 2D probe reads the pose from exact keypoints and not from noise."""
import numpy as np
import pytest

from model.body_model import BodyModel
from train.random_cache import write_cache_spec, write_split

SHAPE = (8, 4, 3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, synthetic_assets):
    a = synthetic_assets
    body = BodyModel(a.body_model_dir, "neutral", h36m_regressor=a.path("h36m_regressor"))
    root = tmp_path_factory.mktemp("probe") / "tiny"
    write_cache_spec(root, SHAPE)
    write_split(root, "aaa", "train", 3, 100, SHAPE, body_model=body)
    write_split(root, "aaa", "test", 1, 40, SHAPE, body_model=body, seed=1)
    return root


def test_probes_read_what_the_inputs_hold(cache):
    from eval.probe import main, probe

    rows = {r["probe"]: r for r in probe(str(cache), ["aaa/test"], noise=[0.0, 400.0], alpha=1000.0, alpha_2d=0.1)}
    mean = rows["mean pose (training mean)"]["pa_mpjpe_mm"]
    assert all(r["n"] == 40 and np.isfinite(r["pa_mpjpe_mm"]) for r in rows.values())
    assert rows["2D keypoints, sigma 0 px (ridge)"]["pa_mpjpe_mm"] < 0.75 * mean  # exact 2D holds the pose (0.63 measured)
    assert rows["2D keypoints, sigma 400 px (ridge)"]["pa_mpjpe_mm"] > 0.8 * mean  # noise holds none
    assert main(["--cache", str(cache), "--test", "aaa/test"]) == 0
    with pytest.raises(FileNotFoundError, match="bbb"):
        probe(str(cache), ["bbb/test"], [0.0], 1.0, 0.1)
