"""``orch.entry:main``: the console scripts' target before the house (orch 0.1).

An editable install keeps the ``orch`` and ``git-orch`` scripts it wrote until it is reinstalled;
they import this name. Today's entry point is ``orch.cli.entry.main``.
"""

from __future__ import annotations

from orch.cli.entry import main

__all__ = ["main"]
