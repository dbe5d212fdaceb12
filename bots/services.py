"""What command handlers can reach: the engine, the directory, the cluster view and settings."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.runner import AgentRunner
from agents.scheduler import AgentScheduler
from agents.sources.cluster import ClusterSource
from approval_engine.deploy import Deployer
from approval_engine.engine import Engine
from approval_engine.rbac import Directory
from approval_engine.targets import Targets
from bots.alert_store import AlertStore
from bots.alert_types import Enricher, NoEnrichment
from bots.alertmanager_api import AlertmanagerClient


@dataclass
class Services:
    engine: Engine
    directory: Directory
    targets: Targets
    cluster: ClusterSource
    deployer: Deployer
    default_env: str
    agents: AgentRunner
    scheduler: AgentScheduler | None = None
    demo: bool = False
    # Demo only: who each console channel speaks as after /as.
    speakers: dict[str, str] = field(default_factory=dict)
    # Commands that may only be typed in some places: name → {"slack:C0123", …}.
    command_channels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The alerts Alertmanager sent, when `opsgate serve` receives them (bots/alerts_setup.py).
    alerts: AlertStore | None = None
    # One engine operation at a time: chat commands, ticks and scheduled agents' proposals.
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Alertmanager's API v2 for /alerts, /silence, /unsilence; None: those commands say so.
    alertmanager: AlertmanagerClient | None = None
    # What alert messages are enriched with (graph, runbook, recent changes).
    enricher: Enricher = field(default_factory=NoEnrichment)
