"""Internals of the detections processor that know nothing about rules."""
