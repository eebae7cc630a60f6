import pytest
import torch
from distributed_helpers import spawn

from runtime.distributed import (
    data_parallel,
    get_rank,
    get_world_size,
    is_main_process,
    local_device,
    on_main,
    rank_indices,
    sync_from_main,
    unwrap,
)


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
    out = tmp_path / "rank1.pt"
    spawn(_grad_worker, str(out))
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


def test_helpers_are_plain_on_one_process(monkeypatch):
    model = torch.nn.Conv2d(1, 1, 1)
    assert data_parallel(model) is model and sync_from_main(model) is model
    assert on_main(lambda: 7) == 7
    assert local_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert local_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected --device auto, cuda or cpu under torchrun"):
        local_device("cuda:1")


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP starts every rank from rank 0's
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2))
        wrapped = data_parallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):  # each rank its own batch: gradients averaged, BatchNorm statistics each rank's own
            x = torch.full((2, 1, 4, 4), float(rank + step)) + torch.arange(16.0).view(1, 1, 4, 4)
            optimizer.zero_grad()
            wrapped(x).square().mean().backward()
            optimizer.step()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        copy = torch.nn.BatchNorm2d(2)
        copy.running_mean.fill_(float(rank))
        copy.weight.data.fill_(float(rank))
        sync_from_main(copy, buffers_only=True)
        synced = {"mean": copy.running_mean.clone(), "weight": copy.weight.detach().clone()}
        sync_from_main(model)
        value = on_main(lambda: {"rank": get_rank()})

        def fail() -> None:
            raise ValueError("no such folder\nsecond line")

        try:
            on_main(fail)
        except (ValueError, RuntimeError) as err:
            error = f"{type(err).__name__}: {err}"
        torch.save({"before": before, "after": model.state_dict(), "value": value, "error": error,
                    "synced": synced}, f"{out}{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_data_parallel_sync_and_on_main_across_two_processes(tmp_path):
    spawn(_ddp_worker, str(tmp_path / "rank"))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    weights = [k for k in r0["after"] if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(r0["before"][k], r1["before"][k]) for k in weights)  # DDP kept the weights identical
    assert not torch.equal(r0["before"]["1.running_mean"], r1["before"]["1.running_mean"])  # each rank's statistics
    assert all(torch.equal(r0["after"][k], r1["after"][k]) for k in r0["after"])  # rank 0's everywhere
    assert all(torch.equal(r0["after"][k], r0["before"][k]) for k in r0["after"])
    assert torch.equal(r1["synced"]["mean"], torch.zeros(2))  # buffers_only: rank 0's statistics
    assert torch.equal(r1["synced"]["weight"], torch.ones(2))  # and the rank's own weights
    assert r0["value"] == r1["value"] == {"rank": 0}
    assert r0["error"] == "ValueError: no such folder\nsecond line"  # rank 0 raises its own error
    assert r1["error"] == "RuntimeError: no such folder"  # the others its first line
