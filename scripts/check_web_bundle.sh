#!/usr/bin/env bash
# Rebuild the dashboard (web/) into a temporary directory and fail when it differs from the bundle
# committed in tracklet/server/static: run `npm run build` in web/ and commit the result.
# Needs `npm ci` in web/ first (.ci/run does it). The build is deterministic (same lock file, same
# sources → same bytes), so any difference means a stale bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd web && npx tsc --noEmit && TRACKLET_WEB_OUT="$out" npx vite build --logLevel error)
if ! diff -r "$out" tracklet/server/static >/dev/null; then
  echo "tracklet/server/static is stale: run 'npm run build' in web/ and commit tracklet/server/static" >&2
  diff -r "$out" tracklet/server/static | head -20 >&2 || true
  exit 1
fi
echo "dashboard bundle is up to date"
