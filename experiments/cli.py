"""The ``cxr-transfer`` command group. Each sub-command lives in ``experiments/commands/<name>.py``."""

from __future__ import annotations

import os
import sys

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


#: Errors a user can act on: bad input, files, memory. They end the command with one line (exit 1); set
#: CXR_DEBUG=1 for the traceback. Anything else (a bug) keeps its traceback.
USER_ERRORS = (ValueError, OSError, KeyError, MemoryError, RuntimeError)  # torch's OutOfMemoryError is a RuntimeError


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(err).strip().strip("'\"")
    return text.splitlines()[0].strip() if text else type(err).__name__


def main() -> None:
    try:
        cli.main(prog_name="cxr-transfer", standalone_mode=True)
    except USER_ERRORS as err:
        if os.environ.get("CXR_DEBUG"):
            raise
        message = one_line(err)
        if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in message or (
                "out of memory" in message.lower()):
            message = f"out of memory ({message[:160]}); lower --size or --batch-size"
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
