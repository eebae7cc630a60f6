"""`cxr-transfer demo` (placeholder until the transfer issue lands)."""

import click


@click.command(name="demo")
def demo() -> None:
    """Run the whole mission end to end on phantoms (being built)."""
    raise click.ClickException("the demo is being built")
