"""Synthetic stand-ins, in the real files' layouts, for tests and the demo.

- `datasets.synthetic.body`: the SMPL-family assets (SMPL, H36M regressor, mean
  parameters, SMPL-X, SMPL-X -> SMPL matrix); `write_synthetic_assets(assets_root)`.
- `python -m datasets.synthetic --out DIR` (`make synthetic OUT=DIR`): writes them all
  under DIR (see `__main__`). Every file says it is synthetic (`datasets.assets.is_synthetic`).
"""
