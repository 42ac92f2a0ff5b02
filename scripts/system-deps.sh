#!/usr/bin/env bash
# Debian packages the test suite uses beyond Python: promtool/prometheus (alert-rule tests, the metrics
# integration test). PostgreSQL 15 is expected to be installed already (the store tests start a throwaway
# cluster themselves). As root (CI), missing packages are installed with apt-get; as another user this
# only reports what is missing, and the tests that need it skip with a message naming it.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: not root, not installing: ${missing[*]} (tests needing them will skip)" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || echo "system-deps: apt-get update failed; trying install anyway" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "system-deps: could not install ${missing[*]} (tests needing them will skip)" >&2
# The Debian package starts nothing we need; stop a daemon its maintainer script may have started.
pkill -x prometheus 2>/dev/null || true
pkill -x prometheus-node-exporter 2>/dev/null || true
exit 0
