"""Agent CLIs' own session files (Claude Code transcripts, Codex rollouts, Gemini CLI chats) as
telemetry: ``agentwatch import`` and ``agentwatch watch``.

Each reader (one module per agent) turns a session file into log records in that agent's own
OTLP dialect -- the event names and attributes the CLI itself would send -- marked with
``agentwatch.source = session_files``. They then go through the configured logs pipelines
(normalize, cost, detections, redaction) into the same exporters as OTLP, so nothing here
knows about the agent tables. A call that also arrived over OTLP keeps the vendor's request id
where the files have it, so both sources name the same event.
"""
