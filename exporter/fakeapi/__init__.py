"""An in-process stand-in for the Kubernetes API server, over real HTTP.

No kube-apiserver can run here, so tests and ``lbdoctor demo`` use this: list (with paging and
selectors), watch from a resourceVersion (replaying history, bookmarks, ``410 Gone`` once history is
compacted), create/replace/patch/delete with optimistic concurrency, pod logs, and injected faults
(error statuses, Retry-After, dropped watch connections). The real ``kubernetes`` client talks to it.
"""

from exporter.fakeapi.server import FakeApiServer, Fault
from exporter.fakeapi.state import ClusterState

__all__ = ["ClusterState", "FakeApiServer", "Fault"]
