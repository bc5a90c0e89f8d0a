# Clean: deletes an unlocked file inside its scope.
. "$(dirname "$0")/lib.sh"
git rm -q src/util.py
save -m "drop the helper"
