# Adds a .gitattributes naming a filter (inside its scope).
. "$(dirname "$0")/lib.sh"
echo "* filter=evil" > src/.gitattributes
save -m "attributes"
