# Does clean work, then sets core.fsmonitor (shared config) to a command of its own.
. "$(dirname "$0")/lib.sh"
echo "x = 1" > src/x.py
save -m "clean work"
plant core.fsmonitor "touch $SCENARIO_CANARY; false"
