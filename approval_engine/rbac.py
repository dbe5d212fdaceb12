"""Who is speaking: principals mapped to people and their roles (config/users.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from approval_engine.config import ROLES, UsersConfig


@dataclass(frozen=True)
class Actor:
    """A person (or an agent) acting through opsgate."""

    name: str
    roles: frozenset[str]
    github: str | None = None
    principal: str = ""

    def has(self, role: str) -> bool:
        """Roles rank viewer < operator < approver < admin; a higher one implies the lower."""
        rank = ROLES.index(role)
        return any(ROLES.index(r) >= rank for r in self.roles)

    @property
    def top_role(self) -> str:
        return max(self.roles, key=ROLES.index) if self.roles else "none"


def agent_actor(agent_name: str) -> Actor:
    return Actor(name=f"agent:{agent_name}", roles=frozenset({"operator"}), principal="agent")


class Directory:
    """Resolves a platform principal (`slack:U123`, `console:alice`) to an Actor."""

    def __init__(self, users: UsersConfig) -> None:
        self._users = users
        self._by_identity = {
            identity: name
            for name, person in users.people.items()
            for identity in person.identities
        }

    def by_name(self, name: str) -> Actor | None:
        person = self._users.people.get(name)
        if person is None:
            return None
        return Actor(name=name, roles=frozenset(person.roles), github=person.github, principal="")

    def resolve(self, principal: str) -> Actor | None:
        """The person behind a principal; an unknown one is a viewer or nobody, per config."""
        name = self._by_identity.get(principal)
        if name is not None:
            actor = self.by_name(name)
            assert actor is not None
            return Actor(
                name=actor.name, roles=actor.roles, github=actor.github, principal=principal
            )
        if self._users.unknown == "viewer":
            return Actor(name=principal, roles=frozenset({"viewer"}), principal=principal)
        return None

    def names(self) -> list[str]:
        return list(self._users.people)
