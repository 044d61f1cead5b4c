"""The Typer command line (``snnkd``)."""
