"""Batches drawn by index from tensors or disk arrays, read ahead by ``torch.utils.data`` workers.

Every training loop decides *which* rows form each batch (a seeded permutation, this rank's share) and this module
only *reads* them: :func:`stream_batches` turns an iterable of index tensors into batches of rows, in the same
order, from in-memory tensors (the fast case: plain indexing, no worker) or from
:class:`runtime.store.DiskArray` files (worker processes, pinned memory, prefetching). Both give the same values for
the same indices, and the index stream never depends on how far reading has run ahead, so resume stays exact.
Under torchrun the loops' indices are already this rank's share (``runtime.distributed.rank_indices``: every rank
draws the epoch's permutation and keeps every ``world``-th item), so no rank reads the whole set.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from runtime.store import DiskArray, is_stored

Array = Tensor | DiskArray


def default_workers() -> int:
    """Reader processes for disk arrays: ``$CXR_WORKERS``, else half the CPU cores (at least 1, at most 8)."""
    env = os.environ.get("CXR_WORKERS")
    if env:
        try:
            return max(0, int(env))
        except ValueError as err:
            raise ValueError(f"expected an integer CXR_WORKERS, got {env!r}") from err
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class _Rows(Dataset):
    """Rows of aligned arrays; ``__getitems__`` reads a whole batch in one call per array."""

    def __init__(self, arrays: Sequence[Array]) -> None:
        self.arrays = [a if is_stored(a) else a.cpu() for a in arrays]

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(a[[i]][0] for a in self.arrays)

    def __getitems__(self, index: list) -> tuple[Tensor, ...]:
        if index and isinstance(index[0], tuple):  # one index list per array (see _IndexBatches)
            return tuple(a[torch.as_tensor(i, dtype=torch.long)] for a, i in zip(self.arrays, index[0]))
        positions = torch.as_tensor(index, dtype=torch.long)
        return tuple(a[positions] for a in self.arrays)


def _identity(batch: Any) -> Any:
    return batch


class _IndexBatches:
    """A batch sampler over an iterable of index tensors (possibly endless)."""

    def __init__(self, batches: Iterable[Tensor]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list]:
        for index in self.batches:
            # a tuple (one index tensor per array) travels as a one-item list holding the index lists
            yield [tuple(i.tolist() for i in index)] if isinstance(index, tuple) else index.tolist()


def stream_batches(arrays: Sequence[Array], batches: Iterable[Tensor | tuple[Tensor, ...]],
                   device: torch.device | str | None = None, workers: int | None = None,
                   prefetch: int = 4) -> Iterator[tuple[Tensor, ...]]:
    """Yield ``tuple(a[index] for a in arrays)`` for each ``index`` of ``batches``, on ``device``.

    Args:
        arrays: tensors or disk arrays with the same first dimension (or of any lengths, with tuple indices).
        batches: index tensors, or tuples of one index tensor per array, consumed lazily (an endless generator is
            fine); read-ahead never changes them.
        device: device of the yielded tensors (default: the first array's device).
        workers: reader processes for disk arrays (default :func:`default_workers`; 0 reads in this process).
            Ignored when every array is an in-memory tensor (plain indexing is faster than any worker).
        prefetch: batches each worker reads ahead.
    """
    device = torch.device(device) if device is not None else arrays[0].device
    if not any(is_stored(a) for a in arrays):
        for index in batches:
            per_array = index if isinstance(index, tuple) else (index,) * len(arrays)
            yield tuple(a[i.to(a.device)].to(device, non_blocking=True) for a, i in zip(arrays, per_array))
        return
    workers = default_workers() if workers is None else workers
    loader = DataLoader(_Rows(arrays), batch_sampler=_IndexBatches(batches), num_workers=workers,
                        collate_fn=_identity, pin_memory=device.type == "cuda",
                        prefetch_factor=prefetch if workers > 0 else None, persistent_workers=False,
                        generator=torch.Generator().manual_seed(0))  # workers' seeds: the global RNG is untouched
    for batch in loader:
        yield tuple(t.to(device, non_blocking=True) for t in batch)


def chunks(n: int, size: int, start: int = 0) -> Iterator[Tensor]:
    """Consecutive index tensors ``[start, start + size)``, ... covering ``range(start, n)`` (for evaluation)."""
    for begin in range(start, n, size):
        yield torch.arange(begin, min(n, begin + size))


class ReadAhead:
    """Run an iterator in a background thread, ``depth`` items ahead (``os.pread`` and numpy release the GIL).

    For endless batch streams that live as long as a loop (the transfer loop's forever-iterators): a thread needs
    no process start-up or shutdown, and :meth:`close` stops it at once. Exceptions reach the consumer.
    """

    def __init__(self, iterator: Iterator[Any], depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator: Iterator[Any]) -> None:
        try:
            for item in iterator:
                if not self._put((True, item)):
                    return
            self._put((False, StopIteration()))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            self._put((False, err))

    def __iter__(self) -> "ReadAhead":
        return self

    def __next__(self) -> Any:
        ok, item = self._queue.get()
        if ok:
            return item
        raise item

    def close(self) -> None:
        """Stop the thread (items read ahead are dropped)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __del__(self) -> None:
        self._stop.set()
