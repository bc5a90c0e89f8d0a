# Edits a hard-locked file and commits with --no-verify (the pre-commit hook never runs).
. "$(dirname "$0")/lib.sh"
echo "PRICE = 0" > src/pricing.py
git add -A
attempt git commit -q --no-verify -m "free for all, no hook"
git rev-parse HEAD >>"$GITDIR/scenario-commits"
