"""`cxr-transfer demo`: the whole mission end to end on phantoms, on CPU, in a few minutes."""

from __future__ import annotations

import time
from pathlib import Path

import click

DEMO_FRACTION = 0.05


def run_demo(out: str | Path = "runs/demo", size: int = 32, n_source: int = 48, n_target: int = 60,
             iterations: int = 60, source_iterations: int = 150, fraction: float = DEMO_FRACTION,
             device: str = "cpu", echo=print) -> dict:
    """Train M_A on phantom domain A, adapt it to domain B at 0% and ``fraction`` labels, compare with baselines.

    Runs the same code as a real sweep (``transfer.sweep.run_sweep`` on prepared dataset folders written by
    ``segmentation.data.phantoms.write_phantom_dataset``), then ``transfer.report.write_report``.

    Args:
        out: output folder (phantom data, sweep cells with TensorBoard logs, report with table and plot).
        size: image side; n_source / n_target: phantoms per domain.
        iterations: transfer iterations (warm-up: half of them); source_iterations: steps of M_A.
        fraction: the small label fraction besides 0.
        device: torch device.
        echo: where progress lines go.

    Returns:
        ``{"rows": results, "report": paths, "seconds": wall time}``.
    """
    from segmentation.data.phantoms import write_phantom_dataset
    from transfer.config import ExperimentConfig, TransferConfig
    from transfer.report import markdown_table, summarize_results, write_report
    from transfer.sweep import run_sweep

    start = time.perf_counter()
    out = Path(out)
    data = out / "data"
    for domain, n, seed in (("a", n_source, 0), ("b", n_target, 1)):
        if not (data / domain / "images").is_dir():
            write_phantom_dataset(data / domain, n, size, domain, seed)
    transfer = TransferConfig(iterations=iterations, warmup_iterations=max(1, iterations // 2),
                              steps_per_epoch=max(1, iterations // 3), batch_size=8, lr_segmenter=3e-4,
                              ema_decay=0.95, pseudo_start=0.3, log_every=5)
    base = ExperimentConfig(source=str(data / "a"), target=str(data / "b"), out=str(out / "sweep"), size=size,
                            segmenter="unet", segmenter_kwargs={"depth": 3, "base_channels": 8},
                            translator="cyclegan", translator_preset="tiny", source_iterations=source_iterations,
                            finetune_iterations=max(1, source_iterations // 2), device=device, transfer=transfer)
    methods = ["source_only", "histmatch", "finetune", "scratch", "transfer", "paper"]
    rows = run_sweep(base, methods, [0.0, fraction], [0], log=echo)
    paths = write_report(base.out, out / "report")
    seconds = time.perf_counter() - start
    echo("")
    echo(markdown_table(summarize_results(rows), "jaccard"))
    echo("")
    echo(f"Jaccard (%) on the domain-B test split, mean +- std over images; demo wall time {seconds:.1f} s")
    echo(f"report: {paths['markdown']}  plot: {paths['plot']}  TensorBoard: tensorboard --logdir {base.out}")
    return {"rows": rows, "report": paths, "seconds": seconds}


@click.command(name="demo")
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True,
              help="output folder (data, sweep cells, TensorBoard logs, report).")
@click.option("--size", type=click.IntRange(16), default=32, show_default=True, help="phantom side in pixels.")
@click.option("--iterations", type=click.IntRange(2), default=60, show_default=True,
              help="transfer iterations (the warm-up is half as long).")
@click.option("--source-iterations", type=click.IntRange(1), default=150, show_default=True,
              help="training steps of the source segmenter.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=DEMO_FRACTION, show_default=True,
              help="the small target label fraction compared with 0%.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="torch intra-op threads; these models are tiny, and more threads than free cores slow them down.")
def demo(out: str, size: int, iterations: int, source_iterations: int, fraction: float, device: str,
         threads: int) -> None:
    """Run the whole mission end to end on phantoms (CPU, a few minutes on 2 cores).

    Trains a U-Net on phantom domain A, adapts it to domain B (another "scanner") with the transfer method (a tiny
    CycleGAN with the segmenter in the loop) at 0% and 5% target labels, compares it with source-only, histogram
    matching, fine-tuning and training from scratch, prints the table and writes TensorBoard logs and a plot.
    Running it again reuses finished cells.

    \b
    Examples:
      cxr-transfer demo
      cxr-transfer demo --out /tmp/demo --size 32 --iterations 30 --source-iterations 80
      tensorboard --logdir runs/demo/sweep
    """
    import torch

    torch.set_num_threads(threads)
    run_demo(out=out, size=size, iterations=iterations, source_iterations=source_iterations, fraction=fraction,
             device=device, echo=click.echo)
