# Swaps the test command for `true` in the main checkout's .orch/config.yaml ("$1": direct or
# relative), then breaks the tests.
. "$(dirname "$0")/lib.sh"
if [ "$1" = direct ]; then orch="$MAIN/.orch"; else orch=../../../.orch; fi
attempt sed -i "s/^test_command: .*/test_command: \"true\"/" "$orch/config.yaml"
echo "# BROKEN" >> src/app.py
save -m "break the build"
