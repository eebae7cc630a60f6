"""The ``cxr-transfer`` command group. Each sub-command lives in ``experiments/commands/<name>.py``."""

from __future__ import annotations

import click

from experiments.commands.demo import demo
from experiments.commands.experiment import experiment
from experiments.commands.prepare import prepare
from experiments.commands.segment import segment
from experiments.commands.transfer import transfer
from experiments.commands.translate import translate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="cxr-transfer")
def cli() -> None:
    """cxr-transfer: adapt chest X-ray segmenters across datasets with unpaired translation.

    \b
    Typical session:
      cxr-transfer demo                                   # everything end to end on phantoms, CPU, < 3 min
      cxr-transfer prepare jsrt --images IMGS --masks SCR --out data/jsrt
      cxr-transfer prepare montgomery --root MontgomerySet --out data/montgomery
      cxr-transfer segment train --data data/jsrt --model unet --classes lungs
      cxr-transfer experiment sweep --source data/jsrt --target data/montgomery --seeds 0,1,2
      cxr-transfer experiment report --runs runs/sweep
    """


for command in (demo, prepare, segment, translate, transfer, experiment):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cxr-transfer")


if __name__ == "__main__":
    main()
