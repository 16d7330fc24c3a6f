#!/bin/sh
# Build raftq and run node N of the local cluster in the Procfile:
#   scripts/node.sh N [extra raftq flags]
# exec replaces the shell, so goreman's signals reach raftq itself.
set -e
cd "$(dirname "$0")/.."
id=$1
shift
go build -o "bin/raftq-$id" ./cmd/raftq
exec "bin/raftq-$id" --id "$id" \
  --cluster http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379 \
  --api-addr "127.0.0.1:${id}2380" --data-dir "data/raftq-$id" --log-format console \
  --sqs-addr "127.0.0.1:${id}9324" "$@"
