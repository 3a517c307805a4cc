"""Command line: ``lbdoctor run | diagnose | demo | dump-rules | version``."""

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
    ("--listen", {"metavar": "HOST:PORT[,...]", "help": "serve /metrics, the status page and the API here"}),
    ("--web-config-file", {"metavar": "FILE", "help": "TLS and basic auth (exporter-toolkit web-config.yml)"}),
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

    diagnose = commands.add_parser(
        "diagnose",
        help="run the runbook once against a cluster and print what fails and what to do",
        description="Runs every check once from a kubeconfig and prints the runbook. Exit codes: 0 nothing "
        "fails, 1 a check fails, 2 usage or configuration error, 3 the cluster cannot be reached.",
    )
    diagnose.add_argument(
        "target", nargs="?", metavar="service/NAME|ingress/NAME|httproute/NAME", help="only this load balancer"
    )
    diagnose.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG or ~/.kube/config)")
    diagnose.add_argument("--context", help="kubeconfig context")
    diagnose.add_argument("-n", "--namespace", help="namespace (default: default)")
    diagnose.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    diagnose.add_argument("-o", "--output", choices=("table", "json"), default="table")
    diagnose.add_argument("--show-ok", action="store_true", help="list passing results too")
    # The controller's settings and the AWS ones are the daemon's (exporter/settings.py): these flags, then
    # LBDOCTOR_* variables, then --config, then the defaults, exactly as for ``lbdoctor run``.
    diagnose.add_argument("--config", metavar="FILE", help="YAML settings file (also $LBDOCTOR_CONFIG)")
    diagnose.add_argument("--controller-namespace", metavar="NS", help="where the controller runs (kube-system)")
    diagnose.add_argument("--controller-name", metavar="NAME", help="its Deployment (aws-load-balancer-controller)")
    diagnose.add_argument("--default-target-type", choices=("instance", "ip"), help="the controller's (instance)")
    diagnose.add_argument("--load-balancer-class", metavar="CLASS", help="the controller's (service.k8s.aws/nlb)")
    diagnose.add_argument("--ingress-controller", metavar="NAME", help="IngressClass controller (ingress.k8s.aws/alb)")
    diagnose.add_argument(
        "--cluster-name", metavar="NAME", help="EKS cluster name for the AWS steps (default: from the context)"
    )
    diagnose.add_argument("--region", help="AWS Region (default: from the context, else $AWS_REGION)")
    diagnose.add_argument("--no-aws", action="store_true", help="skip the AWS steps")
    diagnose.add_argument(
        "--cluster-role",
        metavar="NAMESPACE/NAME",
        help="lbdoctor's cluster role Service, read through the API server for the node agents' probes "
        "(default: found by the chart's labels in any namespace)",
    )
    diagnose.add_argument(
        "--no-cluster-role",
        action="store_true",
        help="do not read the node agents' probes from lbdoctor's cluster role",
    )
    diagnose.add_argument("--node", metavar="NAME", help="the node a saved rules dump comes from (with -A)")
    diagnose.add_argument("--iptables-save-file", metavar="FILE", help="that node's `iptables-save` output")
    diagnose.add_argument("--nft-json-file", metavar="FILE", help="that node's `nft -j list ruleset` output")

    dump = commands.add_parser(
        "dump-rules",
        help="read this node's kube-proxy rules every interval into a directory (the node agent's privileged sidecar)",
        description="Runs iptables-save / nft as the node agent asks (request.json) and writes rules.dump there "
        "atomically; the node agent reads it with kube_proxy_rules_dir and needs no capabilities itself.",
    )
    dump.add_argument("--dir", required=True, metavar="DIR", help="the directory shared with the node agent")
    dump.add_argument("--interval", type=float, default=30.0, metavar="SECONDS", help="seconds between dumps")
    dump.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="longest wait for one command")
    dump.add_argument("--command-prefix", default="", metavar="CMD", help="run the readers through this command")
    dump.add_argument(
        "--check", action="store_true", help="exit 0 if the last dump is fresh, 1 if not (a liveness probe)"
    )
    dump.add_argument(
        "--check-config",
        action="store_true",
        help="validate the flags and exit (the directory, a volume mounted at run time, need not exist)",
    )
    dump.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    dump.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")

    commands.add_parser("version", help="print the version")
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    flags = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "check_config") and value is not None
    }
    return load(flags, config_file=args.config)


_DIAGNOSE_SETTINGS = (
    "controller_namespace",
    "controller_name",
    "default_target_type",
    "load_balancer_class",
    "ingress_controller",
    "cluster_name",
)


def _diagnose(args: argparse.Namespace) -> int:
    from exporter import diagnose

    if args.all_namespaces and args.namespace:
        print("lbdoctor: use either -n/--namespace or -A/--all-namespaces", file=sys.stderr)
        return 2
    role = args.cluster_role
    if role is not None and (role.count("/") != 1 or "" in role.split("/")):
        print("lbdoctor: --cluster-role takes NAMESPACE/NAME (the cluster role's Service)", file=sys.stderr)
        return 2
    if args.target and args.all_namespaces:
        print("lbdoctor: a service/NAME or ingress/NAME lives in one namespace: use -n, not -A", file=sys.stderr)
        return 2
    flags = {key: getattr(args, key) for key in _DIAGNOSE_SETTINGS}
    try:
        settings = load({**flags, "aws_region": args.region, "role": "cluster"}, config_file=args.config)
    except SettingsError as error:
        print(f"lbdoctor: {error}", file=sys.stderr)
        return 2
    logs.configure("console", "error")
    options = diagnose.Options(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        all_namespaces=args.all_namespaces,
        target=args.target,
        output=args.output,
        show_ok=args.show_ok,
        settings=settings,
        node=args.node,
        aws=not args.no_aws,
        iptables_save_file=args.iptables_save_file,
        nft_json_file=args.nft_json_file,
        cluster_role=args.cluster_role,
        probes=not args.no_cluster_role,
    )
    try:
        return asyncio.run(diagnose.run(options))
    except KeyboardInterrupt:
        return 130


def _dump_rules(args: argparse.Namespace) -> int:
    import os
    import shlex
    from pathlib import Path

    from exporter.app import install_signal_handlers
    from exporter.dataplane.dump import check, dump_forever
    from exporter.dataplane.readers import Runner

    directory = Path(args.dir)
    if args.check and not args.check_config:
        problem = check(directory, args.timeout)
        if problem:
            print(f"lbdoctor: {problem}", file=sys.stderr)
        return 1 if problem else 0
    if not args.dir.strip():
        print("lbdoctor: --dir must name the directory shared with the node agent", file=sys.stderr)
        return 2
    if not 1 <= args.interval <= 3600 or not 1 <= args.timeout <= 300:
        print("lbdoctor: --interval must be 1..3600 seconds and --timeout 1..300", file=sys.stderr)
        return 2
    try:
        prefix = shlex.split(args.command_prefix)
    except ValueError as error:
        print(f"lbdoctor: --command-prefix is not a command line: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        print(
            f"lbdoctor: dump-rules flags are valid (dir {directory}, interval {args.interval:g} s, "
            f"timeout {args.timeout:g} s)"
        )
        return 0
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        print(f"lbdoctor: {directory} is not a writable directory", file=sys.stderr)
        return 2
    logs.configure(args.log_format, args.log_level)

    async def run() -> int:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        work = asyncio.create_task(dump_forever(directory, args.interval, Runner(prefix, timeout=args.timeout)))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stopped):
            task.cancel()
        if work in done:
            work.result()  # dump_forever runs forever: it ended only by raising; say why
        return 0

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"lbdoctor {__version__}")
        return 0
    if args.command == "diagnose":
        return _diagnose(args)
    if args.command == "dump-rules":
        return _dump_rules(args)
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
