"""`cxr-transfer translate` commands (placeholder group until its issue lands)."""

import click


@click.group(name="translate")
def translate() -> None:
    """(being built) see the project's issues."""
