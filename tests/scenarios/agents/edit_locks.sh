# Removes the lock on src/pricing.py from the main checkout's .orch/locks.yaml ("$1": direct, by
# absolute path, or relative, through ../../../.orch/ from the worktree), then edits that file.
. "$(dirname "$0")/lib.sh"
if [ "$1" = direct ]; then orch="$MAIN/.orch"; else orch=../../../.orch; fi
attempt sed -i "/id: L1/,/reason:/d" "$orch/locks.yaml"
echo "PRICE = 0" > src/pricing.py
save -m "free for all"
