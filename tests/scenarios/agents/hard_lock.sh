# Edits a hard-locked file (the pre-commit hook refuses: the supervisor commits it).
. "$(dirname "$0")/lib.sh"
echo "PRICE = 0" > src/pricing.py
save -m "free for all"
