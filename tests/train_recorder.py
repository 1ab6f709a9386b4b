"""Train through `train.run.train` and record what this rank saw (a launcher script for DDP tests).

    python tests/train_recorder.py OUT CONFIG FEATURES RUN ASSETS [SECTION.KEY=VALUE ...]

Writes OUT/rank<global rank>.pt: the sample keys of every training batch of this rank, its
final decoder weights, the step and the world size. Started by Lightning's own DDP launcher
(tests/test_train.py) or by torchrun, one per node (tests/test_scaleout.py).
"""
import sys

import torch
from lightning.pytorch.callbacks import Callback

from train.config import load_config
from train.run import train


class Record(Callback):
    def __init__(self, out: str):
        self.out, self.keys = out, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.keys += batch["key"]

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()}
        torch.save({"keys": self.keys, "state": state, "step": trainer.global_step, "world": trainer.world_size},
                   f"{self.out}/rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out, config, features, run, assets = sys.argv[1:6]
    train(load_config(config, sys.argv[6:]), features, run, assets=assets, extra_callbacks=[Record(out)])
