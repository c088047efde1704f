"""The console's logic apart from the web layer: parameters, queries, auth, self-metrics."""
