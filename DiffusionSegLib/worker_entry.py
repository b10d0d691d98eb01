"""Entry point of a worker started by the Slicer module (see DiffusionSegSlicerLib/Worker.py).

Same commands as `python -m DiffusionSegLib`, plus: the worker ends (cancelled, temporary files
removed) when its parent disappears, because the parent holds the other end of its stdin pipe.
The launcher starts it with an isolated import path and the backend folder added explicitly,
so nothing is imported from whatever folder the parent happened to be in.
"""

from __future__ import annotations

import sys

from .cli.main import main as cli_main
from .cli.protocol import exit_when_stdin_closes


def main(argv: list[str] | None = None) -> int:
    exit_when_stdin_closes()
    return cli_main(sys.argv[1:] if argv is None else argv)
