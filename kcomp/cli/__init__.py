"""The `kcomp` command (app.py builds the parser; one module per group of subcommands)."""

from kcomp.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
