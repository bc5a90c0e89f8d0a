# Clean: adds a file inside its scope.
. "$(dirname "$0")/lib.sh"
printf 'def feature():\n    return "new"\n' > src/feature.py
save -m "add a feature"
