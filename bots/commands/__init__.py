"""Chat commands, one group per module; `install_all` registers them on a router."""

from bots.commands import (
    agents,
    anomaly,
    cost,
    demo,
    help,
    predict,
    proposals,
    scale,
    status,
)
from bots.router import Router


def install_all(router: Router) -> Router:
    for module in (help, status, scale, proposals, agents, predict, anomaly, cost, demo):
        module.install(router)
    return router


__all__ = ["install_all"]
