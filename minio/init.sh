#!/bin/sh
# One-shot MinIO set-up for docker-compose: the archive bucket, and one least-privilege user per
# binary. Idempotent: safe to run again.
set -eu
mc alias set orderlake "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "orderlake/$ORDERLAKE_BUCKET"

render() { sed "s/__BUCKET__/$ORDERLAKE_BUCKET/g" "/minio/policies/$1.json" > "/tmp/$1.json"; }

# The archiver writes data files and log entries, and (maintenance) removes unreferenced files.
render archiver
mc admin policy create orderlake orderlake-archiver /tmp/archiver.json
mc admin user add orderlake "$ARCHIVER_ACCESS_KEY" "$ARCHIVER_SECRET_KEY"
mc admin policy attach orderlake orderlake-archiver --user "$ARCHIVER_ACCESS_KEY" 2>/dev/null || true

# The query server only reads.
render server
mc admin policy create orderlake orderlake-server /tmp/server.json
mc admin user add orderlake "$SERVER_ACCESS_KEY" "$SERVER_SECRET_KEY"
mc admin policy attach orderlake orderlake-server --user "$SERVER_ACCESS_KEY" 2>/dev/null || true

echo "minio ready: bucket $ORDERLAKE_BUCKET, users $ARCHIVER_ACCESS_KEY (read/write archive/) and $SERVER_ACCESS_KEY (read-only)"
