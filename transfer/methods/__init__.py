"""The registry of adaptation methods: ``--method NAME`` looks here.

Add a method: write ``transfer/methods/<name>.py`` with ``run(ctx: CellContext) -> MethodOutput`` and a
``METHOD = Method("<name>", run, "one line")``, then add it to :data:`METHODS` below. Nothing else changes: the
sweep, ``experiment run``, the cell identity and the report take it from here.
"""

from __future__ import annotations

from transfer.methods import (
    adabn,
    adaptft,
    augselftrain,
    augsource,
    fda,
    finetune,
    histmatch,
    scratch,
    selftrain,
    semisup,
    source_only,
    transfer,
)
from transfer.methods.base import CellContext, Method, MethodOutput, Predictor, segmenter_predictor

METHODS: dict[str, Method] = {m.name: m for m in (
    transfer.METHOD,
    transfer.PAPER,
    selftrain.METHOD,
    semisup.METHOD,
    finetune.METHOD,
    scratch.METHOD,
    source_only.METHOD,
    histmatch.METHOD,
    adabn.METHOD,
    augsource.METHOD,
    fda.METHOD,
    augselftrain.METHOD,
    adaptft.METHOD,
)}


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        ValueError: for an unknown name (lists the registered ones).
    """
    if name not in METHODS:
        raise ValueError(f"expected a method in {sorted(METHODS)}, got {name!r}; add new ones to "
                         "transfer.methods.METHODS")
    return METHODS[name]


__all__ = ["METHODS", "CellContext", "Method", "MethodOutput", "Predictor", "get_method", "segmenter_predictor"]
