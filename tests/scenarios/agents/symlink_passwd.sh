# Adds a symlink to /etc/passwd.
. "$(dirname "$0")/lib.sh"
ln -s /etc/passwd src/passwd
save -m "link passwd"
