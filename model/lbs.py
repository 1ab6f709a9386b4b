"""Linear blend skinning (SMPL, Loper et al. 2015) with the kinematic tree held as CPU data.

The steps and their numbering follow smplx `lbs.py` (`lbs`, `batch_rigid_transform`), whose
output this matches to float rounding (tests/test_body_model.py runs both). What differs:
smplx walks the tree one joint at a time and indexes its Python list of transforms with
elements of the `parents` *tensor*, which reads each one back to the host (on a GPU, a
device synchronisation per joint, 23 per SMPL call). Here the joints are grouped by their
depth in the tree: the parents of one level all sit in the level above, so one gather
(an index buffer) and one batched matmul per level compose the whole level (SMPL: 8
levels below the pelvis), with no read of device data and a graph that CUDA graphs and
`torch.compile` can capture.

    skin = LinearBlendSkinning(parents)               # parents[0] < 0 or >= J marks the root
    vertices, joints = skin(betas, rotmats, v_template, shapedirs, posedirs, J_regressor, weights)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def tree_levels(parents: Sequence[int]) -> list[list[int]]:
    """Joints grouped by depth: [[root], [its children], [their children], ...], each level
    in joint order. The root is the one joint whose parent is not a joint index (smplx
    stores -1, the real SMPL files 4294967295); every other parent must come earlier in the
    order, as in SMPL / SMPL-X."""
    n = len(parents)
    depth: list[int] = []
    for j, p in enumerate(parents):
        if 0 <= p < n:
            if p >= j:
                raise ValueError(f"kinematic tree: joint {j} has parent {p}, expected a parent before it")
            depth.append(depth[p] + 1)
        else:
            if j != 0:
                raise ValueError(f"kinematic tree: joint {j} has no parent (parent {p}); only joint 0 may be the root")
            depth.append(0)
    return [[j for j in range(n) if depth[j] == d] for d in range(max(depth) + 1)]


class LinearBlendSkinning(nn.Module):
    """SMPL's forward kinematics and skinning for a fixed kinematic tree.

    The tree is built into index buffers once (non-persistent: they follow `.to()` and
    never enter a checkpoint); the model's arrays (template, blend shapes, regressor,
    weights) are passed per call, as smplx's `lbs` takes them.
    """

    def __init__(self, parents: Sequence[int]):
        super().__init__()
        parents = [int(p) for p in parents]
        levels = tree_levels(parents)
        order = [j for level in levels for j in level]  # joints, level by level
        position = {j: k for k, j in enumerate(order)}
        self.level_sizes = tuple(len(level) for level in levels)  # CPU data: the loop below
        self.num_joints = len(parents)
        self.register_buffer("level_order", torch.as_tensor(order), persistent=False)  # (J,)
        self.register_buffer("level_inverse", torch.as_tensor([position[j] for j in range(len(parents))]),
                             persistent=False)  # (J,): joint j sits at level_order position level_inverse[j]
        # per level below the root: each joint's parent, as a position within the level above
        starts = [0]
        for size in self.level_sizes:
            starts.append(starts[-1] + size)
        for lvl in range(1, len(levels)):
            pos = [position[parents[j]] - starts[lvl - 1] for j in levels[lvl]]
            self.register_buffer(f"parents_{lvl}", torch.as_tensor(pos), persistent=False)
        root = levels[0][0]
        self.register_buffer("parent_index", torch.as_tensor([root if j == root else p for j, p in enumerate(parents)]),
                             persistent=False)  # (J,), the root points at itself
        self.register_buffer("has_parent", (torch.arange(len(parents)) != root).float()[:, None],
                             persistent=False)  # (J, 1)
        self.register_buffer("eye3", torch.eye(3), persistent=False)
        self.register_buffer("homogeneous_row", torch.tensor([0.0, 0.0, 0.0, 1.0]), persistent=False)  # (4,)

    def rigid_transforms(self, rotmats: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """smplx `batch_rigid_transform`: local rotations (B, J, 3, 3) about the rest joints
        (B, J, 3) -> (posed joints (B, J, 3), A (B, J, 3, 4)), A_j the rigid map of joint j's
        part from the rest pose to the posed one (rotation and translation: the top 3 rows of
        smplx's `rel_transforms`)."""
        b = rotmats.shape[0]
        rel = joints - joints[:, self.parent_index] * self.has_parent  # (B, J, 3) offsets from the parent
        local = torch.cat([rotmats, rel[..., None]], -1)  # (B, J, 3, 4) [R | t]
        local = torch.cat([local, self.homogeneous_row.expand(b, self.num_joints, 1, 4)], -2)
        local = local[:, self.level_order]  # (B, J, 4, 4), level by level
        # world transform of each level = its parents' world transforms @ its local ones
        world = [local[:, :self.level_sizes[0]]]  # the root: its local transform
        start = self.level_sizes[0]
        for lvl, size in enumerate(self.level_sizes[1:], start=1):
            parent_world = world[-1][:, getattr(self, f"parents_{lvl}")]  # (B, n_l, 4, 4)
            world.append(parent_world @ local[:, start:start + size])
            start += size
        world_t = torch.cat(world, 1)[:, self.level_inverse, :3]  # (B, J, 3, 4), joint order
        posed = world_t[..., 3]  # (B, J, 3)
        # A = T - T @ [j; 0]: the rotation kept, the translation minus the rotated rest joint
        offset = posed - (world_t[..., :3] @ joints[..., None])[..., 0]  # (B, J, 3)
        return posed, torch.cat([world_t[..., :3], offset[..., None]], -1)

    def forward(self, betas: torch.Tensor, rotmats: torch.Tensor, v_template: torch.Tensor,
                shapedirs: torch.Tensor, posedirs: torch.Tensor, J_regressor: torch.Tensor,
                weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """betas (B, S); rotmats (B, J, 3, 3); v_template (V, 3); shapedirs (V, 3, >= S);
        posedirs (9 (J-1), V*3) (smplx's layout); J_regressor (J, V); weights (V, J)
        -> (vertices (B, V, 3), joints (B, J, 3))."""
        b = betas.shape[0]
        # 1. shape blend shapes: v_shaped = T + B_S(beta)
        v_shaped = v_template + torch.einsum("bl,vcl->bvc", betas, shapedirs[..., :betas.shape[1]])  # (B, V, 3)
        # 2. rest joints J(beta), regressed from the shaped mesh
        joints = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped)  # (B, J, 3)
        # 3. pose blend shapes B_P(theta) from (R - I) of the non-root joints
        pose_feature = (rotmats[:, 1:] - self.eye3).reshape(b, -1)  # (B, 9 (J-1))
        v_posed = v_shaped + (pose_feature @ posedirs).reshape(b, -1, 3)  # (B, V, 3)
        # 4. forward kinematics
        posed_joints, A = self.rigid_transforms(rotmats, joints)  # (B, J, 3), (B, J, 3, 4)
        # 5. skinning: each vertex by the weighted sum of its parts' maps
        T = torch.einsum("vj,bjk->bvk", weights, A.reshape(b, self.num_joints, 12)).reshape(b, -1, 3, 4)  # (B, V, 3, 4)
        vertices = (T[..., :3] * v_posed[:, :, None, :]).sum(-1) + T[..., 3]  # (B, V, 3)
        return vertices, posed_joints
