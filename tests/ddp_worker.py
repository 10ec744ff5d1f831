"""Entry point of one DDP process for tests/test_trainer.py (importable for spawn)."""

from __future__ import annotations

import os
from pathlib import Path


def train_rank(rank: int, world: int, port: int, config_path: str, data: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)})
    import torch

    torch.set_num_threads(1)
    from training.data.manifest import read_manifest
    from training.train import run_training

    run_training("ae", config_path, read_manifest(data), Path(out))
    torch.distributed.destroy_process_group()
