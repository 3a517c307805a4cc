"""The only module that talks to AWS: boto3 clients behind a narrow, typed, rate-limited async call.

- Every call runs in a small dedicated thread pool (boto3 blocks), never on the event loop, and
  never in the default executor the web server renders /metrics in.
- botocore's own retry modes (``standard`` or ``adaptive``) retry throttling and transient errors.
- A client-side token bucket per service keeps lbdoctor well under the account's shared buckets.
- Credentials come from the standard chain (env, IRSA web identity, EKS Pod Identity, profiles);
  ``AWS_ENDPOINT_URL`` (botocore's own setting) points the clients elsewhere, e.g. at moto.
- Only the operations in ``OPERATIONS`` can be called, each mapped to its IAM action, so
  docs/iam-policy.json is provably complete (tests/aws/test_iam_policy.py).
- Failures become ``AwsCallError`` carrying an ``ApiProblem`` that names the IAM action.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from exporter.aws.limiter import TokenBucket
from exporter.aws.model import ApiProblem, ProblemKind

ELBV2, EC2, CLOUDWATCH = "elbv2", "ec2", "cloudwatch"

# botocore method -> (service, IAM action). Everything lbdoctor may ask AWS, and nothing more.
OPERATIONS: Mapping[str, tuple[str, str]] = {
    "describe_target_groups": (ELBV2, "elasticloadbalancing:DescribeTargetGroups"),
    "describe_target_health": (ELBV2, "elasticloadbalancing:DescribeTargetHealth"),
    "describe_tags": (ELBV2, "elasticloadbalancing:DescribeTags"),
    "describe_load_balancers": (ELBV2, "elasticloadbalancing:DescribeLoadBalancers"),
    "describe_instances": (EC2, "ec2:DescribeInstances"),
    "describe_network_interfaces": (EC2, "ec2:DescribeNetworkInterfaces"),
    "describe_security_groups": (EC2, "ec2:DescribeSecurityGroups"),
    "describe_subnets": (EC2, "ec2:DescribeSubnets"),
    "describe_network_acls": (EC2, "ec2:DescribeNetworkAcls"),
    "describe_route_tables": (EC2, "ec2:DescribeRouteTables"),
    "describe_vpcs": (EC2, "ec2:DescribeVpcs"),
    # The change detector (exporter.aws.detect): the LBs' own UnHealthyHostCount, 500 target groups a call.
    "get_metric_data": (CLOUDWATCH, "cloudwatch:GetMetricData"),
}

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
}
_NOT_FOUND = {"TargetGroupNotFound", "LoadBalancerNotFound", "TargetGroupNotFoundException"}
_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


class AwsCallError(Exception):
    """A Describe* call failed; ``problem`` says which IAM action and how, in words fit for a result."""

    def __init__(self, operation: str, problem: ApiProblem) -> None:
        super().__init__(problem.message)
        self.operation = operation
        self.problem = problem


def action_of(operation: str) -> str:
    return OPERATIONS[operation][1]


def classify(operation: str, error: BaseException) -> ApiProblem:
    """Turn a botocore failure into an ApiProblem naming the IAM action (pure; tested directly)."""
    action = action_of(operation)
    if isinstance(error, _CREDENTIALS):
        return ApiProblem(
            action,
            ProblemKind.NO_CREDENTIALS,
            f"no AWS credentials to call {action} ({error}); give the cluster role IRSA or EKS Pod Identity",
        )
    if isinstance(error, botocore.exceptions.NoRegionError):
        return ApiProblem(action, ProblemKind.ERROR, f"no AWS region to call {action}: set aws_region or AWS_REGION")
    if isinstance(error, _UNREACHABLE):
        return ApiProblem(action, ProblemKind.UNREACHABLE, f"{action}: the AWS endpoint is unreachable ({error})")
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        text = str(details.get("Message", "")).strip() or code
        if code in _DENIED:
            return ApiProblem(
                action,
                ProblemKind.ACCESS_DENIED,
                f"{action} was denied ({code}: {text}); add it to the role's policy (docs/iam-policy.json)",
            )
        if code in _THROTTLED:
            return ApiProblem(
                action,
                ProblemKind.THROTTLED,
                f"{action} was throttled ({code}: {text}) even after retries; the account's API budget is spent",
            )
        if code in _NOT_FOUND or code.endswith(".NotFound"):
            return ApiProblem(action, ProblemKind.NOT_FOUND, f"{action}: {code}: {text}")
        return ApiProblem(action, ProblemKind.ERROR, f"{action} failed ({code}: {text})")
    return ApiProblem(action, ProblemKind.ERROR, f"{action} failed ({type(error).__name__}: {error})")


ClientFactory = Callable[[str], Any]


class AwsApi:
    """boto3 clients for ELBv2, EC2 and CloudWatch behind ``await call(operation, **params)``.

    ``client_factory`` (service name -> botocore client) replaces the standard clients; tests use it
    to attach botocore's Stubber. Counts of every request (by operation and outcome) are kept for
    ``lbdoctor_aws_api_requests_total``; retries botocore made are counted as outcome ``retried``.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        retry_mode: str = "standard",
        max_attempts: int = 3,
        elbv2_limiter: TokenBucket | None = None,
        ec2_limiter: TokenBucket | None = None,
        cloudwatch_limiter: TokenBucket | None = None,
        workers: int = 8,
        endpoint_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._region = region
        self._config = Config(
            retries={"mode": retry_mode, "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(workers, 10),
            user_agent_extra="lbdoctor",
        )
        self._endpoint_url = endpoint_url
        self._factory = client_factory or self._standard_client
        self._limiters = {
            ELBV2: elbv2_limiter or TokenBucket(2.0, 10),
            EC2: ec2_limiter or TokenBucket(2.0, 10),
            CLOUDWATCH: cloudwatch_limiter or TokenBucket(1.0, 5),
        }
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lbdoctor-aws")
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._counts_lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------------
    def _standard_client(self, service: str) -> Any:
        session = boto3.session.Session(region_name=self._region)
        return session.client(service, config=self._config, endpoint_url=self._endpoint_url)

    def _client(self, service: str) -> Any:
        # Runs in a worker thread: building a client reads JSON models from disk (tens of ms).
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                client = self._factory(service)
                self._clients[service] = client
            return client

    @property
    def region(self) -> str:
        """The region the clients resolved (from settings, AWS_REGION, the profile, …), once built."""
        with self._clients_lock:
            for client in self._clients.values():
                return str(client.meta.region_name or "")
        return self._region or ""

    async def credential_source(self) -> str | None:
        """How the standard chain found credentials (``env``, ``assume-role-with-web-identity`` for IRSA,
        ``container-role`` for EKS Pod Identity, ``shared-credentials-file``, ``iam-role``, …), or None
        when there are none: ``lbdoctor diagnose`` says so instead of running the AWS steps."""

        def resolve() -> str | None:
            try:
                credentials = boto3.session.Session(region_name=self._region).get_credentials()
            except Exception:  # a broken profile or provider is "no credentials" to the caller
                return None
            return None if credentials is None else str(getattr(credentials, "method", "unknown"))

        return await asyncio.get_running_loop().run_in_executor(self._executor, resolve)

    def limiter(self, service: str) -> TokenBucket:
        return self._limiters[service]

    def budgets(self) -> dict[str, tuple[float, int]]:
        """Per service: lbdoctor's client-side rate (calls a second) and burst."""
        return {service: (bucket.rate, bucket.burst) for service, bucket in self._limiters.items()}

    def waited(self) -> dict[str, float]:
        """Per service: seconds calls have waited for lbdoctor's own budget (how budget-bound it is)."""
        return {service: bucket.waited for service, bucket in self._limiters.items()}

    # -- calls -----------------------------------------------------------------------------------
    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One Describe* request. Raises AwsCallError (with the IAM action) on any failure."""
        if operation not in OPERATIONS:
            raise ValueError(f"{operation} is not in exporter.aws.api.OPERATIONS (and so not in the IAM policy)")
        service = OPERATIONS[operation][0]
        await self._limiters[service].acquire()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._blocking_call, service, operation, params)

    def _blocking_call(self, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        name = _operation_name(operation)
        try:
            client = self._client(service)
            response: dict[str, Any] = getattr(client, operation)(**params)
        except Exception as error:
            problem = classify(operation, error)
            response_meta = getattr(error, "response", None) or {}
            self._count(name, problem.kind.value, _retries(response_meta))
            raise AwsCallError(operation, problem) from error
        self._count(name, "success", _retries(response))
        return response

    def _count(self, operation: str, outcome: str, retries: int) -> None:
        with self._counts_lock:
            self._counts[(operation, outcome)] += 1
            if retries:
                self._counts[(operation, "retried")] += retries

    def counts(self) -> dict[tuple[str, str], int]:
        with self._counts_lock:
            return dict(self._counts)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _operation_name(method: str) -> str:
    """describe_target_health -> DescribeTargetHealth (the name AWS and CloudTrail use)."""
    return "".join(part.capitalize() for part in method.split("_"))


def _retries(response: Mapping[str, Any]) -> int:
    meta = response.get("ResponseMetadata") or {}
    value = meta.get("RetryAttempts", 0) if isinstance(meta, Mapping) else 0
    return value if isinstance(value, int) else 0
