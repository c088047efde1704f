"""agentwatch: one trustworthy record of what AI coding agents do and cost."""

__version__ = "0.1.0"
