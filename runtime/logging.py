"""TensorBoard logging and progress bars, active on rank 0 only."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Mapping, TypeVar

import torch

from runtime.distributed import is_main_process

T = TypeVar("T")


class RunLogger:
    """A thin TensorBoard writer that does nothing on ranks other than 0 or when ``log_dir`` is None.

    Args:
        log_dir: folder for the event files (TensorBoard's ``--logdir`` can be any parent of it).
    """

    def __init__(self, log_dir: str | os.PathLike | None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer = None
        if self.log_dir is not None and is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir))

    @property
    def active(self) -> bool:
        return self._writer is not None

    def scalars(self, values: Mapping[str, float | torch.Tensor], step: int, prefix: str = "") -> None:
        """Log every value of ``values`` as ``prefix/name``."""
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().item()
            self._writer.add_scalar(f"{prefix}/{name}" if prefix else name, float(value), step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """Log one CHW image with values in [0, 1]."""
        if self._writer is not None:
            self._writer.add_image(tag, image.detach().float().clamp(0, 1).cpu(), step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def figure(self, tag: str, figure, step: int) -> None:  # noqa: ANN001 - a matplotlib figure, optional
        if self._writer is not None:
            self._writer.add_figure(tag, figure, step)

    def layout(self, layout: Mapping[str, Mapping[str, list]]) -> None:
        """Write a custom-scalars layout (TensorBoard's CUSTOM SCALARS page): ``{category: {title: [kind, [regex]]}}``."""
        if self._writer is not None:
            self._writer.add_custom_scalars(dict(layout))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             enabled: bool = True, initial: int = 0) -> Iterator[T]:
    """A tqdm progress bar on rank 0 (to stderr); the bare iterable elsewhere or when disabled."""
    from tqdm.auto import tqdm

    disable = not enabled or not is_main_process()
    if iterable is None:
        iterable = range(initial, total) if total is not None else range(0)
    return tqdm(iterable, total=total, desc=desc, disable=disable, initial=initial, file=sys.stderr,
                dynamic_ncols=True, leave=False)
