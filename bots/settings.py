"""Settings: the environment (OPSGATE_*) and config/settings.yaml, read at the entry point."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from approval_engine.config import Duration

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
    alertmanager_api_token: SecretStr | None = Field(
        default=None,
        description="Alertmanager API: a bearer token, or user:password with "
        "alerts.alertmanager_auth: basic (OPSGATE_ALERTMANAGER_API_TOKEN)",
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, description="else boto3's usual chain: env, profile, instance role"
    )
    aws_secret_access_key: SecretStr | None = None
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb-… bot token")
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="HTTP mode: verifies that requests come from Slack"
    )
    slack_app_token: SecretStr | None = Field(
        default=None, description="Socket Mode: xapp-… app-level token with connections:write"
    )
    alertmanager_token: SecretStr | None = Field(
        default=None,
        description="POST /alertmanager: the bearer token Alertmanager's http_config sends",
    )
    alertmanager_username: str = Field(
        default="alertmanager", description="POST /alertmanager: basic_auth username"
    )
    alertmanager_password: SecretStr | None = Field(
        default=None, description="POST /alertmanager: basic_auth password (instead of a token)"
    )
    telegram_bot_token: SecretStr | None = Field(default=None, description="from @BotFather")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="webhook mode: Telegram sends it in X-Telegram-Bot-Api-Secret-Token",
    )
    github_token: SecretStr | None = Field(
        default=None,
        description="gitops.backend github: contents and pull requests read/write",
    )
    github_review_token: SecretStr | None = Field(
        default=None,
        description="a second account's token, so that chat approvals become approving reviews",
    )
    github_webhook_secret: SecretStr | None = Field(
        default=None, description="verifies X-Hub-Signature-256 on POST /github/webhook"
    )
    argocd_token: SecretStr | None = Field(
        default=None, description="deploy.kind argocd: an API token with get and sync on the apps"
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
    verify_window: Duration | None = Field(
        default=None,
        description="the demo's SLO watch after an apply, instead of policy.yaml verify_window",
    )


class GitHubSettings(BaseModel):
    """gitops.backend github: the repository pull requests are opened on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repo: str | None = Field(
        default=None, pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name of the GitOps repo"
    )
    api_base_url: str = Field(
        default="https://api.github.com",
        pattern=r"^https?://",
        description="GitHub Enterprise: https://github.example.com/api/v3",
    )
    merge_method: Literal["squash", "merge", "rebase"] = "squash"
    poll_every: Duration = Field(
        default_factory=lambda: timedelta(minutes=1),
        description="how often each open pull request is read, in case a webhook was missed",
    )


class GitOpsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["local", "github"] = Field(
        default="local", description="local: the demo's sandbox repository in the data dir"
    )
    base_branch: str = Field(default="main", min_length=1)
    seed_paths: list[str] = Field(
        default_factory=lambda: ["helm-charts", "terraform"],
        description="what the demo's sandbox repository is seeded from",
    )
    github: GitHubSettings = Field(default_factory=GitHubSettings)

    @model_validator(mode="after")
    def _complete(self) -> GitOpsSettings:
        if self.backend == "github" and self.github.repo is None:
            raise ValueError("github.repo: backend github needs the repository, as owner/name")
        return self


class ArgoCDSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str | None = Field(
        default=None, pattern=r"^https?://", description="argocd-server's base URL"
    )
    verify_tls: bool = True
    project: str | None = Field(
        default=None,
        min_length=1,
        description="the apps' ArgoCD project; lets ArgoCD tell a missing app from a refusal",
    )
    sync_timeout: Duration | None = Field(
        default=None, description="instead of policy.yaml sync_timeout, when set"
    )
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per request")


class DeploySettings(BaseModel):
    """What applies a merge: the demo's simulation, or ArgoCD."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["simulation", "argocd"] = "simulation"
    argocd: ArgoCDSettings = Field(default_factory=ArgoCDSettings)

    @model_validator(mode="after")
    def _complete(self) -> DeploySettings:
        if self.kind == "argocd" and self.argocd.url is None:
            raise ValueError("argocd.url: kind argocd needs argocd-server's URL")
        return self


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
    mode: Literal["http", "socket"] = Field(
        default="http",
        description="http: Slack posts to /slack/events; socket: opsgate dials out (Socket Mode)",
    )
    api_base_url: str | None = Field(
        default=None, description="Slack Web API base, e.g. an Enterprise proxy; default Slack's"
    )
    changes_channel: str | None = Field(
        default=None,
        pattern=r"^[CG][A-Z0-9]+$",
        description="channel id (C…) where proposal cards and agents' news are posted",
    )


class TelegramSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False
    mode: Literal["polling", "webhook"] = Field(
        default="polling", description="polling needs no public URL; webhook needs webhook_url"
    )
    api_base_url: str | None = Field(
        default=None, description="a local Bot API server's root; default api.telegram.org"
    )
    webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="public URL of /telegram/webhook, registered with setWebhook at start",
    )
    allowed_chats: list[int] = Field(
        default_factory=list, description="chat ids that may use the bot; others are refused"
    )
    changes_chat: int | None = Field(
        default=None, description="chat id where proposal cards and agents' news are posted"
    )
    send_interval: float = Field(
        default=1.0, ge=0, le=60, description="seconds between messages to one chat"
    )
    group_messages_per_minute: int = Field(
        default=20, ge=1, le=60, description="Telegram's limit for a group; keep unless raised"
    )

    @model_validator(mode="after")
    def _complete(self) -> TelegramSettings:
        if not self.enabled:
            return self
        if not self.allowed_chats:
            raise ValueError("allowed_chats: list the chat ids that may use the bot")
        if self.mode == "webhook" and self.webhook_url is None:
            raise ValueError("webhook_url: webhook mode needs the URL Telegram should call")
        if self.changes_chat is not None and self.changes_chat not in self.allowed_chats:
            raise ValueError(f"changes_chat: {self.changes_chat} is not in allowed_chats")
        return self


class ChatSettings(BaseModel):
    """Which chat platforms `opsgate serve` talks to; secrets come from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    command_channels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="command → the only places it may be typed, as platform:channel "
        "(slack:C0123, telegram:-1001234, console:console)",
    )

    @field_validator("command_channels")
    @classmethod
    def _places(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for command, places in value.items():
            if not places:
                raise ValueError(f"{command}: list at least one place, or leave the command out")
            for place in places:
                platform, _, channel = place.partition(":")
                if platform not in ("slack", "telegram", "console") or not channel:
                    raise ValueError(
                        f"{command}: {place!r} is not platform:channel "
                        "(slack:C0123, telegram:-1001234, console:console)"
                    )
        return value


class AlertsSettings(BaseModel):
    """Where /alerts, /silence and /unsilence reach Alertmanager's API v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alertmanager_url: str = Field(
        default="http://localhost:9093", pattern=r"^https?://", description="its base URL"
    )
    alertmanager_auth: Literal["bearer", "basic"] = Field(
        default="bearer", description="how OPSGATE_ALERTMANAGER_API_TOKEN is sent, when set"
    )
    alertmanager_timeout: float = Field(default=10.0, gt=0, le=120, description="seconds")
    alertmanager_verify_tls: bool = True


class GeneralConfig(BaseModel):
    """config/settings.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default_env: str = Field(default="staging", description="/scale's env when none is typed")
    demo: DemoSettings = Field(default_factory=DemoSettings)
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
