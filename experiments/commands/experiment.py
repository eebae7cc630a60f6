"""`cxr-transfer experiment` commands (placeholder group until its issue lands)."""

import click


@click.group(name="experiment")
def experiment() -> None:
    """(being built) see the project's issues."""
