"""``python -m velocitas`` runs the CLI."""

from velocitas.cli.main import app

app(prog_name="velocitas")
