"""Receivers: where telemetry enters agentwatch (OTLP over gRPC and HTTP)."""
