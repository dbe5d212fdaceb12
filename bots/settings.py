"""Settings: the environment (OPSGATE_*) and config/settings.yaml, read at the entry point."""

from __future__ import annotations

from pathlib import Path

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


class GeneralConfig(BaseModel):
    """config/settings.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default_env: str = Field(default="staging", description="/scale's env when none is typed")
    demo: DemoSettings = Field(default_factory=DemoSettings)
    gitops: GitOpsSettings = Field(default_factory=GitOpsSettings)
