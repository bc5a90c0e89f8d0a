# Adds a symlink to a hard-locked file (an edit through it would edit the locked file).
. "$(dirname "$0")/lib.sh"
ln -s pricing.py src/prices.py
save -m "link the prices"
