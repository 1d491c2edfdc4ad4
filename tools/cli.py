"""The `mynaemu` command line (click): card, issue, kiosk and demo groups."""
import click


@click.group()
def main():
    """mynaemu: a software Individual Number Card and its TEST back office."""


@main.group()
def card():
    """Create, inspect and serve virtual cards."""
