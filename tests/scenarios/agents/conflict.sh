# Changes the line another task changes too (answer() returns 43 here, 44 there).
. "$(dirname "$0")/lib.sh"
sed -i "s/return 42/return ${1:-43}/" src/app.py
save -m "answer ${1:-43}"
