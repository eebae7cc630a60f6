"""transfer: the source segmenter M_A trained inside an unpaired translator (Oliveira & dos Santos, SIBGRAPI 2018).

Two registry entries share this file: ``transfer`` runs the ``default`` preset of :class:`transfer.config.TransferConfig`
(the paper's loop plus the additions measured in docs/results/transfer.md), ``paper`` runs exactly the published
method (``TransferConfig.preset("paper")``: prediction M_A(G_BA(b)), no EMA, no self-training, no view averaging,
no augmentation, cross-entropy, selection on the target validation labels), reported under its own name.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from runtime.device import use_channels_last
from runtime.distributed import is_main_process
from runtime.store import head_rows
from segmentation.config import SegmentationConfig
from segmentation.data.preprocessing import normalize
from segmentation.inference import save_segmenter
from transfer.config import ExperimentConfig, TransferConfig
from transfer.methods.base import (
    CellContext,
    Method,
    MethodOutput,
    Predictor,
    mean_jaccard,
    score,
)
from transfer.orchestrator import TransferOrchestrator
from transfer.prediction import predict_views
from transfer.selection import MAX_IMAGES, Selector
from transfer.shared import (
    build_translator,
    make_monitor,
    normalizer,
    report_line,
    warmup_file,
)
from translation import save_translator

ADAPTED_TRANSLATOR = "translator.pt"
ADAPTED_SEGMENTER = "segmenter.pt"
#: other prediction views reported beside a transfer cell's result (never used to select)
VIEW_SCORES = {"paper": ("translated",), "direct": ("direct",), "direct_flip": ("direct", "direct_flip")}
OPTIONS = ("transfer", "translator", "translator_preset", "translator_kwargs")


def adapt(ctx: CellContext, config: TransferConfig) -> MethodOutput:
    """Run the orchestrator in the cell folder (resuming an interrupted run) and return the selected models'
    prediction; writes the adapted ``translator.pt`` and ``segmenter.pt`` for ``cxr-transfer transfer predict``.

    M_A and the source masks keep every source class (``exp.model_classes``); target labels, label-based selection
    and the returned prediction use the scored classes (M_A's channels ``ctx.class_index``).
    """
    exp, run, device = ctx.exp, ctx.run, ctx.device
    config = config.replace(seed=exp.seed)
    index = ctx.class_index
    channels = index if tuple(exp.model_classes) != tuple(exp.classes) else None
    labelled_data = ctx.labelled
    src_train = ctx.source_full.subset(ctx.source_split["train"])
    src_val = ctx.source_full.subset(ctx.source_split["val"])
    labelled = (labelled_data.images, labelled_data.masks) if labelled_data is not None else None
    unlabelled = ctx.target.unlabelled_images()
    norm = normalizer(exp)
    selector = Selector(config.selection, norm, source_val=(src_val.images, src_val.masks),
                        target_images=head_rows([unlabelled, ctx.target_val.images], MAX_IMAGES), labelled=labelled,
                        target_val=(ctx.target_val.images, ctx.target_val.masks)
                        if config.selection == "paper_target_val" else None, target_channels=channels,
                        source_masks=src_train.masks, views=config.predict_views)
    path, key = warmup_file(exp, src_train.ids, ctx.target.ids)
    monitor = make_monitor(src_val.images, ctx.target_val.images, exp.size, exp.seed)
    overlay = (labelled_data.images, labelled_data.masks) if labelled_data is not None else (
        ctx.target_val.images, None)  # ground truth only where labels may be read: never at 0%
    orch = TransferOrchestrator(build_translator(exp, device), copy.deepcopy(ctx.m_a_full).to(device), config,
                                normalize=norm, run_dir=run, target_channels=channels, monitor=monitor,
                                overlay=overlay, show_progress=sys.stderr.isatty(), report=report_line,
                                channels_last=use_channels_last(device, exp.channels_last), compile=exp.compile,
                                dark_gate=exp.dark_gate)
    fit = orch.fit(src_train.images, src_train.masks, unlabelled, labelled, selector, warmup_cache=path,
                   warmup_key=key, resume=True)
    if is_main_process():
        save_adapted(run, orch, exp, ctx.full_config)

    def views(names: tuple[str, ...] | None) -> Predictor:
        return lambda images: torch.sigmoid(orch.predict(images, views=names)[:, index])

    full = None
    if tuple(exp.model_classes) != tuple(exp.classes):
        mode = ctx.full_config.normalization
        full = lambda images: predict_views(orch.ema_translator.module, orch.ema_segmenter.module,  # noqa: E731
                                            images, lambda x: normalize(x, mode), ("translated",)).cpu()
    logs = {"best_iteration": fit.best_iteration, "best_score": fit.best_score, "selection": config.selection,
            "history": fit.history, "train_seconds": fit.seconds,
            # the prediction views on the target validation labels: where a view default may honestly be chosen
            "val_views": {name: mean_jaccard(score(views(v), ctx.seg_config, ctx.target_val), exp.classes)
                          for name, v in {"default": None, **VIEW_SCORES}.items()}}
    return MethodOutput(predict=views(None), config=ctx.seg_config, logs=logs,
                        views={name: views(v) for name, v in VIEW_SCORES.items()}, predict_all_classes=full)


def save_adapted(run: Path, orch: TransferOrchestrator, exp: ExperimentConfig,
                 seg_config: SegmentationConfig) -> None:
    """Write the selected (EMA) G_BA translator and M_A of a transfer cell, for ``cxr-transfer transfer predict``."""
    save_translator(orch.ema_translator.module, run / ADAPTED_TRANSLATOR,
                    {"image_size": exp.size, "normalization": "[-1, 1] = 2 * x - 1", "domains": {
                        "a": exp.source, "b": exp.target}, "checksums": {}})
    save_segmenter(orch.ema_segmenter.module, run / ADAPTED_SEGMENTER, seg_config,
                   {"adapted": True, "target": exp.target, "input": "M_A(G_BA(b))"})


def run_default(ctx: CellContext) -> MethodOutput:
    """The ``default`` preset with the cell's ``--transfer`` settings."""
    return adapt(ctx, ctx.exp.transfer)


def run_paper(ctx: CellContext) -> MethodOutput:
    """Exactly the published method, with the cell's budget (iterations, warm-up, batch size, learning rates)."""
    return adapt(ctx, ctx.exp.transfer.replace(**TransferConfig.PRESETS["paper"]))


METHOD = Method("transfer", run_default, "M_A inside the translator, the measured default preset", translator=True,
                options=OPTIONS)
PAPER = Method("paper", run_paper, "M_A inside the translator, exactly as published (target-validation selection)",
               translator=True, options=OPTIONS)
