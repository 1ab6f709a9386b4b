"""The augmentation of the feature cache's views (pipelines/augment.py) against HMR2.0's
source (4D-Humans): the parameters of `hmr2/configs_hydra/experiment/default.yaml` and the
extreme crops of `hmr2/datasets/utils.py`, whose index lists are copied below literally.

HMR2.0's 44 keypoints: OpenPose BODY_25, then SPIN's first 19 ground-truth joints
(`hmr2/datasets/image_dataset.py`: 25 body + 19 extra keypoints, FLIP_KEYPOINT_PERMUTATION =
body_permutation + [25 + i for i in extra_permutation]); each index names a joint through
SPIN's JOINT_NAMES, renamed as tests/conformance/test_joints.py pins them.
"""
import pytest

from datasets.joints import KEYPOINTS_2D, OPENPOSE_25, SPIN_24
from pipelines.augment import (EXTREME_CROP_CHOICES, EXTREME_CROP_PARTS, FULL_BODY, LOWER_BODY, UPPER_BODY,
                               AugmentSettings)

# hmr2/configs_hydra/experiment/default.yaml, DATASETS.CONFIG
DEFAULT_YAML = {"SCALE_FACTOR": 0.3, "ROT_FACTOR": 30, "TRANS_FACTOR": 0.02, "COLOR_SCALE": 0.2, "ROT_AUG_RATE": 0.6,
                "TRANS_AUG_RATE": 0.5, "DO_FLIP": True, "FLIP_AUG_RATE": 0.5, "EXTREME_CROP_AUG_RATE": 0.10,
                "EXTREME_CROP_AUG_LEVEL": 1}
# hmr2/image_dataset.py FLIP_KEYPOINT_PERMUTATION parts
BODY_PERMUTATION = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]
EXTRA_PERMUTATION = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18]
# hmr2/datasets/utils.py: the list each crop_* function zeroes, and its box factor
ZEROED = {
    "hips": (1.1, [10, 11, 13, 14, 19, 20, 21, 22, 23, 24, 25 + 0, 25 + 1, 25 + 4, 25 + 5]),
    "shoulders": (1.2, [3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19, 20, 21, 22, 23, 24]
                  + [25 + i for i in [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15, 16]]),
    "head": (1.3, [3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19, 20, 21, 22, 23, 24]
             + [25 + i for i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16]]),
    "torso": (1.1, [0, 3, 4, 6, 7, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
              + [25 + i for i in [0, 1, 4, 5, 6, 7, 10, 11, 13, 17, 18]]),
    "right_arm": (1.1, [0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
                  + [25 + i for i in [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]),
    "left_arm": (1.1, [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
                 + [25 + i for i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 16, 17, 18]]),
    "legs": (1.1, [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18]
             + [25 + i for i in [6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18]]),
    "right_leg": (1.1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
                  + [25 + i for i in [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]),
    "left_leg": (1.1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 22, 23, 24]
                 + [25 + i for i in [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]]),
}
# full_body / upper_body
FULL_BODY_OPENPOSE = [2, 3, 4, 5, 6, 7, 10, 11, 13, 14]
FULL_BODY_GT = [25 + i for i in [8, 7, 6, 9, 10, 11, 1, 0, 4, 5]]
LOWER_BODY_OPENPOSE = [10, 11, 13, 14]
LOWER_BODY_GT = [25 + i for i in [1, 0, 4, 5]]
UPPER_BODY_OPENPOSE = [0, 1, 15, 16, 17, 18]
UPPER_BODY_GT = [25 + 8, 25 + 9, 25 + 12, 25 + 13, 25 + 17, 25 + 18]
# extreme_cropping_aggressive (level 1) / extreme_cropping (level 0): `if p < bound` chains
AGGRESSIVE_FULL = [(0.2, "crop_to_hips"), (0.3, "crop_to_shoulders"), (0.4, "crop_to_head"),
                   (0.5, "crop_torso_only"), (0.6, "crop_rightarm_only"), (0.7, "crop_leftarm_only"),
                   (0.8, "crop_legs_only"), (0.9, "crop_rightleg_only"), (1.0, "crop_leftleg_only")]
AGGRESSIVE_UPPER = [(0.2, "crop_to_shoulders"), (0.4, "crop_to_head"), (0.6, "crop_torso_only"),
                    (0.8, "crop_rightarm_only"), (1.0, "crop_leftarm_only")]
PLAIN_FULL = [(0.7, "crop_to_hips"), (0.9, "crop_to_shoulders"), (1.0, "crop_to_head")]
PLAIN_UPPER = [(0.9, "crop_to_shoulders"), (1.0, "crop_to_head")]
FUNCTION_PART = {"crop_to_hips": "hips", "crop_to_shoulders": "shoulders", "crop_to_head": "head",
                 "crop_torso_only": "torso", "crop_rightarm_only": "right_arm", "crop_leftarm_only": "left_arm",
                 "crop_legs_only": "legs", "crop_rightleg_only": "right_leg", "crop_leftleg_only": "left_leg"}

HMR2_44 = list(OPENPOSE_25.names) + list(SPIN_24.names[:19])


def _ours(indices) -> set[str]:
    """The KEYPOINTS_2D joints among HMR2.0 keypoint indices."""
    return {HMR2_44[i] for i in indices} & set(KEYPOINTS_2D.names)


def test_the_44_keypoints_are_openpose_then_spins_first_19():
    """HMR2.0's flip permutation swaps exactly the left/right pairs of this layout."""
    flip = BODY_PERMUTATION + [25 + i for i in EXTRA_PERMUTATION]
    for i, j in enumerate(flip):
        a, b = HMR2_44[i], HMR2_44[j]
        assert b == a.replace("left_", "@").replace("right_", "left_").replace("@", "right_"), (a, b)


def test_settings_are_default_yaml():
    s = AugmentSettings()
    assert (s.scale_factor, s.rot_factor, s.trans_factor, s.color_scale, s.rot_rate, s.flip_rate,
            s.extreme_crop_rate, s.extreme_crop_level) == tuple(DEFAULT_YAML[k] for k in (
                "SCALE_FACTOR", "ROT_FACTOR", "TRANS_FACTOR", "COLOR_SCALE", "ROT_AUG_RATE", "FLIP_AUG_RATE",
                "EXTREME_CROP_AUG_RATE", "EXTREME_CROP_AUG_LEVEL"))
    assert DEFAULT_YAML["DO_FLIP"]


@pytest.mark.parametrize("part", sorted(ZEROED))
def test_each_part_keeps_the_joints_hmr2_does_not_zero(part):
    factor, zeroed = ZEROED[part]
    kept = _ours(i for i in range(len(HMR2_44)) if i not in zeroed)
    assert EXTREME_CROP_PARTS[part][0] == factor
    assert set(EXTREME_CROP_PARTS[part][1]) == kept


def test_body_visibility_sets():
    assert set(FULL_BODY) == _ours(FULL_BODY_OPENPOSE) == _ours(FULL_BODY_GT)
    assert set(LOWER_BODY) == _ours(LOWER_BODY_OPENPOSE) == _ours(LOWER_BODY_GT)
    assert set(UPPER_BODY) == _ours(UPPER_BODY_OPENPOSE) | _ours(UPPER_BODY_GT)


def test_part_choices():
    for key, source in {(1, "full"): AGGRESSIVE_FULL, (1, "upper"): AGGRESSIVE_UPPER, (0, "full"): PLAIN_FULL,
                        (0, "upper"): PLAIN_UPPER}.items():
        assert EXTREME_CROP_CHOICES[key] == tuple((b, FUNCTION_PART[f]) for b, f in source)
