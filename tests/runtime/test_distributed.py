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


def _grad_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    from runtime.distributed import all_reduce_gradients, rank_seed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        weight = torch.nn.Parameter(torch.zeros(3))
        unused = torch.nn.Parameter(torch.zeros(1))
        (weight * (rank + 1.0)).sum().backward()  # rank r's gradient is r + 1 everywhere
        all_reduce_gradients([weight, unused])
        if rank == 1:
            torch.save({"grad": weight.grad, "unused": unused.grad, "seeds": (rank_seed(5),)}, out)
    finally:
        dist.destroy_process_group()


def test_all_reduce_gradients_averages_over_two_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "rank1.pt"
    mp.spawn(_grad_worker, args=(2, port, str(out)), nprocs=2, join=True)
    result = torch.load(out)
    assert torch.equal(result["grad"], torch.full((3,), 1.5))  # mean of 1 and 2
    assert result["unused"] is None
    assert result["seeds"][0] != 5  # rank 1 draws its own data order


def test_rank_seed_is_the_seed_on_one_process():
    from runtime.distributed import all_reduce_gradients, rank_seed

    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    all_reduce_gradients([p])
    assert rank_seed(7) == 7 and torch.equal(p.grad, torch.full((2,), 3.0))
