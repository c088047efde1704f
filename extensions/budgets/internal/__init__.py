"""Internals of the budgets extension."""
