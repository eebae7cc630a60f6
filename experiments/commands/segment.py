"""`cxr-transfer segment` commands (placeholder group until its issue lands)."""

import click


@click.group(name="segment")
def segment() -> None:
    """(being built) see the project's issues."""
