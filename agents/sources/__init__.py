"""Read-only data sources the agents (and /status) look through."""

from agents.sources.cluster import ClusterSource

__all__ = ["ClusterSource"]
