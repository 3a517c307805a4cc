"""States moto cannot produce, patched into moto in-process (ThreadedMotoServer shares the process).

moto's ``FakeTargetGroup.health_for`` is static (registered targets are always ``healthy``); the
load balancer's other verdicts are patched in per target id, and served over moto's real HTTP API.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

Verdict = tuple[str, str | None, str | None]  # state, reason, description


def patch_target_health(monkeypatch: pytest.MonkeyPatch, verdicts: dict[str, Verdict]) -> dict[str, Verdict]:
    """Targets whose id is in ``verdicts`` get that state; the dict stays live, so a test can change it."""
    original = FakeTargetGroup.health_for

    def health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> FakeHealthStatus:
        status = original(self, target, ec2_backend)
        verdict = verdicts.get(target["Id"])
        if verdict is None:
            return status
        state, reason, description = verdict
        return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, state, reason, description)

    monkeypatch.setattr(FakeTargetGroup, "health_for", health_for)
    return verdicts
