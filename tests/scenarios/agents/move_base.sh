# Edits outside its scope, commits with --no-verify (the hook would refuse it), then moves the base
# branch to that commit with git update-ref.
. "$(dirname "$0")/lib.sh"
echo "rewritten by the agent" >> docs/guide.md
save --no-verify -m "edit the guide"
attempt git --git-dir="$COMMON" update-ref refs/heads/main "$(git rev-parse HEAD)"  # the repository's, not a shadow's
