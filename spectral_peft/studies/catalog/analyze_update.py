"""Where does a fine-tuning update live? Real ΔW per basis and selector (not a grid of training runs:
a ``COMMAND`` with its own command line, see :mod:`spectral_peft.studies.update_analysis.command`)."""
from __future__ import annotations

from ..update_analysis.command import COMMAND

__all__ = ["COMMAND"]
