# Writes a usage file far over its budget and keeps going (the usage file is "$1").
. "$(dirname "$0")/lib.sh"
echo "work" > src/spent.py
save -m "expensive work"
printf '{"event": "message_send", "properties": {"prompt_tokens": 900000, "completion_tokens": 90000, "total_cost": 250.0}}\n' > "$1"
sleep 600
