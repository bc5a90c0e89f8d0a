# Breaks a requirement check (src/app.py must define VERSION).
. "$(dirname "$0")/lib.sh"
sed -i "s/^VERSION = 1$/REVISION = 1/" src/app.py
save -m "rename VERSION"
