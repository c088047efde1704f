#!/bin/sh
# Fleet roll-out of agentwatch telemetry settings, for an MDM "script" payload (Jamf, Intune,
# Kandji, ...) run as root. For every local user with a home directory it merges the settings
# of each agent into that user's own files with `agentwatch setup --write` (a backup is kept,
# other keys are untouched), running as that user so file ownership stays right.
#
# Set by the MDM (or edit here):
#   AGENTWATCH_ENDPOINT  OTLP URL of your agentwatch, e.g. https://agentwatch.corp:4317
#   AGENTWATCH_PROTOCOL  grpc (default) or http
#   AGENTWATCH_TOKEN     bearer token, if the receiver requires one (optional)
#   AGENTWATCH_AGENTS    which agents (default: claude-code codex gemini copilot-vscode)
#   AGENTWATCH_BIN       the agentwatch command (default: agentwatch on PATH)
#   AGENTWATCH_HOMES     home directories to visit (default: /Users/* /home/*)
# Copilot CLI has no settings file: push the environment variables that
# `agentwatch setup copilot-cli` prints through your MDM's environment policy instead.
set -eu

: "${AGENTWATCH_ENDPOINT:?set AGENTWATCH_ENDPOINT to agentwatch's OTLP URL}"
PROTOCOL="${AGENTWATCH_PROTOCOL:-grpc}"
AGENTS="${AGENTWATCH_AGENTS:-claude-code codex gemini copilot-vscode}"
BIN="${AGENTWATCH_BIN:-agentwatch}"

for home in ${AGENTWATCH_HOMES:-/Users/* /home/*}; do
    [ -d "$home" ] || continue
    user="$(basename "$home")"
    id "$user" >/dev/null 2>&1 || continue
    for agent in $AGENTS; do
        set -- setup "$agent" --endpoint "$AGENTWATCH_ENDPOINT" --protocol "$PROTOCOL" --write
        if [ -n "${AGENTWATCH_TOKEN:-}" ]; then
            set -- "$@" --token "$AGENTWATCH_TOKEN"
        fi
        if [ "$user" = "$(id -un)" ]; then
            run="env HOME=$home"
        else
            run="sudo -u $user env HOME=$home"
        fi
        if $run "$BIN" "$@" >/dev/null; then
            echo "agentwatch: $agent configured for $user"
        else
            echo "agentwatch: $agent NOT configured for $user" >&2
        fi
    done
done
