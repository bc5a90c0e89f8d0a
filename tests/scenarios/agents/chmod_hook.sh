# Takes the execute bit off the shared pre-commit hook, then commits an edit of a hard-locked file.
. "$(dirname "$0")/lib.sh"
attempt chmod -x "$COMMON/hooks/pre-commit"
echo "PRICE = 0" > src/pricing.py
save -m "free for all"
