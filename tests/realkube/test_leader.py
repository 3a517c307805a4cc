"""Leader election on real Leases: two cluster-role replicas of the chart, SIGKILL the leader, the other
takes over within the lease duration (client-go's semantics, which lbdoctor's elector follows)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realkube.cluster import RealCluster
from tests.realkube.conftest import Release, install, wait_for
from tests.realkube.test_chart_pods import lease_holder, results

LEASE_SECONDS = 4  # the chart's setting (clusterRole.settings), short to keep the test quick


@pytest.fixture(scope="module", name="elect")
def _elect(real: RealCluster, workdir: Path) -> Iterator[Release]:
    release = install(
        real, "elect", "elect", workdir, sets=(f"clusterRole.settings.lease_duration_seconds={LEASE_SECONDS}",)
    )
    try:
        yield release
    finally:
        release.stop_all()


def test_the_standby_takes_over_within_the_lease_duration_after_sigkill(elect: Release, real: RealCluster) -> None:
    first, second = elect.start("Deployment"), elect.start("Deployment")
    for pod in (first, second):
        pod.wait_ready(timeout=90)
    holder = wait_for(lambda: lease_holder(real, "elect"), "a leader", timeout=20)
    leader, standby = (first, second) if holder == first.name else (second, first)
    assert leader.name == holder and results(standby)["standby"]
    lease = real.admin.get("/apis/coordination.k8s.io/v1/namespaces/elect/leases/lbdoctor-cluster")
    assert lease["spec"]["leaseDurationSeconds"] == LEASE_SECONDS

    killed = time.monotonic()
    leader.signal(signal.SIGKILL)  # no release of the Lease: the standby must wait it out
    leader.wait(10)
    wait_for(lambda: lease_holder(real, "elect") == standby.name, "the standby to take the Lease", timeout=30)
    took = time.monotonic() - killed
    # The standby takes over once the record it saw has not changed for a lease duration; it polls
    # every 2/15 of it, and the leader renewed at most that long before it died.
    retry = LEASE_SECONDS * 2 / 15
    assert took <= LEASE_SECONDS + 2 * retry + 1.5, f"took {took:.1f} s"
    assert took >= LEASE_SECONDS - retry - 0.5, f"took over after {took:.1f} s, before the lease expired"
    wait_for(lambda: not results(standby)["standby"], "the new leader to publish", timeout=10)
    lease = real.admin.get("/apis/coordination.k8s.io/v1/namespaces/elect/leases/lbdoctor-cluster")
    assert lease["spec"]["leaseTransitions"] >= 1
