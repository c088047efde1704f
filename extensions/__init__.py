"""Extensions: components that run beside the pipelines (the web console)."""
