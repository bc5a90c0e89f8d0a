# Adds a .gitmodules pointing a submodule elsewhere.
. "$(dirname "$0")/lib.sh"
printf '[submodule "lib"]\n\tpath = src/lib\n\turl = ../../evil.git\n' > .gitmodules
save -m "add a submodule"
