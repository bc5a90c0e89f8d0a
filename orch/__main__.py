from __future__ import annotations

from orch.cli.entry import main

main()
