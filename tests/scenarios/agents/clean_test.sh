# Clean: adds a new test (the locked test stays as it is).
. "$(dirname "$0")/lib.sh"
printf 'def test_feature():\n    assert True\n' > tests/test_feature.py
save -m "add a test"
