"""Cross-dataset transfer of chest X-ray segmenters through unpaired translation (Oliveira & dos Santos, 2018).

Modules: :mod:`transfer.config` (frozen configurations), :mod:`transfer.steps` (discriminative / generative /
supervised steps), :mod:`transfer.orchestrator` (the alternating loop), :mod:`transfer.selection` (label-free and
labelled model selection), :mod:`transfer.protocol` (splits, nested label fractions, the target-label guard),
:mod:`transfer.baselines` (source-only, histogram matching, fine-tuning, from scratch), :mod:`transfer.sweep`
(one cell, a resumable grid) and :mod:`transfer.report` (Table II, plots, Wilcoxon tests, overlays).
"""

from transfer.config import METHODS, PAPER_FRACTIONS, ExperimentConfig, TransferConfig

__all__ = ["METHODS", "PAPER_FRACTIONS", "ExperimentConfig", "TransferConfig"]
