"""The translation loop under two gloo processes: every rank ends with the same weights, rank 0 alone writes."""

import torch
from distributed_helpers import spawn


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    import os

    import torch.distributed as dist

    from translation import create_translator
    from translation.training import TranslationConfig, train_translator

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # the same initial weights on every rank, as DDP's broadcast would give
        translator = create_translator("cyclegan", preset="tiny")
        data = torch.Generator().manual_seed(1)
        a = torch.rand(8, 1, 32, 32, generator=data) * 2 - 1
        b = torch.rand(8, 1, 32, 32, generator=data) * 2 - 1
        config = TranslationConfig(iterations=4, batch_size=2, checkpoint_every=2, eval_every=4, eval_images=4,
                                   kid_subset_size=4, kid_subsets=2, kid_size=32, figures=False, progress=False,
                                   amp=False, seed=0)
        train_translator(translator, a, b, config, os.path.join(folder, "run"))
        torch.save({k: v for k, v in translator.state_dict().items() if "pool" not in k},
                   os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_end_with_identical_weights_and_one_writer(tmp_path):
    spawn(_worker, str(tmp_path))
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = {k: v for k, v in _initial().items() if k in w0}
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged: gradients were not averaged"
    assert any(not torch.equal(w0[k], start[k]) for k in start), "nothing was trained"
    assert (tmp_path / "run" / "translator.pt").is_file()


def _initial() -> dict:
    from translation import create_translator

    torch.manual_seed(0)
    return create_translator("cyclegan", preset="tiny").state_dict()


def _resume_worker(rank: int, world: int, port: int, folder: str) -> None:
    import os
    from pathlib import Path

    import torch.distributed as dist

    from translation import create_translator
    from translation.training import TranslationConfig, train_translator

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = torch.Generator().manual_seed(1)
        a = torch.rand(8, 1, 32, 32, generator=data) * 2 - 1
        b = torch.rand(8, 1, 32, 32, generator=data) * 2 - 1
        # a pool of 2 is full after one step: from then on each rank's pool holds its own share's fakes
        config = TranslationConfig(iterations=6, batch_size=2, checkpoint_every=3, eval_every=6, eval_images=4,
                                   kid_subset_size=4, kid_subsets=2, kid_size=32, figures=False, progress=False,
                                   amp=False, seed=0, keep_checkpoints=5)

        def fresh():
            torch.manual_seed(0)
            return create_translator("cyclegan", preset="tiny", pool_size=2)

        straight = fresh()
        train_translator(straight, a, b, config, os.path.join(folder, "straight"))
        cut = fresh()
        train_translator(cut, a, b, config, os.path.join(folder, "cut"))
        dist.barrier()
        if rank == 0:  # as if killed between the checkpoints of steps 3 and 6
            for name in ("checkpoints/step_00000006.pt", "translator.pt"):
                (Path(folder) / "cut" / name).unlink()
        dist.barrier()
        resumed = fresh()
        train_translator(resumed, a, b, config, os.path.join(folder, "cut"), resume=True)
        same = all(torch.equal(x, y) for x, y in zip(straight.state_dict().values(), resumed.state_dict().values())
                   if torch.is_tensor(x))
        pools = [torch.equal(x, y) for x, y in zip(straight.pool_a.images, resumed.pool_a.images)]
        torch.save({"same": same, "pools": pools}, os.path.join(folder, f"resume{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_resume_under_two_ranks_restores_each_ranks_image_pool(tmp_path):
    # each rank's pool differs (its own share's fakes); before the checkpoints held every rank's pool, rank 1 resumed
    # with rank 0's and trained differently from then on
    spawn(_resume_worker, str(tmp_path))
    for rank in (0, 1):
        result = torch.load(tmp_path / f"resume{rank}.pt", weights_only=True)
        assert result["pools"] == [True, True], (rank, result)
        assert result["same"], f"rank {rank}: the resumed run differs from the uninterrupted one"
