"""`cxr-transfer prepare` commands (placeholder group until its issue lands)."""

import click


@click.group(name="prepare")
def prepare() -> None:
    """(being built) see the project's issues."""
