"""Analyzer agents, their scheduler and the read-only data sources they watch."""
