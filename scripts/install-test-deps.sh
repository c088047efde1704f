#!/usr/bin/env bash
# Everything the test suite needs beyond the Python packages, installed by the project itself
# so a fresh machine (and CI) gets it: nothing here may be assumed to be pre-installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real agent CLIs from npm, pinned, cached under ${AGENTWATCH_CACHE:-~/.cache/agentwatch}.
bash scripts/install-agent-clis.sh
