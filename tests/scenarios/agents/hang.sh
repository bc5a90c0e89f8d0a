# Commits some work, then hangs: only the timeout ends it.
. "$(dirname "$0")/lib.sh"
echo "done so far" > src/partial.py
save -m "partial work"
sleep 600
