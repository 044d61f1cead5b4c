"""``python -m snnkd_cli`` (also what ``torchrun -m snnkd_cli`` runs)."""

from snnkd_cli.cli.app import main

main()
