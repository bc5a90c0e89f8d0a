# Deletes another task's branch (orch/T0, finished before this one started).
. "$(dirname "$0")/lib.sh"
echo "x = 1" > src/x.py
save -m "clean work"
attempt git --git-dir="$COMMON" update-ref -d refs/heads/orch/T0
