# Deletes a locked test.
. "$(dirname "$0")/lib.sh"
rm tests/test_core.py
save -m "drop a test"
