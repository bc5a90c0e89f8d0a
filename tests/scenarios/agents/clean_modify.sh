# Clean: modifies a file inside its scope.
. "$(dirname "$0")/lib.sh"
printf 'def helper():\n    return 2\n' > src/util.py
save -m "change the helper"
