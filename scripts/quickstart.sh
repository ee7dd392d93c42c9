#!/usr/bin/env bash
# Set up Lamina in ./.venv, start it on 127.0.0.1:9000 with data in ./data, and run a first function.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${LAMINA_PORT:-9000}"
DATA="${LAMINA_DATA_DIR:-$PWD/data}"
[ -x .venv/bin/lamina ] || { python3 -m venv .venv && .venv/bin/python -m pip install --quiet -e '.[test]'; }
.venv/bin/lamina server --data-dir "$DATA" --host 127.0.0.1 --port "$PORT" >"$DATA.log" 2>&1 &
echo $! > "$DATA.pid"
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/_lamina/health" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "Lamina is up at http://127.0.0.1:$PORT (pid $(cat "$DATA.pid"), log $DATA.log)"
export AWS_SHARED_CREDENTIALS_FILE="$DATA/credentials" AWS_DEFAULT_REGION=us-east-1
.venv/bin/python scripts/first_function.py "http://127.0.0.1:$PORT"
