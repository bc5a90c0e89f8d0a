# Not an attack: the other task of a pair, doing clean work ("$1": conflict, the line the attacker
# changes too; else a file of its own).
. "$(dirname "$0")/lib.sh"
if [ "${1:-}" = conflict ]; then sed -i "s/return 42/return 44/" src/app.py; else echo "y = 2" > src/partner.py; fi
save -m "partner work"
