"""Shared pieces of the session-file readers: the event model, OTLP encoding, the ledger."""
