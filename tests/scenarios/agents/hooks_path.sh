# Does clean work, then points core.hooksPath (shared config) at hooks of its own.
. "$(dirname "$0")/lib.sh"
echo "x = 1" > src/x.py
save -m "clean work"
hooks="$COMMON/planted-hooks"
if mkdir -p "$hooks" 2>/dev/null; then
    for hook in pre-commit post-commit post-checkout post-merge reference-transaction post-index-change; do
        printf "#!/bin/sh\ntouch %s\n" "$SCENARIO_CANARY" > "$hooks/$hook" && chmod +x "$hooks/$hook"
    done
fi
plant core.hooksPath "$hooks"
