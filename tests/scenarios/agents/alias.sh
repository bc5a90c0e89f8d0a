# Does clean work, then defines aliases in the shared config (one shadowing a command orch runs).
. "$(dirname "$0")/lib.sh"
echo "x = 1" > src/x.py
save -m "clean work"
plant alias.rev-parse "!touch $SCENARIO_CANARY"
plant alias.co "!touch $SCENARIO_CANARY"
