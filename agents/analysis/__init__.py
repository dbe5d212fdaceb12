"""Numeric core of the analyzer agents: demand forecasts and streaming anomaly scores."""

from agents.analysis.anomaly import AnomalyDetector, AnomalyParams
from agents.analysis.forecast import Forecast, forecast

__all__ = ["AnomalyDetector", "AnomalyParams", "Forecast", "forecast"]
