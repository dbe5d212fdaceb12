"""Resolve (service, env, knob) to the file and key that hold it, per config/targets.yaml."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from approval_engine.config import ServiceTarget, TargetsConfig
from approval_engine.editors import read_value
from approval_engine.errors import TargetError
from approval_engine.model import Scalar
from approval_engine.slo import SloCheck

ReadFile = Callable[[str], str]


@dataclass(frozen=True)
class KnobLocation:
    knob: str
    path: str | None  # None for a constant knob
    key: str | None
    constant: Scalar | None = None


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"known: {', '.join(sorted(choices))}{hint}"


class Targets:
    """The services opsgate may change, and where each knob lives."""

    def __init__(self, config: TargetsConfig) -> None:
        self._config = config

    def services(self) -> list[str]:
        return list(self._config.services)

    def workloads(self) -> list[str]:
        """The services that run pods (not databases): what the cluster and /status show."""
        return [n for n, t in self._config.services.items() if t.kind == "workload"]

    def kind(self, service: str) -> str:
        return self.service(service).kind

    def signals(self) -> dict[str, str]:
        return dict(self._config.signals)

    def slo(self, service: str) -> dict[str, SloCheck]:
        """The checks after an apply: a workload's are the default `slo:` with its own entries
        over them (null drops one); a database has only its own."""
        target = self.service(service)
        checks: dict[str, SloCheck | None] = (
            dict(self._config.slo) if target.kind == "workload" else {}
        )
        checks.update(target.slo or {})
        return {name: check for name, check in checks.items() if check is not None}

    def environments(self, service: str) -> list[str]:
        return list(self.service(service).environments)

    def all_environments(self) -> list[str]:
        envs: list[str] = []
        for target in self._config.services.values():
            envs.extend(e for e in target.environments if e not in envs)
        return envs

    def service(self, service: str) -> ServiceTarget:
        target = self._config.services.get(service)
        if target is None:
            raise TargetError(f"unknown service {service!r} ({_suggest(service, self.services())})")
        return target

    def check_env(self, service: str, env: str) -> ServiceTarget:
        target = self.service(service)
        if env not in target.environments:
            raise TargetError(
                f"{service} is not deployed in {env!r} ({_suggest(env, target.environments)})"
            )
        return target

    def app(self, service: str, env: str) -> str:
        return self.check_env(service, env).argocd_app.format(service=service, env=env)

    def has_knob(self, service: str, knob: str) -> bool:
        return knob in self.service(service).knobs

    def locate(self, service: str, env: str, knob: str) -> KnobLocation:
        target = self.check_env(service, env)
        spec = target.knobs.get(knob)
        if spec is None:
            raise TargetError(
                f"{service} has no knob {knob!r} ({_suggest(knob, list(target.knobs))})"
            )
        if spec.value is not None:
            return KnobLocation(knob=knob, path=None, key=None, constant=spec.value)
        assert spec.file is not None and spec.key is not None  # the model guarantees it
        path = spec.file.format(service=service, env=env)
        return KnobLocation(knob=knob, path=path, key=spec.key)

    def read(self, service: str, env: str, knob: str, *, read_file: ReadFile) -> Scalar:
        location = self.locate(service, env, knob)
        if location.path is None or location.key is None:
            assert location.constant is not None
            return location.constant
        return read_value(read_file(location.path), location.key, path=location.path)

    def read_all(self, service: str, env: str, *, read_file: ReadFile) -> dict[str, Scalar]:
        cache: dict[str, str] = {}

        def cached(path: str) -> str:
            if path not in cache:
                cache[path] = read_file(path)
            return cache[path]

        return {
            knob: self.read(service, env, knob, read_file=cached)
            for knob in self.service(service).knobs
        }
