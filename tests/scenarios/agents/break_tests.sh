# Breaks the integration tests (check.sh fails on a BROKEN marker under src/).
. "$(dirname "$0")/lib.sh"
echo "# BROKEN" >> src/app.py
save -m "break the build"
