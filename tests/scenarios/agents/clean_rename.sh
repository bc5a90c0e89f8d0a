# Clean: renames a file within its scope.
. "$(dirname "$0")/lib.sh"
git mv src/util.py src/helpers.py
save -m "rename the helper"
