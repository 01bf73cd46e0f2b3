"""The ``facecli`` command line: a thin layer that parses options and calls the pipeline.

``measure`` holds ``detect`` and ``video``; ``tools`` the smaller commands. This module only
builds the Typer app and registers them (they never import it back).
"""

from __future__ import annotations

import typer

from facecli import __version__
from facecli.cli import measure, tools
from facecli.cli.common import Exit, guarded

__all__ = ["Exit", "app", "guarded", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure facial behaviour in images and videos: faces, AUs, emotions, pose, gaze, mesh, identity.",
)
models_app = typer.Typer(no_args_is_help=True, help="List, download and verify model weights.")
app.add_typer(models_app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"facecli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """facecli: batch facial behaviour measurement."""


app.command()(measure.detect)
app.command()(measure.video)
app.command("cluster-identities")(tools.cluster_identities_cmd)
app.command()(tools.bench)
models_app.command("list")(tools.models_list)
models_app.command("download")(tools.models_download)
models_app.command("verify")(tools.models_verify)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="facecli")
