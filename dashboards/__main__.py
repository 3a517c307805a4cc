"""``python -m dashboards [DIR]``: write every dashboard as DIR/<uid>.json (default: this folder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dashboards import flapping, kube_proxy, overview, self_health, service
from dashboards.grafana import Json

BUILDERS = (overview, service, flapping, kube_proxy, self_health)


def dashboards() -> dict[str, Json]:
    """File name -> dashboard JSON."""
    built = [module.build().to_json() for module in BUILDERS]
    return {f"{dashboard['uid']}.json": dashboard for dashboard in built}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent
    for name, dashboard in dashboards().items():
        (folder / name).write_text(render(dashboard))
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
