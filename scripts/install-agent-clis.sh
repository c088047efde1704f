#!/usr/bin/env bash
# Installs the pinned agent CLIs that the end-to-end tests drive, into a cache kept between runs.
#
# Each package goes to $AGENTWATCH_CACHE/agent-clis/<pkg>@<version> (default cache
# $HOME/.cache/agentwatch), is installed into a staging directory first and renamed into place
# only when complete, so an interrupted run never leaves a half-installed CLI that looks ready.
# A second run with everything present only checks one marker file per package.
#
# Needs node >= 20 and npm with access to the npm registry; nothing else.
# Usage: scripts/install-agent-clis.sh [--print-dir]   (--print-dir: print the cache dir, exit)
set -euo pipefail

# Versions measured in shared/agents.md; bump together with tests/data/captured/.
PACKAGES=(
  "@anthropic-ai/claude-code@2.1.328"
  "@openai/codex@0.169.0"
  "@google/gemini-cli@0.61.0"
  "@github/copilot@1.0.102"
)
CACHE_DIR="${AGENTWATCH_CACHE:-$HOME/.cache/agentwatch}/agent-clis"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$CACHE_DIR"
  exit 0
fi

missing=()
for spec in "${PACKAGES[@]}"; do
  [[ -f "$CACHE_DIR/$spec/.agentwatch-installed" ]] || missing+=("$spec")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

command -v npm >/dev/null || { echo "install-agent-clis: npm not found (need node >= 20)" >&2; exit 1; }
start=$(date +%s)
mkdir -p "$CACHE_DIR"

install_one() {
  local spec="$1" target="$CACHE_DIR/$1"
  local staging="$target.staging.$$"
  rm -rf "$staging"
  mkdir -p "$staging"
  # --prefix with a package.json-less dir installs into $staging/node_modules with .bin links.
  # engine-strict off: claude-code declares node >= 22 but its launcher runs a native binary.
  if ! npm install --prefix "$staging" --no-audit --no-fund --no-save --loglevel=error \
      --engine-strict=false "$spec" >"$staging.log" 2>&1; then
    echo "install-agent-clis: npm install $spec failed:" >&2
    cat "$staging.log" >&2
    rm -rf "$staging"
    return 1
  fi
  # The Copilot CLI unpacks ~235 MB on its first run under $XDG_CACHE_HOME/copilot: do it here,
  # beside the package (tests/e2e/agent_clis.py points XDG_CACHE_HOME there), so that runs
  # never unpack concurrently and the marker below means ready.
  if [[ "$spec" == @github/copilot@* ]]; then
    if ! HOME="$staging/home" XDG_CACHE_HOME="$staging/xdg-cache" COPILOT_AUTO_UPDATE=false \
        "$staging/node_modules/.bin/copilot" --version >>"$staging.log" 2>&1; then
      echo "install-agent-clis: first run of $spec failed:" >&2
      cat "$staging.log" >&2
      rm -rf "$staging"
      return 1
    fi
    rm -rf "$staging/home"
  fi
  rm -rf "$target"
  mv "$staging" "$target"
  mv "$staging.log" "$target/.npm-install.log"
  date -u +%FT%TZ >"$target/.agentwatch-installed"
  echo "install-agent-clis: installed $spec"
}

# Downloads dominate, so the packages install in parallel.
pids=()
for spec in "${missing[@]}"; do
  install_one "$spec" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
elapsed=$(($(date +%s) - start))
size=$(du -sh "$CACHE_DIR" 2>/dev/null | cut -f1)
echo "install-agent-clis: ${#missing[@]} package(s) in ${elapsed}s; cache $CACHE_DIR is $size"
exit "$failed"
