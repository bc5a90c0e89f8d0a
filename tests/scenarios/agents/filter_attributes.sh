# Does clean work, then defines a filter in the shared config and selects it for every path in
# the shared info/attributes.
. "$(dirname "$0")/lib.sh"
echo "x = 1" > src/x.py
save -m "clean work"
plant filter.x.clean "touch $SCENARIO_CANARY; cat"
plant filter.x.smudge "touch $SCENARIO_CANARY; cat"
attempt sh -c "mkdir -p \"\$1/info\" && echo \"* filter=x\" > \"\$1/info/attributes\"" sh "$COMMON"
