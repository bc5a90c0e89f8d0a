# Renames a locked test (so it no longer runs under its name).
. "$(dirname "$0")/lib.sh"
git mv tests/test_core.py tests/old_core.py
save -m "move a test"
