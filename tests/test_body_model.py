"""The SMPL loader and the synthetic SMPL-family stand-ins: files, topology, a body that
looks and moves like a person, and the SMPL-X path used for RICH."""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from datasets import safe_pickle
from datasets.assets import Assets, is_synthetic
from datasets.joints import H36M_17, KEYPOINTS_2D, SMPL_24
from datasets.synthetic.body import REST_JOINTS, write_synthetic_assets
from model.body_model import (SMPL, SMPLX, SMPLX_JOINT_NAMES, BodyModel, ModelFileError, SMPLXModel,
                              load_h36m_regressor, load_mean_params, load_smpl_arrays, load_smplx2smpl)

GENDERS = ("neutral", "male", "female")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "assets"
    written = write_synthetic_assets(root, seed=0)
    return Assets(root=root), written


@pytest.fixture(scope="module")
def neutral(assets):
    a, _ = assets
    return BodyModel(a.body_model_dir, "neutral", h36m_regressor=a.path("h36m_regressor"))


def run(model, B=1, betas=None, pose=None, orient=None, transl=None):
    betas = torch.zeros(B, 10) if betas is None else betas
    pose = torch.zeros(B, 69) if pose is None else pose
    orient = torch.zeros(B, 3) if orient is None else orient
    return model(betas, pose, orient, transl)


def pose_with(**rotations) -> torch.Tensor:
    """(1, 69) axis-angle body pose with the named joints rotated."""
    pose = torch.zeros(1, 23, 3)
    for name, aa in rotations.items():
        pose[0, SMPL_24.index[name] - 1] = torch.tensor(aa, dtype=torch.float32)
    return pose.reshape(1, 69)


def test_files_sit_where_assets_yaml_says_and_say_synthetic(assets):
    a, written = assets
    assert set(written) == {"smpl_neutral", "smpl_male", "smpl_female", "h36m_regressor", "mean_params",
                            "smplx_male", "smplx_female", "smplx2smpl"}
    for name, path in written.items():
        assert path == a.path(name) and path.exists()
        assert is_synthetic(path), name
    assert (a.body_model_dir / "smpl" / "SMPL_NEUTRAL.pkl").exists()


def test_smpl_pickle_has_the_real_layout(assets):
    a, _ = assets
    raw = safe_pickle.load(a.path("smpl_male"))
    assert raw["synthetic"] is True
    assert raw["f"].dtype == np.uint32 and raw["f"].shape == (13776, 3)
    assert raw["kintree_table"][0, 0] == 4294967295  # the real files' root parent
    np.testing.assert_array_equal(raw["kintree_table"][0, 1:], SMPL_24.parents[1:])
    arrays = load_smpl_arrays(a.path("smpl_male"))
    assert arrays["v_template"].shape == (6890, 3) and arrays["posedirs"].shape == (6890, 3, 207)
    assert arrays["shapedirs"].shape == (6890, 3, 10) and arrays["weights"].shape == (6890, 24)
    assert bool(arrays["synthetic"])
    np.testing.assert_allclose(arrays["weights"].sum(1), 1, atol=1e-9)
    assert (arrays["weights"] >= 0).all() and (arrays["J_regressor"] >= 0).all()
    np.testing.assert_allclose(arrays["J_regressor"].sum(1), 1, atol=1e-9)
    assert np.abs(arrays["posedirs"]).max() > 1e-3  # small but present


def test_mesh_is_one_closed_oriented_genus0_surface(assets):
    a, _ = assets
    arrays = load_smpl_arrays(a.path("smpl_neutral"))
    f, V = arrays["f"], len(arrays["v_template"])
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    codes = directed[:, 0] * V + directed[:, 1]
    assert len(np.unique(codes)) == len(codes)  # each directed edge once: consistent orientation
    assert np.isin(directed[:, 1] * V + directed[:, 0], codes).all()  # and its twin: closed
    E = len(codes) // 2
    assert V - E + len(f) == 2  # Euler characteristic of a sphere
    adj = sp.coo_matrix((np.ones(len(directed)), (directed[:, 0], directed[:, 1])), shape=(V, V))
    assert connected_components(adj, directed=False)[0] == 1
    t = arrays["v_template"][f]
    volume = np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6
    assert 0.04 < volume < 0.12  # outward normals; a person is roughly 0.06-0.08 m^3


def test_rest_body_stands_like_a_person(neutral):
    out = run(neutral)
    v, j = out.vertices[0].numpy(), out.joints[0].numpy()
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 2.0
    assert -1.25 < v[:, 1].min() < -1.1 and 0.45 < v[:, 1].max() < 0.55  # soles, top of head
    J = {n: j[i] for i, n in enumerate(SMPL_24.names)}
    assert np.linalg.norm(J["pelvis"]) < 0.3  # root near the origin, as SMPL's
    assert J["head"][1] > J["neck"][1] > J["spine3"][1] > J["pelvis"][1] > J["left_knee"][1] > J["left_ankle"][1]
    assert J["left_wrist"][0] > J["left_elbow"][0] > J["left_shoulder"][0] > 0  # T-pose, left = +x
    head = v[:, 1] > 0.3
    assert v[head, 2].max() - v[332, 2] < 0.005  # smplx's nose vertex is the tip of the nose
    # Mirror symmetry: every vertex has a twin at (-x, y, z); joints mirror by name.
    d, _ = cKDTree(v).query(v * [-1, 1, 1])
    assert d.max() < 1e-5
    flip = SMPL_24.flip_permutation()
    np.testing.assert_allclose(j[flip] * [-1, 1, 1], j, atol=1e-5)


def test_rest_joints_are_where_the_regressor_puts_them(assets, neutral):
    a, _ = assets
    arrays = load_smpl_arrays(a.path("smpl_neutral"))
    regressed = arrays["J_regressor"] @ arrays["v_template"]
    intended = np.stack([REST_JOINTS[n] for n in SMPL_24.names])
    assert np.abs(regressed - intended).max() < 0.01
    np.testing.assert_allclose(run(neutral).joints[0].numpy(), regressed, atol=1e-5)
    # Each row averages vertices around its joint, not one vertex.
    assert ((arrays["J_regressor"] > 0).sum(1) >= 3).all()


def test_elbow_bends_the_forearm_and_nothing_else(neutral):
    rest = run(neutral)
    bent = run(neutral, pose=pose_with(left_elbow=(0, -np.pi / 2, 0)))
    i = SMPL_24.index
    jr, jb = rest.joints[0].numpy(), bent.joints[0].numpy()
    assert np.linalg.norm(jb[i["left_wrist"]] - jr[i["left_wrist"]]) > 0.3
    for other in ("right_wrist", "right_hand", "left_elbow", "left_shoulder", "head", "left_ankle"):
        assert np.linalg.norm(jb[i[other]] - jr[i[other]]) < 1e-5, other
    forearm = lambda j: np.linalg.norm(j[i["left_wrist"]] - j[i["left_elbow"]])  # noqa: E731
    assert abs(forearm(jb) - forearm(jr)) < 1e-5
    assert jb[i["left_wrist"]][2] > jr[i["left_elbow"]][2] + 0.2  # bent forwards (+z)
    moved = np.linalg.norm(bent.vertices[0].numpy() - rest.vertices[0].numpy(), axis=1)
    right_side = rest.vertices[0, :, 0].numpy() < -0.1
    assert moved[right_side].max() < 1e-5
    hand = np.linalg.norm(rest.vertices[0].numpy() - jr[i["left_hand"]], axis=1) < 0.05
    assert moved[hand].min() > 0.2


def test_shape_directions_change_height_and_girth(neutral):
    def height(betas):
        v = run(neutral, betas=betas).vertices[0].numpy()
        return v[:, 1].max() - v[:, 1].min()

    def waist(betas):
        v = run(neutral, betas=betas).vertices[0].numpy()
        band = np.abs(v[:, 1] + 0.05) < 0.02
        return np.ptp(v[band, 0])

    b = torch.zeros(1, 10)
    up, down = b.clone(), b.clone()
    up[0, 0], down[0, 0] = 2, -2
    assert height(up) > height(b) + 0.05 > height(down) + 0.1
    fat = b.clone()
    fat[0, 1] = 2
    assert waist(fat) > waist(b) + 0.02
    for k in range(2, 10):
        bk = b.clone()
        bk[0, k] = 2
        assert run(neutral, betas=bk).vertices.sub(run(neutral).vertices).abs().max() > 1e-3, k  # every direction acts
        assert abs(height(bk) - height(b)) < abs(height(up) - height(b)), k


def test_rotation_matrices_and_axis_angle_agree_and_are_differentiable(neutral):
    g = torch.Generator().manual_seed(0)
    B = 3
    aa = torch.randn(B, 24, 3, generator=g) * 0.4
    R = torch.as_tensor(Rotation.from_rotvec(aa.reshape(-1, 3).numpy()).as_matrix(), dtype=torch.float32).view(B, 24, 3, 3)
    betas = torch.randn(B, 10, generator=g)
    transl = torch.randn(B, 3, generator=g)
    a = neutral(betas, aa[:, 1:].reshape(B, 69), aa[:, 0], transl)
    m = neutral(betas, R[:, 1:], R[:, :1], transl)
    m3 = neutral(betas, R[:, 1:], R[:, 0], transl)
    for x, y in ((a, m), (a, m3)):
        torch.testing.assert_close(x.vertices, y.vertices, atol=1e-5, rtol=0)
        torch.testing.assert_close(x.joints, y.joints, atol=1e-5, rtol=0)
        torch.testing.assert_close(x.keypoints, y.keypoints, atol=1e-5, rtol=0)
    still = neutral(betas, aa[:, 1:].reshape(B, 69), aa[:, 0])
    torch.testing.assert_close(a.vertices - still.vertices, transl[:, None].expand_as(a.vertices), atol=1e-5, rtol=0)
    betas.requires_grad_(True)
    pose = aa[:, 1:].reshape(B, 69).clone().requires_grad_(True)
    neutral(betas, pose, aa[:, 0]).keypoints.square().sum().backward()
    assert betas.grad.abs().sum() > 0 and pose.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="body_pose"):
        neutral(betas, torch.zeros(B, 23, 4), aa[:, 0])


def test_genders_load_and_differ_plausibly(assets):
    a, _ = assets
    out = {}
    for g in GENDERS:
        model = BodyModel(a.body_model_dir, g)
        assert model.is_synthetic and model.faces.dtype == np.int64 and model.faces.shape == (13776, 3)
        out[g] = run(model).vertices[0].numpy()
    height = {g: np.ptp(v[:, 1]) for g, v in out.items()}
    hips = {g: np.ptp(v[np.abs(v[:, 1] + 0.28) < 0.03, 0]) for g, v in out.items()}
    assert height["male"] > height["neutral"] > height["female"]
    assert hips["female"] > hips["neutral"] > hips["male"]
    with pytest.raises(ValueError, match="gender"):
        BodyModel(a.body_model_dir, "other")


def test_body_models_keep_no_state_for_checkpoints(assets, neutral):
    a, _ = assets
    assert neutral.state_dict() == {} and not list(neutral.parameters())
    assert SMPLXModel(a.body_model_dir, "male").state_dict() == {}
    holder = torch.nn.Module()
    holder.body = neutral
    holder.head = torch.nn.Linear(2, 2)
    assert set(holder.state_dict()) == {"head.weight", "head.bias"}
    assert neutral.double().smpl.v_template.dtype == torch.float64  # buffers still follow .to()/.double()
    neutral.float()


def test_mean_params_in_spin_layout(assets):
    a, _ = assets
    mp = load_mean_params(a.path("mean_params"))
    assert mp["pose"].shape == (144,) and mp["shape"].shape == (10,) and mp["cam"].shape == (3,)
    # SPIN's rot6d_to_rotmat: x.view(-1, 3, 2) -> columns a1 = x[:, :, 0], a2 = x[:, :, 1].
    x = mp["pose"].reshape(24, 3, 2)
    a1 = x[:, :, 0] / np.linalg.norm(x[:, :, 0], axis=1, keepdims=True)
    a2 = x[:, :, 1] - (a1 * x[:, :, 1]).sum(1, keepdims=True) * a1
    a2 /= np.linalg.norm(a2, axis=1, keepdims=True)
    R = np.stack([a1, a2, np.cross(a1, a2)], -1)
    np.testing.assert_allclose(R[0], np.diag([1.0, -1.0, -1.0]), atol=1e-6)  # upright in a y-down camera
    assert mp["cam"][0] > 0


def test_h36m_regressor_lands_on_named_joints(assets, neutral):
    a, _ = assets
    reg = load_h36m_regressor(a.path("h36m_regressor"))
    assert reg.shape == (17, 6890) and reg.dtype == np.float32 and (reg >= 0).all()
    pose = pose_with(left_elbow=(0, -1.2, 0), right_knee=(1.0, 0, 0), left_hip=(-0.6, 0, 0))
    out = run(neutral, pose=pose)
    h, j = out.h36m[0].numpy(), out.joints[0].numpy()
    for name in ("left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
                 "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist"):
        assert np.linalg.norm(h[H36M_17.index[name]] - j[SMPL_24.index[name]]) < 0.03, name
    assert h[H36M_17.index["left_hip"], 0] > 0 > h[H36M_17.index["right_hip"], 0]  # rows 1-3 left (SPIN)
    rest = run(neutral).h36m[0].numpy()
    top = H36M_17.index["head_h36m"]  # row 10, the head top (SPIN's 'Head (H36M)')
    assert rest[top, 1] == rest[:, 1].max() and rest[top, 1] > rest[H36M_17.index["jaw"], 1]
    assert np.linalg.norm(rest[H36M_17.index["pelvis_mpii"]] - run(neutral).joints[0, 0].numpy()) < 0.12


def test_keypoints_read_off_the_mesh(assets, neutral):
    a, _ = assets
    out = run(neutral)
    kp, valid = out.keypoints[0].numpy(), out.keypoints_valid.numpy()
    k = KEYPOINTS_2D.index
    assert valid.all()
    # the H36M-derived columns are the regressor rows SPIN's labels put there (SPIN issue #22)
    np.testing.assert_allclose(kp[k["jaw"]], out.h36m[0, H36M_17.index["jaw"]].numpy())
    np.testing.assert_allclose(kp[k["head_h36m"]], out.h36m[0, 10].numpy())
    v = out.vertices[0].numpy()
    np.testing.assert_allclose(kp[k["nose"]], v[332])
    np.testing.assert_allclose(kp[k["left_eye"]], v[2800])
    assert kp[k["nose"]][2] > kp[k["left_ear"]][2] + 0.05  # nose in front of the ears
    assert kp[k["left_eye"]][1] > kp[k["nose"]][1]  # eyes above the nose
    assert kp[k["left_eye"]][0] > 0 > kp[k["right_eye"]][0]
    assert kp[k["left_ear"]][0] > kp[k["left_eye"]][0]
    assert kp[k["head_top"]][1] > kp[k["left_eye"]][1] > kp[k["neck_lsp"]][1] > kp[k["pelvis_mpii"]][1]
    np.testing.assert_allclose(kp[k["left_wrist"]], out.joints[0, SMPL_24.index["left_wrist"]].numpy())
    # Without the H36M regressor its keypoints are absent (zero, invalid).
    bare = BodyModel(a.body_model_dir, "neutral")
    o = run(bare)
    assert o.h36m is None and not o.keypoints_valid[k["head_top"]].item()
    assert (o.keypoints[0, k["head_top"]] == 0).all()
    np.testing.assert_allclose(o.keypoints[0, k["nose"]].numpy(), kp[k["nose"]])
    # smplx's own extra vertex keypoints (toes, heels, fingertips) sit where they should.
    ex = neutral.smpl(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3)).joints[0]
    big_toe, heel = ex[24 + 5].numpy(), ex[24 + 7].numpy()  # smplx order: 5 face, LBigToe, LSmallToe, LHeel
    assert big_toe[2] > heel[2] + 0.2


def test_smplx_standin_loads_through_smplx_and_maps_to_smpl(assets, tmp_path):
    a, _ = assets
    M = load_smplx2smpl(a.path("smplx2smpl"))
    assert M.shape == (6890, 10475)
    np.testing.assert_allclose(np.asarray(M.sum(1)).ravel(), 1)
    for g in ("male", "female"):
        x = SMPLXModel(a.body_model_dir, g)
        assert x.is_synthetic and x.smplx.J_regressor.shape == (SMPLX.num_joints, SMPLX.num_vertices)
        assert len(SMPLX_JOINT_NAMES) == 55
        body_pose = torch.zeros(2, 63)
        body_pose[1, 3 * (SMPL_24.index["left_elbow"] - 1) + 1] = -1.0
        v = x(torch.zeros(2, 10), torch.zeros(2, 3), body_pose)
        assert v.shape == (2, 10475, 3) and torch.isfinite(v).all()
        smpl_rest = run(BodyModel(a.body_model_dir, g)).vertices[0].numpy()
        np.testing.assert_allclose(M @ v[0].numpy(), smpl_rest, atol=1e-5)
        # The posed SMPL-X body poses like SMPL with the same body pose.
        smpl_bent = run(BodyModel(a.body_model_dir, g), pose=torch.cat([body_pose[1:], torch.zeros(1, 6)], 1))
        assert np.abs(M @ v[1].numpy() - smpl_bent.vertices[0].numpy()).max() < 0.02
    # A real SMPL-X file carries object arrays (e.g. part2num); they are never unpickled.
    with np.load(a.path("smplx_male"), allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["part2num"] = np.array({"evil": 1}, dtype=object)
    (tmp_path / "smplx").mkdir()
    np.savez(tmp_path / "smplx" / "SMPLX_MALE.npz", **data)
    assert SMPLXModel(tmp_path, "male").is_synthetic


def test_bad_files_name_file_and_key(assets, tmp_path):
    a, _ = assets
    arrays = load_smpl_arrays(a.path("smpl_neutral"))
    missing = {k: v for k, v in arrays.items() if k != "weights"}
    np.savez(tmp_path / "no_weights.npz", **missing)
    with pytest.raises(ModelFileError, match=r"no_weights\.npz.*'weights'"):
        load_smpl_arrays(tmp_path / "no_weights.npz")
    bad = dict(arrays, posedirs=arrays["posedirs"][:, :, :200])
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ModelFileError, match=r"bad\.pkl.*'posedirs'.*\(6890, 3, 200\)"):
        load_smpl_arrays(tmp_path / "bad.pkl")
    np.save(tmp_path / "reg.npy", np.zeros((14, 6890)))
    with pytest.raises(ModelFileError, match=r"reg\.npy.*\(14, 6890\)"):
        load_h36m_regressor(tmp_path / "reg.npy")
    np.savez(tmp_path / "mean.npz", pose=np.zeros(72), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(ModelFileError, match=r"mean\.npz.*'pose'"):
        load_mean_params(tmp_path / "mean.npz")
    with pytest.raises(FileNotFoundError, match="SMPL_FEMALE"):
        BodyModel(tmp_path, "female")


def test_generation_is_deterministic(tmp_path, assets):
    a, _ = assets
    again = write_synthetic_assets(tmp_path / "assets", seed=0)
    for name in ("smpl_neutral", "h36m_regressor", "smplx_male"):
        assert again[name].read_bytes() == a.path(name).read_bytes(), name
    assert SMPL.num_vertices == 6890 and SMPL.num_faces == 13776


def test_forward_matches_smplx_and_reads_nothing_back_from_the_device(neutral):
    """Our LBS (model.lbs: the kinematic tree walked level by level over CPU data) gives
    smplx's own forward to float rounding, with translation, and calls no op that reads
    device data back to the host (smplx's indexes a list with its parents tensor: 23 reads)."""
    from torch.profiler import profile

    from model.geometry import axis_angle_to_matrix
    from model.lbs import tree_levels

    g = torch.Generator().manual_seed(0)
    rot = axis_angle_to_matrix(0.6 * torch.randn(4, 24, 3, generator=g))
    betas, transl = torch.randn(4, 10, generator=g), torch.randn(4, 3, generator=g)
    with profile() as prof:
        ours = neutral(betas, rot[:, 1:], rot[:, :1], transl)
    assert not [e.name for e in prof.events() if e.name in ("aten::_local_scalar_dense", "aten::item")]
    ref = neutral.smpl(betas=betas, body_pose=rot[:, 1:], global_orient=rot[:, :1], transl=transl, pose2rot=False)
    torch.testing.assert_close(ours.vertices, ref.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.joints, ref.joints[:, :24], rtol=0, atol=1e-6)
    # gradients as well
    b1, b2 = betas.clone().requires_grad_(), betas.clone().requires_grad_()
    neutral(b1, rot[:, 1:], rot[:, :1]).vertices.square().sum().backward()
    neutral.smpl(betas=b2, body_pose=rot[:, 1:], global_orient=rot[:, :1], pose2rot=False).vertices.square().sum().backward()
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-5, atol=1e-5)
    # SMPL's tree by depth: pelvis; hips and spine1; ... down to the hands (9 levels)
    levels = tree_levels(SMPL_24.parents)
    assert levels[0] == [0] and sorted(levels[1]) == sorted(SMPL_24.index[n] for n in ("left_hip", "right_hip", "spine1"))
    assert len(levels) == 9 and levels[-1] == [SMPL_24.index["left_hand"], SMPL_24.index["right_hand"]]


def test_body_model_is_fp32_under_autocast(neutral):
    """Called under bf16 autocast (the training targets, evaluation), the body is still fp32."""
    g = torch.Generator().manual_seed(1)
    pose, betas = 0.4 * torch.randn(2, 72, generator=g), torch.randn(2, 10, generator=g)
    ref = neutral(betas, pose[:, 3:], pose[:, :3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = neutral(betas, pose[:, 3:], pose[:, :3])
    assert out.vertices.dtype == torch.float32 and out.h36m.dtype == torch.float32
    torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.h36m, ref.h36m, rtol=0, atol=1e-6)
