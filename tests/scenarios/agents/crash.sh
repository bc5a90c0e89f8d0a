# Commits some work, leaves more uncommitted, then kills its supervisor: the run crashes mid-way.
. "$(dirname "$0")/lib.sh"
echo "first half" > src/half.py
save -m "first half"
echo "second half" > src/wip.py
supervisor=$$  # the nearest ancestor running orch's supervisor (none to be seen in a pid namespace)
while [ "$supervisor" -gt 1 ] && ! tr '\0' ' ' </proc/$supervisor/cmdline | grep -q orch.agents.supervisor; do
    supervisor=$(awk '/^PPid:/ {print $2}' /proc/$supervisor/status)
done
attempt sh -c '[ "$1" -gt 1 ] && kill -KILL "$1"' sh "$supervisor"  # never pid 1: none was found
if grep -q refused "$GITDIR/scenario-attempt"; then exit 1; fi
sleep 30  # until orch finds the run crashed and ends what is left of it
