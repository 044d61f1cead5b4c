"""What the training loop tells the user: :class:`~snnkd_cli.reporting.Reporter` (the quiet base, re-exported
here from :mod:`snnkd_cli.reporting`, which also holds its Rich form)."""

from __future__ import annotations

from snnkd_cli.reporting import Reporter

__all__ = ["Reporter"]
