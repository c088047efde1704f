#!/usr/bin/env bash
# Installs what tests/test_grafana_dashboards.py checks the dashboards with: Grafana's own schema
# types (npm @grafana/schema, the TypeScript types Grafana's frontend is built on) and the
# TypeScript compiler, pinned, into a cache kept between runs.
#
# Result: $AGENTWATCH_CACHE/tools/grafana-schema-<version>/node_modules (default cache
# $HOME/.cache/agentwatch). Usage: scripts/install-grafana-schema.sh [--print-dir]
set -euo pipefail

SCHEMA="@grafana/schema@13.2.3"
TYPESCRIPT="typescript@5.9.3"
TARGET="${AGENTWATCH_CACHE:-$HOME/.cache/agentwatch}/tools/grafana-schema-13.2.3"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$TARGET"
  exit 0
fi
if [[ -f "$TARGET/.agentwatch-installed" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-grafana-schema: npm not found" >&2; exit 1; }
staging="$TARGET.staging.$$"
rm -rf "$staging"
mkdir -p "$staging"
if ! npm install --prefix "$staging" --no-audit --no-fund --no-save --loglevel=error \
    "$SCHEMA" "$TYPESCRIPT" >"$staging.log" 2>&1; then
  echo "install-grafana-schema: npm install failed:" >&2
  cat "$staging.log" >&2
  rm -rf "$staging" "$staging.log"
  exit 1
fi
rm -rf "$TARGET"
mv "$staging" "$TARGET"
mv "$staging.log" "$TARGET/.npm-install.log"
date -u +%FT%TZ >"$TARGET/.agentwatch-installed"
echo "install-grafana-schema: installed $SCHEMA and $TYPESCRIPT into $TARGET"
