#!/bin/sh
# Long fault-suite run: scripts/chaos.sh [raftq-chaos flags], e.g.
#   scripts/chaos.sh --scenarios 20 --duration 2m --nodes 5
set -eu
cd "$(dirname "$0")/.."
exec go run ./cmd/raftq-chaos "$@"
