"""Command line: ``lbdoctor run | demo | version``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from exporter import __version__, logs
from exporter.settings import Settings, SettingsError, load

# Flags that map one-to-one onto settings (the rest come from LBDOCTOR_* or the config file).
_SETTING_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--listen", {"metavar": "HOST:PORT", "help": "serve /metrics, the status page and the API here"}),
    ("--node-name", {"help": "this node's name (node role; default: $NODE_NAME)"}),
    ("--kubeconfig", {"help": "kubeconfig path (default: in-cluster, else ~/.kube/config)"}),
    ("--context", {"help": "kubeconfig context"}),
    ("--log-format", {"choices": ("auto", "json", "console")}),
    ("--log-level", {"choices": ("debug", "info", "warning", "error")}),
    ("--probe-concurrency", {"type": int, "metavar": "N", "help": "most probes in flight at once"}),
    ("--min-probe-interval-seconds", {"type": float, "metavar": "S", "help": "floor on probe intervals"}),
    ("--default-target-type", {"choices": ("instance", "ip"), "help": "the controller's --default-target-type"}),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbdoctor",
        description="Runs the EKS 'failing load-balancer health check' runbook continuously and says which "
        "step fails, why, and what to do.",
    )
    parser.add_argument("--version", action="version", version=f"lbdoctor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon (node or cluster role)")
    run.add_argument("--role", choices=("node", "cluster"), default=argparse.SUPPRESS)
    run.add_argument("--config", metavar="FILE", help="YAML settings file (also $LBDOCTOR_CONFIG)")
    run.add_argument("--check-config", action="store_true", help="validate the settings and exit")
    for flag, options in _SETTING_FLAGS:
        run.add_argument(flag, default=argparse.SUPPRESS, **options)

    demo = commands.add_parser("demo", help="run lbdoctor against a simulated EKS cluster with seeded faults")
    demo.add_argument("--listen", default="127.0.0.1:9850", metavar="HOST:PORT")
    demo.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    demo.add_argument("--exit-after", type=float, metavar="SECONDS", help=argparse.SUPPRESS)

    commands.add_parser("version", help="print the version")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    flags = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "check_config") and value is not None
    }
    return load(flags, config_file=args.config)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"lbdoctor {__version__}")
        return 0
    if args.command == "demo":
        from exporter.demo.run import run_demo

        logs.configure(args.log_format, args.log_level)
        try:
            return asyncio.run(run_demo(args.listen, exit_after=args.exit_after))
        except KeyboardInterrupt:
            return 0
    try:
        settings = _settings_from(args)
    except SettingsError as error:
        print(f"lbdoctor: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"lbdoctor: settings are valid (role {settings.role}, listen {settings.listen})")
        return 0
    logs.configure(settings.log_format, settings.log_level)
    from exporter import daemon

    try:
        return asyncio.run(daemon.run(settings))
    except KeyboardInterrupt:
        return 0
