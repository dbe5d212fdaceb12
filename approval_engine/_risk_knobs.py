"""What changing a knob does, per KNOB_EFFECTS, and the factor each change rates (see risk.py)."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from approval_engine.config import RiskRules
from approval_engine.editors import read_value
from approval_engine.errors import EditError
from approval_engine.model import EditedKnob, RiskLevel, Scalar

__all__ = ["KNOB_EFFECTS", "STATEFUL_TYPES", "Effect", "Factor", "rate_knob", "touched"]

LOW, MEDIUM, HIGH, CRITICAL = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL


class Effect(enum.Enum):
    """What changing a knob does to what it configures."""

    CAPACITY = "more is more capacity"
    UTILIZATION_TARGET = "more is less headroom"
    AUTOSCALING = "false turns autoscaling off"
    INSTANCE_CLASS = "resized in place; the instance restarts"
    STORAGE = "grows in place; a shrink replaces the instance"
    REPLACES = "any new value replaces the resource"
    ENGINE_VERSION = "upgraded in place, with downtime"
    DELETION_PROTECTION = "false allows deleting the resource"
    FINAL_SNAPSHOT = "true deletes without a last snapshot"
    BACKUPS = "days of automated backups; 0 turns them off"
    MULTI_AZ = "false drops the standby in a second zone"
    PUBLIC = "true gives the resource a public address"


KNOB_EFFECTS: Mapping[str, Effect] = {
    # Helm values and HPA module inputs
    "replicas": Effect.CAPACITY,
    "replica_count": Effect.CAPACITY,
    "min_replicas": Effect.CAPACITY,
    "max_replicas": Effect.CAPACITY,
    "requests_cpu": Effect.CAPACITY,
    "requests_memory": Effect.CAPACITY,
    "cpu_request": Effect.CAPACITY,
    "memory_request": Effect.CAPACITY,
    "target_cpu": Effect.UTILIZATION_TARGET,
    "target_cpu_utilization": Effect.UTILIZATION_TARGET,
    "target_cpu_utilization_percentage": Effect.UTILIZATION_TARGET,
    "autoscaling_enabled": Effect.AUTOSCALING,
    "hpa_enabled": Effect.AUTOSCALING,
    # aws_db_instance arguments, and the rds module inputs named after them
    "instance_class": Effect.INSTANCE_CLASS,
    "allocated_storage": Effect.STORAGE,
    "engine": Effect.REPLACES,
    "identifier": Effect.REPLACES,
    "availability_zone": Effect.REPLACES,
    "storage_encrypted": Effect.REPLACES,
    "kms_key_id": Effect.REPLACES,
    "username": Effect.REPLACES,
    "snapshot_identifier": Effect.REPLACES,
    "engine_version": Effect.ENGINE_VERSION,
    "deletion_protection": Effect.DELETION_PROTECTION,
    "skip_final_snapshot": Effect.FINAL_SNAPSHOT,
    "backup_retention_period": Effect.BACKUPS,
    "multi_az": Effect.MULTI_AZ,
    "publicly_accessible": Effect.PUBLIC,
}

STATEFUL_TYPES = frozenset(
    {
        "aws_db_instance",
        "aws_rds_cluster",
        "aws_rds_cluster_instance",
        "aws_dynamodb_table",
        "aws_elasticache_cluster",
        "aws_elasticache_replication_group",
        "aws_s3_bucket",
        "aws_efs_file_system",
        "aws_ebs_volume",
        "aws_opensearch_domain",
    }
)

OPEN_CIDRS = ("0.0.0.0/0", "::/0")

# Terraform block types and how many labels follow them; anything else is the short form
# `aws_db_instance.orders.instance_class` of a resource.
_LABELS = {
    "resource": 2,
    "data": 2,
    "module": 1,
    "variable": 1,
    "output": 1,
    "provider": 1,
    "locals": 0,
    "terraform": 0,
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(m|k|M|G|T|Ki|Mi|Gi|Ti)?\s*$")
_QUANTITY_UNITS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
_INSTANCE_CLASS = re.compile(
    r"^(?:db\.|cache\.)?([a-z]+)\d+[a-z-]*\.([0-9]*)(nano|micro|small|medium|large|xlarge)$"
)
_SIZE_UNITS = {"nano": 0.25, "micro": 0.5, "small": 1, "medium": 2, "large": 4, "xlarge": 8}


@dataclass(frozen=True)
class Factor:
    """One factor's verdict: its level and the reason a person reads."""

    level: RiskLevel
    reason: str


# --- knobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Knob:
    edit: EditedKnob
    name: str  # the attribute as its file writes it: minReplicas
    effect: Effect | None
    block: str  # what the change touches: a Terraform block address, or the values file
    stateful: bool
    multi_az: bool  # the block's multi_az after the edit; False when it does not say

    @classmethod
    def of(cls, edit: EditedKnob, *, stateful: bool, text: str | None) -> _Knob:
        parts = edit.key.split(".")
        snake = [_snake(p) for p in parts]
        with_parent = "_".join(snake[-2:]) if len(snake) > 1 else None
        candidates = [c for c in (with_parent, snake[-1], edit.knob) if c is not None]
        effect = next((KNOB_EFFECTS[c] for c in candidates if c in KNOB_EFFECTS), None)
        # `requests.cpu`, `autoscaling.enabled`: the attribute alone would not say what it is
        name = ".".join(parts[-2:]) if with_parent in KNOB_EFFECTS else parts[-1]
        block, resource_type = touched(edit)
        multi_az = False
        if text is not None and effect is Effect.INSTANCE_CLASS and _terraform(edit.path):
            prefix = f"{block}." if block != edit.path else ""
            try:
                multi_az = read_value(text, f"{prefix}multi_az", path=edit.path) is True
            except EditError:
                multi_az = False  # unset, or not a literal: assume the default, no standby
        return cls(
            edit=edit,
            name=name,
            effect=effect,
            block=block,
            stateful=stateful or resource_type in STATEFUL_TYPES,
            multi_az=multi_az,
        )

    @property
    def change(self) -> str:
        return f"{self.name} {_show(self.edit.old)} → {_show(self.edit.new)}"


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _terraform(path: str) -> bool:
    return path.endswith((".tf", ".tfvars"))


def touched(edit: EditedKnob) -> tuple[str, str | None]:
    """What an edit touches (a Terraform block's address, else the file) and its resource type."""
    parts = edit.key.split(".")
    if not _terraform(edit.path):
        return edit.path, None
    head = parts[0]
    if head in _LABELS:
        labels = _LABELS[head]
        if len(parts) <= labels + 1:
            return edit.path, None
        resource_type = parts[1] if head == "resource" else None
        return ".".join(parts[: 1 + labels]), resource_type
    if len(parts) >= 3:
        return f"{parts[0]}.{parts[1]}", parts[0]
    return edit.path, None


def rate_knob(
    edit: EditedKnob, *, text: str | None, stateful: bool, production: bool, rules: RiskRules
) -> list[Factor]:
    """The factors one knob's change rates; `text` is its file after the edit, for context."""
    k = _Knob.of(edit, stateful=stateful, text=text)
    factors = []
    new = k.edit.new
    if isinstance(new, str) and any(cidr in new for cidr in OPEN_CIDRS):
        factors.append(
            Factor(CRITICAL, f"opens {k.name} of {k.block} to the whole internet ({new})")
        )
    if k.effect is None:
        if not factors:
            factors.append(
                Factor(MEDIUM, f"changes {k.change}, which no risk rule knows: review it by hand")
            )
        return factors
    return factors + _RATERS[k.effect](k, production, rules)


def _pick(production: bool, elsewhere: RiskLevel, in_production: RiskLevel) -> RiskLevel:
    return in_production if production else elsewhere


def _cut_level(cut: float, production: bool, rules: RiskRules) -> RiskLevel:
    if cut >= rules.large_cut:
        return _pick(production, MEDIUM, HIGH)
    return _pick(production, LOW, MEDIUM)


def _capacity(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    old, new = _amount(k.edit.old), _amount(k.edit.new)
    if old is None or new is None:
        return [_uncomparable(k)]
    if new > old:
        more = f" (+{_pct(new / old - 1)} capacity; costs more)" if old > 0 else " (costs more)"
        return [Factor(LOW, f"raises {k.change}{more}")]
    cut = 1 - new / old
    return [
        Factor(_cut_level(cut, production, rules), f"lowers {k.change} (−{_pct(cut)} capacity)")
    ]


def _utilization_target(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    old, new = _amount(k.edit.old), _amount(k.edit.new)
    if old is None or new is None or old <= 0 or new <= 0:
        return [_uncomparable(k)]
    if new < old:
        return [Factor(LOW, f"lowers {k.change} (more headroom, more pods: costs more)")]
    cut = 1 - old / new
    reason = f"raises {k.change} (less headroom: −{_pct(cut)} capacity)"
    return [Factor(_cut_level(cut, production, rules), reason)]


def _autoscaling(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.edit.new is False:
        return [Factor(_pick(production, MEDIUM, HIGH), f"turns autoscaling off ({k.change})")]
    return [Factor(LOW, f"turns autoscaling on ({k.change})")]


def _instance_class(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.multi_az:
        restart = Factor(
            _pick(production, LOW, MEDIUM),
            f"{k.name} change fails {k.block} over to its Multi-AZ standby (about a minute)",
        )
    else:
        restart = Factor(
            _pick(production, MEDIUM, HIGH),
            f"{k.name} change restarts {k.block} with downtime (not Multi-AZ)",
        )
    old, new = _instance_size(k.edit.old), _instance_size(k.edit.new)
    if old is None or new is None:
        return [_uncomparable(k), restart]
    (old_family, old_units), (new_family, new_units) = old, new
    if new_units < old_units:
        cut = 1 - new_units / old_units
        size = Factor(
            _cut_level(cut, production, rules), f"downsizes {k.change} (−{_pct(cut)} capacity)"
        )
    elif new_units > old_units:
        size = Factor(
            LOW, f"upsizes {k.change} (+{_pct(new_units / old_units - 1)} capacity; costs more)"
        )
    elif new_family == "t" and old_family != "t":
        size = Factor(
            _pick(production, LOW, MEDIUM),
            f"moves {k.change} to a burstable class: CPU credits can run out",
        )
    else:
        size = Factor(LOW, f"changes {k.change} (same size)")
    return [size, restart]


def _storage(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    old, new = _amount(k.edit.old), _amount(k.edit.new)
    if old is None or new is None:
        return [_uncomparable(k)]
    if new > old:
        return [Factor(LOW, f"grows {k.change} GiB in place (costs more)")]
    return [_replacement(k, production, f"shrinking {k.change} (storage cannot shrink in place)")]


def _replaces(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    return [_replacement(k, production, f"changing {k.change}")]


def _replacement(k: _Knob, production: bool, what: str) -> Factor:
    if k.stateful:
        return Factor(
            _pick(production, HIGH, CRITICAL),
            f"{what} replaces {k.block}, a stateful resource: its data is lost unless restored",
        )
    return Factor(_pick(production, MEDIUM, HIGH), f"{what} replaces {k.block}")


def _engine_version(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    return [
        Factor(
            _pick(production, MEDIUM, HIGH),
            f"upgrades {k.block} in place ({k.change}), with downtime",
        )
    ]


def _deletion_protection(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.edit.new is False:
        return [
            Factor(
                _pick(production, HIGH, CRITICAL),
                f"turns deletion protection off for {k.block} ({k.change})",
            )
        ]
    return [Factor(LOW, f"turns deletion protection on for {k.block}")]


def _final_snapshot(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.edit.new is True:
        return [
            Factor(
                _pick(production, MEDIUM, HIGH),
                f"{k.block} would be deleted without a final snapshot ({k.change})",
            )
        ]
    return [Factor(LOW, f"{k.block} keeps a final snapshot when deleted")]


def _backups(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    old, new = _amount(k.edit.old), _amount(k.edit.new)
    if old is None or new is None:
        return [_uncomparable(k)]
    if new == 0:
        return [
            Factor(
                _pick(production, HIGH, CRITICAL),
                f"turns automated backups of {k.block} off ({k.change})",
            )
        ]
    if new < old:
        return [
            Factor(
                _pick(production, LOW, MEDIUM),
                f"keeps backups of {k.block} fewer days ({k.change})",
            )
        ]
    return [Factor(LOW, f"keeps backups of {k.block} longer ({k.change}; costs more)")]


def _multi_az(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.edit.new is False:
        return [
            Factor(
                _pick(production, MEDIUM, HIGH),
                f"drops the Multi-AZ standby of {k.block} ({k.change})",
            )
        ]
    return [Factor(LOW, f"adds a Multi-AZ standby to {k.block} (costs more)")]


def _public(k: _Knob, production: bool, rules: RiskRules) -> list[Factor]:
    if k.edit.new is True:
        return [Factor(CRITICAL, f"makes {k.block} reachable from the internet ({k.change})")]
    return [Factor(LOW, f"takes {k.block} off the internet ({k.change})")]


_RATERS: Mapping[Effect, Callable[[_Knob, bool, RiskRules], list[Factor]]] = {
    Effect.CAPACITY: _capacity,
    Effect.UTILIZATION_TARGET: _utilization_target,
    Effect.AUTOSCALING: _autoscaling,
    Effect.INSTANCE_CLASS: _instance_class,
    Effect.STORAGE: _storage,
    Effect.REPLACES: _replaces,
    Effect.ENGINE_VERSION: _engine_version,
    Effect.DELETION_PROTECTION: _deletion_protection,
    Effect.FINAL_SNAPSHOT: _final_snapshot,
    Effect.BACKUPS: _backups,
    Effect.MULTI_AZ: _multi_az,
    Effect.PUBLIC: _public,
}


def _uncomparable(k: _Knob) -> Factor:
    return Factor(MEDIUM, f"changes {k.change}, which risk cannot size: review it by hand")


# --- values ---------------------------------------------------------------------------------


def _amount(value: Scalar) -> float | None:
    """A number, or a Kubernetes quantity (`500m`, `2`, `256Mi`) as one; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value)
    if match is None:
        return None
    return float(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def _instance_size(value: Scalar) -> tuple[str, float] | None:
    """`db.r6g.2xlarge` → ("r", 16.0): the family letter(s) and AWS's normalized size."""
    match = _INSTANCE_CLASS.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    family, multiple, size = match.groups()
    units = float(_SIZE_UNITS[size])
    if multiple:
        if size != "xlarge":
            return None
        units *= int(multiple)
    return family, units


def _pct(fraction: float) -> str:
    percent = round(fraction * 100)
    return "<1 %" if percent == 0 else f"{percent} %"


def _show(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
