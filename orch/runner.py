"""``python -m orch.runner ROOT ID``: the supervisor's command line as orch 0.1 started it.

A supervisor started by an older orch (in a tmux session, say) is named this way; the supervisor
itself lives in ``orch.agents.supervisor``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from orch.agents.supervisor import main

    sys.exit(main(sys.argv[1:]))
