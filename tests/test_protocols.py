"""eval.protocols: declared protocols, and the scoring math on known cases."""
import dataclasses

import numpy as np
import pytest
import torch

from datasets import joints as J
from eval import protocols as P

V = P.NUM_SMPL_VERTICES
MESH = sorted(n for n, p in P.PROTOCOLS.items() if p.has_mesh)  # ground truth = a mesh


def _disjoint_regressor(n_joints, support, rng):
    """(J, 6890): each joint averages its own `support` vertices (disjoint blocks)."""
    reg = np.zeros((n_joints, V))
    for j in range(n_joints):
        cols = np.arange(j * support, (j + 1) * support)
        w = rng.uniform(0.5, 1.5, size=support)
        reg[j, cols] = w / w.sum()
    return reg


def _score(proto, pred, gt, reg):
    """proto.score with `reg` on both sides; a gendered protocol gets `reg` for every gender
    (the same math as a shared one) and the genders it needs."""
    genders = ["male", "female"] * (len(gt) // 2) + ["male"] * (len(gt) % 2)
    regs = P.JointRegressors(reg, {"male": reg, "female": reg}) if proto.gt_regressor == "gendered" else reg
    return proto.score(pred, gt, regs, genders)


@pytest.fixture
def body():
    rng = np.random.default_rng(7)
    verts = rng.normal(scale=0.3, size=(5, V, 3)) + np.array([0.0, 0.2, 4.0])
    return rng, verts


def test_protocols_are_declared_objects():
    assert set(P.PROTOCOLS) == {"3dpw", "rich", "rich-gendered", "emdb", "3dhp"}
    assert P.DEFAULT_PROTOCOLS == ("3dpw", "rich", "emdb", "3dhp")  # one per benchmark; RICH as WHAM / CameraHMR
    assert MESH == ["3dpw", "emdb", "rich", "rich-gendered"]
    emdb = P.PROTOCOLS["emdb"]  # CameraHMR / TokenHMR: neutral J_regressor both sides, hips root
    assert emdb.regressor == "smpl" and emdb.ground_truth == "smpl" and emdb.gt_regressor == "shared"
    assert emdb.eval_index.tolist() == list(range(24)) and emdb.root_index.tolist() == [1, 2]
    hp = P.PROTOCOLS["3dhp"]
    assert hp.metrics == ("pa_mpjpe", "mpjpe", "pck", "auc") and not hp.has_mesh and "joints" in hp.inputs
    with pytest.raises(ValueError, match="PVE needs a ground-truth mesh"):
        dataclasses.replace(hp, metrics=("mpjpe", "pve"))
    with pytest.raises(ValueError, match="joints as input need the root"):
        dataclasses.replace(P.PROTOCOLS["3dpw"], inputs=("joints",))
    pw = P.PROTOCOLS["3dpw"]
    assert pw.eval_index.tolist() == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]  # SPIN H36M_TO_J14
    assert pw.root_index.tolist() == [0] and pw.regressor == "h36m" and pw.ground_truth == "smpl"
    assert pw.expected_sequences == 24
    rich = P.PROTOCOLS["rich"]
    assert rich.eval_index.tolist() == list(range(24))
    assert rich.root_index.tolist() == [1, 2]  # WHAM pelvis_idxs for RICH
    assert rich.regressor == "smpl" and rich.ground_truth == "smplx_to_smpl" and rich.gt_regressor == "shared"
    bedlam = P.PROTOCOLS["rich-gendered"]  # the same benchmark, BEDLAM's ground-truth joints
    assert bedlam.gt_regressor == "gendered" and bedlam.dataset == "rich" and "BEDLAM" in bedlam.source
    assert dataclasses.replace(bedlam, name="rich", gt_regressor="shared", source=rich.source) == rich
    assert pw.gt_regressor == "shared"
    with pytest.raises(ValueError, match="unknown ground-truth regressor"):
        dataclasses.replace(rich, gt_regressor="male")
    with pytest.raises(ValueError, match="must be 'smpl'"):
        dataclasses.replace(pw, gt_regressor="gendered")
    with pytest.raises(KeyError, match="not in joint set"):
        P.Protocol("x", "x", "test", "h36m", J.H36M_17, ("nose",), ("pelvis_mpii",), "smpl", "")
    with pytest.raises(ValueError, match="regressor"):
        P.Protocol("x", "x", "test", "vertex", J.H36M_17, ("left_hip",), ("pelvis_mpii",), "smpl", "")


@pytest.mark.parametrize("name", MESH)
def test_ground_truth_as_prediction_scores_zero(name, body):
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    out = _score(proto, verts, verts, reg)
    assert set(out) == {"mpjpe", "pa_mpjpe", "pve"}
    for v in out.values():
        assert v.shape == (5,) and np.allclose(v, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", MESH)
def test_global_shift_is_removed_by_the_root(name, body):
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    out = _score(proto, verts + np.array([0.1, -0.3, 2.0]), verts, reg)
    for v in out.values():
        np.testing.assert_allclose(v, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", MESH)
def test_moving_everything_but_the_root_by_10mm(name, body):
    """Shift every vertex outside the root joints' support by 10 mm: the root stays,
    every scored joint moves 10 mm (its support is disjoint from the root's, except the
    root joints themselves when scored), PVE = 10 mm x fraction of moved vertices,
    and a pure translation of the scored joints has PA-MPJPE 0."""
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    root_support = np.flatnonzero(reg[proto.root_index].sum(0))
    moved = np.ones(V, bool)
    moved[root_support] = False
    shift = np.array([0.0, 0.006, 0.008])  # 10 mm
    pred = verts.copy()
    pred[:, moved] += shift
    out = _score(proto, pred, verts, reg)
    scored_is_root = np.isin(proto.eval_index, proto.root_index)
    expected_mpjpe = 10.0 * (~scored_is_root).mean()
    np.testing.assert_allclose(out["mpjpe"], expected_mpjpe, rtol=1e-9)
    np.testing.assert_allclose(out["pve"], 10.0 * moved.mean(), rtol=1e-9)
    if not scored_is_root.any():
        np.testing.assert_allclose(out["pa_mpjpe"], 0.0, atol=1e-8)
    else:
        assert np.all(out["pa_mpjpe"] < expected_mpjpe)


def test_score_matches_a_direct_computation(body):
    rng, verts = body
    proto = P.PROTOCOLS["3dpw"]
    reg = rng.uniform(size=(17, V))
    reg /= reg.sum(1, keepdims=True)
    pred = verts + rng.normal(scale=0.02, size=verts.shape)
    out = proto.score(torch.from_numpy(pred).float(), verts, reg)
    pj, gj = reg @ pred, reg @ verts  # (N, 17, 3) via broadcasting matmul
    pj = pj - pj[:, :1]
    gj = gj - gj[:, :1]
    idx = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    np.testing.assert_allclose(out["mpjpe"], 1000 * np.linalg.norm(pj[:, idx] - gj[:, idx], axis=-1).mean(-1),
                               rtol=1e-5)
    pv = pred - (reg @ pred)[:, :1]
    gv = verts - (reg @ verts)[:, :1]
    np.testing.assert_allclose(out["pve"], 1000 * np.linalg.norm(pv - gv, axis=-1).mean(-1), rtol=1e-5)


def test_shape_errors_name_the_protocol(body):
    rng, verts = body
    with pytest.raises(ValueError, match="3dpw.*regressor"):
        P.PROTOCOLS["3dpw"].score(verts, verts, np.zeros((24, V)))
    with pytest.raises(ValueError, match=r"3dpw: regressor 'h36m' has shape \(24, 6890\), expected \(17, 6890\)"):
        P.PROTOCOLS["3dpw"].score(verts, verts, np.zeros((24, V)))
    bad = P.JointRegressors(np.zeros((24, V)), {"male": np.zeros((24, V)), "female": np.zeros((17, V))})
    with pytest.raises(ValueError, match=r"rich-gendered: female ground-truth regressor 'smpl' has shape \(17, 6890\)"):
        P.PROTOCOLS["rich-gendered"].score(verts, verts, bad, ["male"] * 5)
    with pytest.raises(ValueError, match="rich.*vertices"):
        P.PROTOCOLS["rich"].score(verts[:, :100], verts[:, :100], np.zeros((24, V)))
    with pytest.raises(ValueError, match=r"rich: expected pred and gt vertices .* got 5 predictions and gt \(4, 6890, 3\)"):
        P.PROTOCOLS["rich"].score(verts, verts[:4], np.zeros((24, V)))


# ---- the protocols on synthetic stand-in assets (the same code reads the real ones) ----
def _rot_y(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _gt_batch(name, n=6, seed=3):
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.25, size=(n, 24, 3))
    pose[:, 0] = [np.pi, 0, 0]  # upright in the OpenCV camera frame
    if name == "rich":
        pose[:, 22:] = 0  # SMPL-X record convention: rows 22-23 unused
    betas = rng.normal(scale=0.8, size=(n, 10))
    genders = np.array(["male", "female"] * (n // 2))
    return pose, betas, genders


@pytest.fixture(scope="module")
def loaded(synthetic_assets):
    return {name: (P.load_regressor(p, synthetic_assets), P.load_ground_truth(p, synthetic_assets))
            for name, p in P.PROTOCOLS.items() if p.has_mesh}


@pytest.mark.parametrize("name", [n for n in MESH if P.PROTOCOLS[n].gt_regressor == "shared"])
def test_synthetic_ground_truth_body_scores_zero_and_known_perturbations(name, loaded):
    proto = P.PROTOCOLS[name]
    reg, gt_body = loaded[name]
    assert gt_body.is_synthetic
    pose, betas, genders = _gt_batch(name)
    gt = gt_body.vertices(pose, betas, genders)
    assert gt.shape == (6, V, 3) and np.isfinite(gt).all()
    for v in proto.score(gt, gt, reg).values():
        np.testing.assert_allclose(v, 0.0, atol=1e-6)
    # 10 mm shift of every vertex: removed by the root, all three metrics 0
    for v in proto.score(gt + np.array([0.0, 0.006, 0.008]), gt, reg).values():
        np.testing.assert_allclose(v, 0.0, atol=1e-4)
    # rotation by theta about the vertical axis through each sample's root: every point
    # moves 2 sin(theta/2) x its distance from that axis; PA-MPJPE 0.
    theta = 0.2
    joints = np.einsum("jv,nvc->njc", reg.pred, gt.astype(np.float64))
    root = joints[:, proto.root_index].mean(1, keepdims=True)  # (N, 1, 3)
    pred = np.einsum("ij,nvj->nvi", _rot_y(theta), gt - root) + root
    radial = lambda x: np.linalg.norm((x - root)[..., [0, 2]], axis=-1)  # noqa: E731  distance to the y axis
    out = proto.score(pred, gt, reg)
    np.testing.assert_allclose(out["mpjpe"], 1000 * 2 * np.sin(theta / 2) * radial(joints[:, proto.eval_index]).mean(1),
                               rtol=1e-4)
    np.testing.assert_allclose(out["pve"], 1000 * 2 * np.sin(theta / 2) * radial(gt).mean(1), rtol=1e-4)
    np.testing.assert_allclose(out["pa_mpjpe"], 0.0, atol=1e-3)
    assert out["mpjpe"].min() > 1.0


@pytest.mark.parametrize("name", MESH)
def test_synthetic_ground_truth_is_gendered(name, loaded):
    reg, gt_body = loaded[name]
    pose, betas, _ = _gt_batch(name, n=2)
    male = gt_body.vertices(pose, betas, ["male", "male"])
    female = gt_body.vertices(pose, betas, ["female", "female"])
    mixed = gt_body.vertices(pose, betas, ["male", "female"])
    np.testing.assert_allclose(mixed[0], male[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], female[1], atol=1e-5)
    assert np.abs(male - female).max() > 1e-3
    with pytest.raises(ValueError, match="gender"):
        gt_body.vertices(pose, betas, ["male", "robot"])


def test_rich_ground_truth_goes_through_smplx_and_the_matrix(synthetic_assets, loaded):
    """The RICH mesh is smplx2smpl @ (SMPL-X vertices): check against smplx.SMPLX directly."""
    from model.body_model import SMPLXModel, load_smplx2smpl

    _, gt_body = loaded["rich"]
    pose, betas, genders = _gt_batch("rich", n=2)
    m = SMPLXModel(synthetic_assets.body_model_dir, "female")
    assert m.smplx.get_num_verts() == 10475 and m.smplx.J_regressor.shape[0] == 55
    v = m(betas=torch.tensor(betas, dtype=torch.float32), global_orient=torch.tensor(pose[:, 0], dtype=torch.float32),
          body_pose=torch.tensor(pose[:, 1:22].reshape(2, 63), dtype=torch.float32)).numpy()
    matrix = load_smplx2smpl(synthetic_assets.path("smplx2smpl"))
    expected = np.stack([matrix @ x for x in v])
    np.testing.assert_allclose(gt_body.vertices(pose, betas, ["female", "female"]), expected, atol=1e-5)


def test_missing_asset_is_a_clear_error(tmp_path):
    from datasets.assets import Assets

    with pytest.raises(FileNotFoundError, match="h36m_regressor.*expected at"):
        P.load_regressor(P.PROTOCOLS["3dpw"], Assets(root=tmp_path, raw_root=tmp_path))
    with pytest.raises(FileNotFoundError, match="smplx_male"):
        P.load_ground_truth(P.PROTOCOLS["rich"], Assets(root=tmp_path, raw_root=tmp_path))


# ---- a joints ground truth (MPI-INF-3DHP): the records' joints_3d, no mesh ----------------------
def _joints_gt(n=4, seed=5):
    """(N, 24, 3) KEYPOINTS_2D ground-truth joints, metres, in front of a camera."""
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.4, size=(n, len(J.KEYPOINTS_2D), 3)) + np.array([0.0, 0.0, 4.0])


def test_joints_ground_truth_scores_the_named_joints_against_joints(body):
    hp = P.PROTOCOLS["3dhp"]
    gt = _joints_gt()
    eval_gt = gt[:, hp.gt_eval_index]  # the 17 scored joints, in the protocol's order
    # the ground truth itself, given as joints (any translation): all errors 0, PCK / AUC
    # 100 except the AUC's 0 mm threshold (error < 0 never holds): 30 of 31 thresholds
    out = hp.score(P.Prediction(joints=eval_gt + [0.3, -0.1, 1.0]), P.GroundTruth(joints=gt), np.zeros((17, V)))
    assert set(out) == {"pa_mpjpe", "mpjpe", "pck", "auc"}
    np.testing.assert_allclose(out["mpjpe"], 0.0, atol=1e-9)
    np.testing.assert_allclose(out["pck"], 100.0)
    np.testing.assert_allclose(out["auc"], 100.0 * 30 / 31)
    # every joint but the root 120 mm off: MPJPE = 120 x 16 / 17, all under 150 mm;
    # 200 mm off: none under 150 mm but the root
    for d, pck in ((0.12, 100.0), (0.2, 100.0 / 17)):
        pred = eval_gt.copy()
        non_root = np.arange(17) != hp.pred_joint_set.index["pelvis_mpii"]
        pred[:, non_root] += [0.0, d, 0.0]
        out = hp.score(P.Prediction(joints=pred), P.GroundTruth(joints=gt), np.zeros((17, V)))
        np.testing.assert_allclose(out["mpjpe"], 1000 * d * 16 / 17, rtol=1e-9)
        np.testing.assert_allclose(out["pck"], pck)
    # through a mesh: the H36M regressor picks the prediction's joints (rows by name)
    reg = _disjoint_regressor(17, 50, np.random.default_rng(0))
    verts = np.zeros((len(gt), V, 3))
    for row in range(17):  # each joint's support vertices sit at that joint
        name = J.H36M_17.names[row]
        verts[:, row * 50:(row + 1) * 50] = gt[:, J.KEYPOINTS_2D.index[name]][:, None] if name in J.SPIN_J17.index \
            else 0.0
    out = hp.score(verts, P.GroundTruth(joints=gt), reg)
    np.testing.assert_allclose(out["mpjpe"], 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="3dpw: scores meshes"):
        P.PROTOCOLS["3dpw"].score(P.Prediction(joints=eval_gt[:, :14]), verts, np.zeros((17, V)))
    with pytest.raises(ValueError, match=r"3dhp: expected pred joints \(N, 17, 3\)"):
        hp.score(P.Prediction(joints=eval_gt[:, :16]), P.GroundTruth(joints=gt), np.zeros((17, V)))


def test_record_joints_ground_truth_needs_every_scored_joint():
    from datasets.record import PersonFrame

    hp = P.PROTOCOLS["3dhp"]
    joints = np.ones((24, 4))
    rec = PersonFrame(key="a", dataset="mpi_inf_3dhp", split="test", sequence="TS1", frame=0, person=0,
                      image_path="x.jpg", image_hw=np.array([10, 10]), box_center=np.array([5.0, 5.0]),
                      box_size=np.array([4.0, 4.0]), box_expand=1.2, synthetic=True,
                      **{**PersonFrame.empty_targets(), "joints_3d": joints})
    gt = P.RecordJointsGroundTruth().of_records([rec], hp)
    assert gt.joints.shape == (1, 24, 3) and gt.genders == ("neutral",)  # the record's gender, carried
    joints[J.KEYPOINTS_2D.index["jaw"], 3] = 0  # the 3DHP 'head' is scored
    with pytest.raises(P.GroundTruthError, match="sample a: ground-truth joints \\['jaw'\\] are absent"):
        P.RecordJointsGroundTruth().of_records([rec], hp)


# nkolot/SPIN constants.py (H36M rows / SPIN-24 rows of the scored joints) and eval.py (pelvis = H36M
# row 0; SPIN-24 row 14 is 'Pelvis (MPII)'); WHAM lib/eval/evaluate_rich.py: pelvis_idxs = [1, 2]
H36M_TO_J17 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
J24_TO_J17 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]
SOURCE_INDICES = {  # name: (eval_index, root_index, gt_eval_index, gt_root_index)
    "3dpw": (H36M_TO_J17[:14], [0], H36M_TO_J17[:14], [0]),
    "rich": (list(range(24)), [1, 2], list(range(24)), [1, 2]),
    "rich-gendered": (list(range(24)), [1, 2], list(range(24)), [1, 2]),
    "emdb": (list(range(24)), [1, 2], list(range(24)), [1, 2]),
    "3dhp": (H36M_TO_J17, [0], J24_TO_J17, [14]),
}


@pytest.mark.parametrize("name", sorted(SOURCE_INDICES))
def test_a_protocol_built_now_has_its_sources_rows(name):
    """Every protocol, built again here (not at import), gets the rows its sources index:
    the prediction's (regressor rows) and the ground truth's (the same for a mesh, SPIN-24
    rows of `joints_3d` for MPI-INF-3DHP)."""
    proto = dataclasses.replace(P.PROTOCOLS[name])
    got = (proto.eval_index, proto.root_index, proto.gt_eval_index, proto.gt_root_index)
    assert [list(map(int, g)) for g in got] == [list(x) for x in SOURCE_INDICES[name]]


def test_protocol_declarations_that_are_allowed_and_refused():
    rich, hp = P.PROTOCOLS["rich"], P.PROTOCOLS["3dhp"]
    # BEDLAM's gendered ground-truth joints go with the SMPL regressor
    gendered = dataclasses.replace(rich, gt_regressor="gendered")
    assert gendered.gt_regressor == "gendered" and gendered.regressor == "smpl"
    with pytest.raises(ValueError, match=r"unknown metrics / inputs \['pckh'\]"):
        dataclasses.replace(hp, metrics=("mpjpe", "pckh"))
    with pytest.raises(ValueError, match=r"unknown metrics / inputs \['mesh'\]"):
        dataclasses.replace(hp, inputs=("joints", "mesh"))
    # joints as input: the root among the scored joints, possibly all of them
    only_root = dataclasses.replace(hp, eval_joints=("pelvis_mpii",))
    assert only_root.eval_index.tolist() == [0] and only_root.root_index.tolist() == [0]


def test_an_unknown_gender_for_the_gendered_regressors_is_named(body):
    """BEDLAM has male and female SMPL J_regressors only (RICH has no neutral subject)."""
    rng, verts = body
    reg = _disjoint_regressor(24, 50, rng)
    regs = P.JointRegressors(reg, {"male": reg, "female": reg})
    with pytest.raises(ValueError, match=r"protocol rich-gendered: no gendered SMPL J_regressor for gender\(s\) "
                                         r"\['neutral'\] \(have \['female', 'male'\]\)"):
        P.PROTOCOLS["rich-gendered"].score(verts, verts, regs, ["male", "neutral", "female", "male", "male"])


def test_smpl_regressors_are_the_body_models_own(synthetic_assets):
    """WHAM / CameraHMR regress with `smpl.J_regressor`, BEDLAM with `smpl_female.J_regressor`:
    smplx's float32 buffers of the neutral / gendered models, value for value."""
    from model.body_model import BodyModel

    def smplx_regressor(gender):
        return BodyModel(synthetic_assets.body_model_dir, gender).smpl.J_regressor.numpy()

    regs = P.load_regressor(P.PROTOCOLS["rich-gendered"], synthetic_assets)
    np.testing.assert_array_equal(regs.pred, smplx_regressor("neutral"))
    for g in ("male", "female"):
        np.testing.assert_array_equal(regs.gt[g], smplx_regressor(g))


def _smpl_record(key, gender, pose, betas, **kw):
    from datasets.record import PersonFrame

    targets = {**PersonFrame.empty_targets(), "smpl_pose": pose.astype(np.float32),
               "betas": betas.astype(np.float32), "gender": gender, "has_smpl": True, **kw}
    return PersonFrame(key=key, dataset="3dpw", split="test", sequence="s", frame=0, person=0, image_path="x.jpg",
                       image_hw=np.array([10, 10]), box_center=np.array([5.0, 5.0]), box_size=np.array([4.0, 4.0]),
                       box_expand=1.2, synthetic=True, **targets)


def test_mesh_ground_truth_of_records_is_each_records_gendered_body(synthetic_assets, loaded):
    """The records' SMPL targets through the SMPL model of each record's gender (checked
    against `BodyModel` directly), their genders carried; a record without SMPL, or with
    SMPL-X targets, is a GroundTruthError naming it."""
    from model.body_model import BodyModel

    _, gt_body = loaded["3dpw"]
    pose, betas, _ = _gt_batch("3dpw", n=2)
    recs = [_smpl_record("a", "female", pose[0], betas[0]), _smpl_record("b", "male", pose[1], betas[1])]
    gt = gt_body.of_records(recs)
    assert gt.genders == ("female", "male")
    for i, g in enumerate(("female", "male")):
        t = torch.from_numpy(pose[i:i + 1].astype(np.float32))
        want = BodyModel(synthetic_assets.body_model_dir, g)(betas=torch.from_numpy(betas[i:i + 1].astype(np.float32)),
                                                             body_pose=t[:, 1:], global_orient=t[:, 0]).vertices
        np.testing.assert_allclose(gt.vertices[i], want[0].detach().numpy(), atol=1e-6)
    with pytest.raises(P.GroundTruthError, match=r"without SMPL ground truth .*\['c'\]"):
        gt_body.of_records([*recs, _smpl_record("c", "male", pose[0], betas[0], has_smpl=False)])
    with pytest.raises(P.GroundTruthError, match=r"not smpl \(e.g. \['d'\]\)"):
        gt_body.of_records([_smpl_record("d", "male", pose[0], betas[0], body_model="smplx"), *recs])


@pytest.mark.parametrize("name", ["3dpw", "rich"])  # SMPL, SMPL-X
def test_mesh_ground_truth_takes_torch_inputs_of_any_precision(name, loaded):
    """pose / betas as float64 torch tensors give the mesh of the same values as numpy."""
    _, gt_body = loaded[name]
    pose, betas, genders = _gt_batch(name, n=2)
    want = gt_body.vertices(pose, betas, genders)
    got = gt_body.vertices(torch.from_numpy(pose), torch.from_numpy(betas), genders)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["3dpw", "rich"])  # SMPL, SMPL-X x smplx2smpl
def test_a_ground_truth_body_built_here_is_gendered_and_knows_it_is_synthetic(name, synthetic_assets):
    """Built in the test (the module's `loaded` is built once, before most tests): one model
    per gender (the same pose and shape give other meshes for male and female), the
    SMPL-topology mesh, and whether the assets are the synthetic stand-ins (they are)."""
    gt_body = P.load_ground_truth(P.PROTOCOLS[name], synthetic_assets)
    assert gt_body.is_synthetic is True
    pose, betas, _ = _gt_batch(name, n=2)
    male, female = (gt_body.vertices(pose, betas, [g, g]) for g in ("male", "female"))
    assert male.shape == female.shape == (2, V, 3) and np.abs(male - female).max() > 1e-3
