"""Cross-dataset transfer of chest X-ray segmenters through unpaired translation (Oliveira & dos Santos, 2018).

Modules: :mod:`transfer.config` (frozen configurations), :mod:`transfer.steps` (discriminative / generative /
supervised steps), :mod:`transfer.orchestrator` (the alternating loop), :mod:`transfer.selection` (label-free and
labelled model selection), :mod:`transfer.protocol` (splits, nested label fractions, the target-label guard),
:mod:`transfer.baselines` (the segmenter trainings the baselines share), :mod:`transfer.methods` (the registry of
adaptation methods, one file each), :mod:`transfer.shared` (what a seed's cells share: data, M_A, the warm-up),
:mod:`transfer.cell` (one cell: context in, predictor out, scored on the test split), :mod:`transfer.sweep` (a
resumable grid of cells), :mod:`transfer.results` and :mod:`transfer.report` (Table II, plots, Wilcoxon tests).
"""

from transfer.config import PAPER_FRACTIONS, ExperimentConfig, TransferConfig

__all__ = ["PAPER_FRACTIONS", "ExperimentConfig", "TransferConfig"]
