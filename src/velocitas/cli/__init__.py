"""Command-line entry point (typer) and its terminal rendering (rich)."""
