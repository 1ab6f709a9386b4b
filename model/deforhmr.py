"""DeforHMR: query tokens -> decoder over the encoder's feature map -> SMPL (paper Fig. 2).

`DeforHMR(cfg, mean_params, body_model)` takes a feature map (B, C, H, W) (cached
ViTPose features in training and evaluation) and returns a `ModelOutput`;
`ImageModel(encoder, model)` joins a frozen encoder for images.

Heads (§3.2.1): per joint token a linear map W_pose to its 6D rotation (shared by the 24
joint tokens, ours), the shape token to betas (W_shape) and to the crop camera
(s, tx, ty) — the camera is ours (HMR2.0's `deccam`), needed for the 2D loss and
overlays. The single-query variant (HMR2.0) reads all of them from its one token.
One round of iterative error feedback (IEF) from the SMPL mean parameters: the heads'
outputs are residuals added to the estimate. The query tokens are conditioned on the
current estimate, embedded linearly (`token_input` "estimate", ours; 4D-Humans has it as
the non-default TRANSFORMER_INPUT 'mean_shape'), or get a zero input embedded
(`token_input` "zero", HMR2.0's default: a learned constant).
6D -> rotation matrices -> SMPL -> vertices, SMPL-24 joints, H36M-17 joints, and the
KEYPOINTS_2D joints projected into the crop by the weak-perspective camera, in fp32 with
autocast off (`predict_body`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from model.config import ModelConfig
from model.decoder import Decoder, Queries
from model.deformable_attention import AttentionInfo
from model.geometry import crop_intrinsics, project, rot6d_to_matrix, weak_cam_to_transl

NUM_JOINTS = 24  # SMPL-24: global orientation + 23 body joints (the 24 joint tokens)
NUM_BETAS = 10
CAM_DIM = 3  # (s, tx, ty)


@dataclass
class ModelOutput:
    """Prediction for a batch of B crops (all tensors float, on the model's device).

    Parameters:
    - pose_6d: (B, 24, 6) 6D rotations (SPIN's interleaved layout, model.geometry), SMPL-24 order;
      row 0 is the global orientation in the crop camera frame.
    - rotmats: (B, 24, 3, 3) the same as rotation matrices.
    - betas: (B, 10) SMPL shape.
    - cam: (B, 3) weak-perspective crop camera (s, tx, ty) (see model.geometry).
    - cam_t: (B, 3) metres, the equivalent translation for the crop camera (focal
      FOCAL_CROP px at the crop centre): camera-frame points are `vertices + cam_t`.
    SMPL outputs (None when the model has no body model), body frame (no cam_t), metres:
    - vertices: (B, 6890, 3).
    - joints: (B, 24, 3) SMPL-24 joints.
    - keypoints_3d: (B, 24, 3) joints in `datasets.joints.KEYPOINTS_2D` order;
      keypoints_valid: (24,) bool, which of them the mesh defines.
    - keypoints_2d: (B, 24, 2) keypoints_3d + cam_t projected into crop pixels.
    - h36m: (B, 17, 3) H36M-17 joints from the regressor, or None without one.
    Attention (when asked for, else []): one `AttentionInfo` per decoder layer of the
    last IEF round: positions (B, G, H, W, 2), weights (B, heads, N, H*W).
    """

    pose_6d: torch.Tensor
    rotmats: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    cam_t: torch.Tensor
    vertices: torch.Tensor | None = None
    joints: torch.Tensor | None = None
    keypoints_3d: torch.Tensor | None = None
    keypoints_valid: torch.Tensor | None = None
    keypoints_2d: torch.Tensor | None = None
    h36m: torch.Tensor | None = None
    attention: list[AttentionInfo] = field(default_factory=list)


class DeforHMR(nn.Module):
    """Decoder + heads + SMPL over a feature map.

    mean_params: dict with pose (144,) 6D (SPIN's interleaved layout), shape (10,), cam (3,) — as
    `model.body_model.load_mean_params` returns from `smpl_mean_params.npz`.
    body_model: a `model.body_model.BodyModel` (or None: parameters only, no mesh).
    """

    def __init__(self, cfg: ModelConfig, mean_params: dict, body_model: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.queries = Queries(cfg)
        self.decoder = Decoder(cfg)
        # The body model is a fixed function, not state: kept out of the module tree so that
        # checkpoints hold no SMPL data (nor overwrite the real SMPL with a synthetic one on
        # load); `_apply` still moves it with the model (.to, .cuda, .double).
        object.__setattr__(self, "body_model", body_model)
        pose = torch.as_tensor(np.asarray(mean_params["pose"]), dtype=torch.float32).reshape(NUM_JOINTS, 6)
        self.register_buffer("mean_pose", pose)  # (24, 6)
        self.register_buffer("mean_betas", torch.as_tensor(np.asarray(mean_params["shape"]), dtype=torch.float32).reshape(NUM_BETAS))
        self.register_buffer("mean_cam", torch.as_tensor(np.asarray(mean_params["cam"]), dtype=torch.float32).reshape(CAM_DIM))
        self.register_buffer("crop_K", torch.as_tensor(crop_intrinsics(), dtype=torch.float32), persistent=False)
        if cfg.token_input == "zero":
            # 4D-Humans smpl_head.py: token = zeros(B, 1, 1) -> `to_token_embedding` nn.Linear(1, D),
            # i.e. its bias; applied to real zeros so the weight stays in the graph (DDP)
            self.embed_token = nn.Linear(1, d)
        elif cfg.queries == "multi":
            self.embed_pose = nn.Linear(6, d)  # IEF: joint token j += W (6D of joint j), ours
            self.embed_shape = nn.Linear(NUM_BETAS + CAM_DIM, d)  # shape token += W (betas, cam), ours
        else:
            self.embed_all = nn.Linear(NUM_JOINTS * 6 + NUM_BETAS + CAM_DIM, d)  # 4D-Humans 'mean_shape' input
        if cfg.queries == "multi":
            self.head_pose = nn.Linear(d, 6)  # W_pose, one map shared by the 24 joint tokens (ours)
        else:
            self.head_pose = nn.Linear(d, NUM_JOINTS * 6)  # HMR2.0 `decpose`
        self.head_betas = nn.Linear(d, NUM_BETAS)  # W_shape (HMR2.0 `decshape`)
        self.head_cam = nn.Linear(d, CAM_DIM)  # ours (HMR2.0 `deccam`)
        if cfg.init == "ours":  # ("hmr2": nn.Linear's defaults, INIT_DECODER_XAVIER unset in 4D-Humans)
            for head in (self.head_pose, self.head_betas, self.head_cam):
                # small residuals at the start (4D-Humans' optional INIT_DECODER_XAVIER: gain 0.01)
                nn.init.xavier_uniform_(head.weight, gain=0.01)
                nn.init.zeros_(head.bias)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.body_model is not None:
            self.body_model._apply(fn, *args, **kwargs)
        return self

    @classmethod
    def from_assets(cls, cfg: ModelConfig, assets) -> "DeforHMR":
        """Build with the neutral SMPL, the H36M regressor and the mean parameters of a
        `datasets.assets.Assets` (real or synthetic); a missing asset is a clear error."""
        from model.body_model import BodyModel, load_mean_params

        assets.require("smpl_neutral")
        body = BodyModel(assets.body_model_dir, gender="neutral", h36m_regressor=assets.require("h36m_regressor"))
        return cls(cfg, load_mean_params(assets.require("mean_params")), body)

    # ---- IEF: condition the tokens on the estimate, read residuals off them --------------
    def _condition(self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        """Estimate -> (B, N, D) added to the query tokens."""
        if self.cfg.token_input == "zero":
            return self.embed_token(pose6d.new_zeros(pose6d.shape[0], self.cfg.num_queries, 1))  # (B, N, D)
        if self.cfg.queries == "multi":
            joints = self.embed_pose(pose6d)  # (B, 24, D)
            shape = self.embed_shape(torch.cat([betas, cam], -1)).unsqueeze(1)  # (B, 1, D)
            return torch.cat([joints, shape], 1)  # (B, 25, D): 24 joint tokens, then the shape token
        return self.embed_all(torch.cat([pose6d.flatten(1), betas, cam], -1)).unsqueeze(1)  # (B, 1, D)

    def _read_out(self, tokens: torch.Tensor):
        """Decoded tokens (B, N, D) -> residuals (pose (B, 24, 6), betas (B, 10), cam (B, 3))."""
        if self.cfg.queries == "multi":
            shape_token = tokens[:, NUM_JOINTS]  # (B, D)
            return self.head_pose(tokens[:, :NUM_JOINTS]), self.head_betas(shape_token), self.head_cam(shape_token)
        t = tokens[:, 0]  # (B, D)
        return self.head_pose(t).reshape(-1, NUM_JOINTS, 6), self.head_betas(t), self.head_cam(t)

    def forward(self, features: torch.Tensor, need_attention: bool = False) -> ModelOutput:
        """features (B, C, H, W) (fp16 caches are cast to the model's dtype) -> ModelOutput."""
        b = features.shape[0]
        context = features.to(self.queries.tokens.dtype)
        pose6d = self.mean_pose.expand(b, -1, -1)  # (B, 24, 6)
        betas = self.mean_betas.expand(b, -1)  # (B, 10)
        cam = self.mean_cam.expand(b, -1)  # (B, 3)
        infos: list[AttentionInfo] = []
        for _ in range(self.cfg.ief_iters):
            tokens = self.queries(b) + self._condition(pose6d, betas, cam)  # (B, N, D)
            tokens, infos = self.decoder(tokens, context, need_attention)
            d_pose, d_betas, d_cam = self._read_out(tokens)
            pose6d, betas, cam = pose6d + d_pose, betas + d_betas, cam + d_cam
        return self.predict_body(pose6d, betas, cam, infos)

    def predict_body(self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor,
                     attention: list[AttentionInfo] | None = None) -> ModelOutput:
        """The estimate (pose6d (B, 24, 6), betas (B, 10), cam (B, 3)) -> ModelOutput: 6D ->
        rotation matrices -> SMPL -> 2D keypoints, all in fp32 with autocast off. (Under bf16
        autocast the SMPL and projection matmuls put vertices ~2 mm (mean) off and 2D
        keypoints ~0.4 px, and FOCAL_CROP 5000 rounds to 4992; the targets, `make eval`
        and validation all score fp32 bodies.)"""
        with torch.autocast(pose6d.device.type, enabled=False):
            dtype = self.crop_K.dtype  # the model's float type (fp32; autocast leaves buffers alone)
            pose6d, betas, cam = pose6d.to(dtype), betas.to(dtype), cam.to(dtype)
            out = ModelOutput(pose_6d=pose6d, rotmats=rot6d_to_matrix(pose6d), betas=betas, cam=cam,
                              cam_t=weak_cam_to_transl(cam), attention=attention or [])
            if self.body_model is not None:
                body = self.body_model(betas=out.betas, body_pose=out.rotmats[:, 1:], global_orient=out.rotmats[:, :1])
                out.vertices, out.joints, out.h36m = body.vertices, body.joints, body.h36m
                out.keypoints_3d, out.keypoints_valid = body.keypoints, body.keypoints_valid
                out.keypoints_2d = project(body.keypoints + out.cam_t[:, None], self.crop_K)  # (B, 24, 2) crop px
        return out


class ImageModel(nn.Module):
    """A frozen encoder (images (B, 3, 256, 192) -> features (B, C, H, W)) joined to a
    DeforHMR decoder. The encoder stays in eval mode and gets no gradient (paper §3.1)."""

    def __init__(self, encoder: nn.Module, model: DeforHMR):
        super().__init__()
        self.encoder, self.model = encoder, model
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> "ImageModel":
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor, need_attention: bool = False) -> ModelOutput:
        with torch.no_grad():
            features = self.encoder(images)
        return self.model(features, need_attention)
