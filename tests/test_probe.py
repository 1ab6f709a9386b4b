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

    rows, position = probe(str(cache), ["aaa/test"], noise=[0.0, 400.0], alpha=1000.0, alpha_2d=0.1)
    rows = {r["probe"]: r for r in rows}
    assert len(position) == 2 and all(np.isfinite(position))
    mean = rows["mean pose (training mean)"]["pa_mpjpe_mm"]
    assert all(r["n"] == 40 and np.isfinite(r["pa_mpjpe_mm"]) for r in rows.values())
    assert rows["2D keypoints, sigma 0 px (ridge)"]["pa_mpjpe_mm"] < 0.75 * mean  # exact 2D holds the pose (0.63 measured)
    assert rows["2D keypoints, sigma 400 px (ridge)"]["pa_mpjpe_mm"] > 0.8 * mean  # noise holds none
    assert main(["--cache", str(cache), "--test", "aaa/test"]) == 0
    with pytest.raises(FileNotFoundError, match="bbb"):
        probe(str(cache), ["bbb/test"], [0.0], 1.0, 0.1)


def test_cell_position_r2_is_one_for_coded_positions_and_near_zero_for_noise():
    from eval.probe import cell_position_r2

    c, h, w = 4, 5, 3
    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(h * w), w)
    coded = np.zeros((20, c, h * w))
    coded[:, 0], coded[:, 1] = rows, cols  # channels 0, 1: the cell's row and column
    coded[:, 2:] = rng.normal(size=(20, c - 2, h * w))
    assert cell_position_r2(coded.reshape(20, -1), (c, h, w)) == pytest.approx((1.0, 1.0))
    assert cell_position_r2(coded.reshape(20, -1), (c, h, w), chunk=3) == pytest.approx((1.0, 1.0))  # chunked sums
    noise = rng.normal(size=(200, c * h * w))
    assert max(cell_position_r2(noise, (c, h, w))) < 0.05
    with pytest.raises(ValueError, match="need 2"):
        cell_position_r2(noise[:1], (c, h, w))
