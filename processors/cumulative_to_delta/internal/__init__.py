"""Internals of the cumulative_to_delta processor: per-stream tracking and its persisted state."""
