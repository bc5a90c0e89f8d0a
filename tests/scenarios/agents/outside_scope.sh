# Edits a file outside its scope.
. "$(dirname "$0")/lib.sh"
echo "rewritten by the agent" >> docs/guide.md
save -m "edit the guide"
