"""What command handlers can reach: the engine, the directory, the cluster view and settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.sources.cluster import ClusterSource
from approval_engine.deploy import Deployer
from approval_engine.engine import Engine
from approval_engine.rbac import Directory
from approval_engine.targets import Targets


@dataclass
class Services:
    engine: Engine
    directory: Directory
    targets: Targets
    cluster: ClusterSource
    deployer: Deployer
    default_env: str
    demo: bool = False
    # Demo only: who each console channel speaks as after /as.
    speakers: dict[str, str] = field(default_factory=dict)
