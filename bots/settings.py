"""Settings: the environment (OPSGATE_*) and config/settings.yaml, read at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RuntimeSettings(BaseSettings):
    """Where opsgate keeps its state and finds its config; OPSGATE_DATA_DIR and friends."""

    model_config = SettingsConfigDict(env_prefix="OPSGATE_", extra="ignore")

    data_dir: Path = Field(default=Path("opsgate-data"), description="state: database, repo")
    config_dir: Path = Field(default=PROJECT_ROOT / "config", description="the YAML config")
    store_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite under data_dir"
    )

    prometheus_token: SecretStr | None = Field(
        default=None, description="bearer token for Prometheus (OPSGATE_PROMETHEUS_TOKEN)"
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="else boto3's usual chain: env, profile, instance role"
    )
    aws_secret_access_key: SecretStr | None = None
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb-… bot token")
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="verifies that requests come from Slack"
    )
    scheduler: bool = Field(
        default=True,
        description="run agents on their schedules (OPSGATE_SCHEDULER=false: only on demand)",
    )

    def database_url(self) -> str:
        if self.store_url is not None:
            return self.store_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'opsgate.db').resolve()}"


class DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default_user: str = Field(default="alice", description="who speaks until /as")


class GitOpsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_branch: str = Field(default="main", min_length=1)
    seed_paths: list[str] = Field(
        default_factory=lambda: ["helm-charts", "terraform"],
        description="what the demo's sandbox repository is seeded from",
    )


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(default="http://localhost:9090", description="Prometheus base URL")
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per query")
    verify_tls: bool = True


class AwsCostSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    region: str = Field(default="us-east-1", description="Cost Explorer's region")
    endpoint_url: str | None = Field(default=None, description="another endpoint, e.g. a proxy")


class SourcesSettings(BaseModel):
    """Where agents read from; the demo's simulation needs nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metrics: Literal["simulation", "prometheus"] = "simulation"
    cost: Literal["simulation", "aws", "none"] = "simulation"
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    aws_cost: AwsCostSettings = Field(default_factory=AwsCostSettings)


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False
    api_base_url: str | None = Field(
        default=None, description="Slack Web API base, e.g. an Enterprise proxy; default Slack's"
    )


class ChatSettings(BaseModel):
    """Which chat platforms `opsgate serve` talks to; secrets come from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slack: SlackSettings = Field(default_factory=SlackSettings)


class GeneralConfig(BaseModel):
    """config/settings.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default_env: str = Field(default="staging", description="/scale's env when none is typed")
    demo: DemoSettings = Field(default_factory=DemoSettings)
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
