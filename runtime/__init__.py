"""Training infrastructure shared by ``segmentation/``, ``translation/`` and ``transfer/``.

It knows nothing of images, masks, segmenters or translators: atomic file writes, seeding and RNG
state, checkpoints that make resume exact, device and autocast selection, DDP-aware helpers
(rank-0 logging and saving), TensorBoard logging and progress bars.
"""

from runtime.checkpoint import keep_latest, latest_checkpoint, load_checkpoint, save_checkpoint
from runtime.config import config_from_dict, config_to_dict, load_config, save_config
from runtime.device import autocast, resolve_device
from runtime.distributed import (all_reduce_gradients, barrier, get_rank, get_world_size, is_main_process, rank_seed,
                                 unwrap)
from runtime.io import atomic_path, atomic_save_torch, atomic_write_bytes, atomic_write_json, atomic_write_text
from runtime.logging import RunLogger, progress
from runtime.seed import get_rng_state, seed_everything, set_generator_state, set_rng_state

__all__ = [
    "RunLogger",
    "all_reduce_gradients",
    "atomic_path",
    "atomic_save_torch",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "autocast",
    "barrier",
    "config_from_dict",
    "config_to_dict",
    "get_rank",
    "get_rng_state",
    "get_world_size",
    "is_main_process",
    "keep_latest",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "progress",
    "rank_seed",
    "resolve_device",
    "save_checkpoint",
    "save_config",
    "seed_everything",
    "set_generator_state",
    "set_rng_state",
    "unwrap",
]
