"""``python -m orch.hookmain pre-commit|claude-pretool|codex-pretool|gemini-pretool``: what the installed
hooks run.

Kept tiny on purpose: the module run with ``-m`` is compiled from source on every start, so the
work lives in ``orch.cli.hook`` (whose bytecode is cached).
"""

from __future__ import annotations

import sys

from orch.cli.hook import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
