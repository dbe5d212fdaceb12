"""Load and cross-check every file of config/; `opsgate config check` and start-up both use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from agents.config import AgentsConfig, ConfiguredAgent, resolve
from agents.errors import AgentConfigError
from agents.registry import Registry, load_builtin
from approval_engine.config import (
    PolicyConfig,
    TargetsConfig,
    UsersConfig,
    load_model,
)
from approval_engine.editors import read_value
from approval_engine.errors import ApprovalError, ConfigError
from approval_engine.slo import slo_problems
from approval_engine.targets import Targets
from bots.alert_routes import RoutesConfig, route_problems
from bots.commands import install_all
from bots.router import Router
from bots.settings import GeneralConfig

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigBundle:
    general: GeneralConfig
    users: UsersConfig
    policy: PolicyConfig
    targets: TargetsConfig
    agents: AgentsConfig
    configured_agents: tuple[ConfiguredAgent, ...]
    routes: RoutesConfig = field(default_factory=RoutesConfig)


def load_config(
    config_dir: Path, *, repo_root: Path | None = None, registry: Registry | None = None
) -> ConfigBundle:
    """Every problem across all files, each naming file, key and reason, in one ConfigError."""
    if not config_dir.is_dir():
        raise ConfigError([f"{config_dir}: config directory not found"])
    problems: list[str] = []

    def load(filename: str, model: type[M], *, missing_ok: bool = False) -> M | None:
        try:
            return load_model(config_dir / filename, model, missing_ok=missing_ok)
        except ConfigError as e:
            problems.extend(e.problems)
            return None

    general = load("settings.yaml", GeneralConfig, missing_ok=True)
    users = load("users.yaml", UsersConfig)
    policy = load("policy.yaml", PolicyConfig)
    targets = load("targets.yaml", TargetsConfig)
    agents = load("agents.yaml", AgentsConfig, missing_ok=True)
    routes = load("routes.yaml", RoutesConfig, missing_ok=True)
    configured: list[ConfiguredAgent] = []
    if agents is not None:
        try:
            configured = resolve(
                agents, registry or load_builtin(), path=config_dir / "agents.yaml"
            )
        except AgentConfigError as e:
            problems.extend(e.problems)
    if (
        general is None
        or users is None
        or policy is None
        or targets is None
        or agents is None
        or routes is None
    ):
        raise ConfigError(problems)
    bundle = ConfigBundle(
        general=general,
        users=users,
        policy=policy,
        targets=targets,
        agents=agents,
        configured_agents=tuple(configured),
        routes=routes,
    )
    problems.extend(_cross_check(bundle, config_dir))
    problems.extend(
        f"{config_dir / 'routes.yaml'}: {problem}"
        for problem in route_problems(routes, general.chat)
    )
    if repo_root is not None:
        problems.extend(_check_knobs(bundle, config_dir, repo_root))
    if problems:
        raise ConfigError(problems)
    return bundle


def _cross_check(bundle: ConfigBundle, config_dir: Path) -> list[str]:
    problems = []
    targets = Targets(bundle.targets)
    envs = targets.all_environments()
    if bundle.general.default_env not in envs:
        problems.append(
            f"{config_dir / 'settings.yaml'}: default_env: {bundle.general.default_env!r} is not "
            f"an environment of any target ({', '.join(envs)})"
        )
    for env in envs:
        if env not in bundle.policy.environments:
            problems.append(
                f"{config_dir / 'policy.yaml'}: environments: no entry for {env!r}, "
                "which targets.yaml deploys to"
            )
    for env, rules in bundle.policy.environments.items():
        for person in rules.approvers:
            if person not in bundle.users.people:
                problems.append(
                    f"{config_dir / 'policy.yaml'}: environments.{env}.approvers: "
                    f"{person!r} is not in users.yaml"
                )
    for service in bundle.policy.limits:
        if service not in bundle.targets.services:
            problems.append(
                f"{config_dir / 'policy.yaml'}: limits.{service}: no such service in targets.yaml"
            )
    problems.extend(
        f"{config_dir / 'targets.yaml'}: {problem}"
        for problem in slo_problems(
            bundle.targets.slo,
            {name: t.slo for name, t in bundle.targets.services.items()},
            list(bundle.targets.signals),
        )
    )
    commands = install_all(Router())
    for name in bundle.general.chat.command_channels:
        if commands.get(name) is None:
            hint = " (without the slash)" if commands.get(name.lstrip("/")) else ""
            problems.append(
                f"{config_dir / 'settings.yaml'}: chat.command_channels.{name}: "
                f"no such command{hint}"
            )
    if bundle.general.demo.default_user not in bundle.users.people:
        problems.append(
            f"{config_dir / 'settings.yaml'}: demo.default_user: "
            f"{bundle.general.demo.default_user!r} is not in users.yaml"
        )
    return problems


def _check_knobs(bundle: ConfigBundle, config_dir: Path, repo_root: Path) -> list[str]:
    """Every knob must point at a file and key that exist in the repository."""
    problems = []
    targets = Targets(bundle.targets)
    for service in targets.services():
        for env in targets.environments(service):
            for knob in bundle.targets.services[service].knobs:
                location = targets.locate(service, env, knob)
                if location.path is None or location.key is None:
                    continue
                where = f"{config_dir / 'targets.yaml'}: services.{service}.knobs.{knob} ({env})"
                path = repo_root / location.path
                if not path.is_file():
                    problems.append(f"{where}: file {location.path} does not exist")
                    continue
                try:
                    read_value(path.read_text(encoding="utf-8"), location.key, path=location.path)
                except ApprovalError as e:
                    problems.append(f"{where}: {e}")
    return problems
