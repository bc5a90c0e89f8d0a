# Widens its own scope in the main checkout's .orch/plan.md ("$1": direct or relative), then
# edits a file outside the scope it was given.
. "$(dirname "$0")/lib.sh"
if [ "$1" = direct ]; then orch="$MAIN/.orch"; else orch=../../../.orch; fi
attempt sed -i "s/^- scope: .*/- scope: ^/" "$orch/plan.md"
echo "rewritten by the agent" >> docs/guide.md
save -m "edit the guide"
