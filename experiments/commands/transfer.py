"""`cxr-transfer transfer` commands (placeholder group until its issue lands)."""

import click


@click.group(name="transfer")
def transfer() -> None:
    """(being built) see the project's issues."""
