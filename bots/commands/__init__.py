"""Chat commands, one group per module; `install_all` registers them on a router."""

from bots.commands import (
    ack,
    agents,
    alerts,
    anomaly,
    cost,
    demo,
    graph,
    help,
    predict,
    proposals,
    rollback,
    scale,
    status,
)
from bots.router import Router


def install_all(router: Router) -> Router:
    for module in (
        help,
        status,
        scale,
        proposals,
        rollback,
        agents,
        predict,
        anomaly,
        cost,
        alerts,
        ack,
        graph,
        demo,
    ):
        module.install(router)
    return router


__all__ = ["install_all"]
