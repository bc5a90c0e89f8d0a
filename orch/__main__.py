from __future__ import annotations

from orch.entry import main

main()
