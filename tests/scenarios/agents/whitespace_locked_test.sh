# Weakens a locked test by whitespace alone: the assert, indented one level more, moves under
# the early return (`git diff -w` shows nothing).
. "$(dirname "$0")/lib.sh"
sed -i "s/^    assert/        assert/" tests/test_core.py
save -m "reindent a test"
