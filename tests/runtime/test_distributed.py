import torch

from runtime.distributed import get_rank, get_world_size, is_main_process, rank_indices, unwrap


def test_single_process_defaults():
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)


def test_rank_indices_cover_every_item_once_without_ddp():
    idx = rank_indices(10, torch.Generator().manual_seed(0))
    assert sorted(idx.tolist()) == list(range(10))


def test_unwrap_returns_inner_module():
    inner = torch.nn.Linear(2, 2)
    assert unwrap(torch.nn.DataParallel(inner)) is inner
