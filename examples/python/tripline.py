"""A Tripline client for Python pipelines, on the standard library alone (Python 3.8+).

Copy this one file into a project. It reports artifact events (``emitArtifactEvent``) and
training runs' states and metrics (``reportRunState``, ``logRunMetrics``) with idempotency keys
and retries, raises typed exceptions for the server's typed errors, watches triggered runs over
server-sent events, and verifies the Standard Webhooks signature of a delivery in a receiver::

    from tripline import Tripline

    client = Tripline()  # TRIPLINE_URL and TRIPLINE_API_KEY from the environment
    result = client.emit_artifact_event(
        entity="default", event_type="ADD_ARTIFACT_ALIAS", project="vision",
        collection="resnet", artifact_type="model", version_index=3, alias="production",
        idempotency_key="ci-build-1234-alias",
    )
    for run in client.watch_runs(event_id=result.event_id, timeout=300):
        print(run.id, run.status)

See README.md beside this file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import json
import math
import numbers
import os
import random
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

# The GraphQL documents. The emit result is a union of the payload and the typed errors (any
# member whose __typename ends in "Error" and has a message); the payload type is named in this one
# place only, `fragment TriplineEmitted on …`: rename it here when the schema renames it.
EMIT_ARTIFACT_EVENT = """
mutation TriplineEmitArtifactEvent($input: EmitArtifactEventInput!) {
  emitArtifactEvent(input: $input) {
    __typename
    ...TriplineEmitted
    ...TriplineError
  }
}

fragment TriplineEmitted on EmitArtifactEventPayload {
  replayed
  event { id eventType versionString idempotencyKey createdAt }
  triggeredRuns { ...TriplineRun }
}
"""

# The typed errors of every mutation's result union, as _raise_for_typed_error reads them.
ERROR_FIELDS = """
fragment TriplineError on Error {
  message
  ... on ValidationError { field }
  ... on NotFoundError { field }
  ... on ConflictError { field }
  ... on PermissionDeniedError { requiredRole }
}
"""

# Training runs (reportRunState, logRunMetrics): the same shape as the emit, one payload type each.
REPORT_RUN_STATE = """
mutation TriplineReportRunState($input: ReportRunStateInput!) {
  reportRunState(input: $input) {
    __typename
    ... on ReportRunStatePayload { replayed run { ...TriplineTrainingRun } triggeredRuns { ...TriplineRun } }
    ...TriplineError
  }
}
"""

LOG_RUN_METRICS = """
mutation TriplineLogRunMetrics($input: LogRunMetricsInput!) {
  logRunMetrics(input: $input) {
    __typename
    ... on LogRunMetricsPayload {
      replayed acceptedPoints run { ...TriplineTrainingRun } triggeredRuns { ...TriplineRun }
    }
    ...TriplineError
  }
}
"""

TRAINING_RUN_FIELDS = """
fragment TriplineTrainingRun on Run {
  id name state createdAt updatedAt
  metrics { name latestStep latestValue pointCount updatedAt }
}
"""

RUN_FIELDS = """
fragment TriplineRun on TriggeredRun {
  id status automationName result attemptCount createdAt updatedAt finishedAt nextAttemptAt
  event { id }
}
"""

RUN_UPDATES = """
subscription TriplineRunUpdates($entity: String, $eventId: ID, $runId: ID, $automationId: ID) {
  triggeredRunUpdated(entity: $entity, eventId: $eventId, runId: $runId, automationId: $automationId) {
    ...TriplineRun
  }
}
"""

EVENT_RUNS = """
query TriplineEventRuns($id: ID!, $after: String) {
  node(id: $id) {
    ... on ArtifactEvent {
      triggeredRuns(first: 100, after: $after) {
        edges { node { ...TriplineRun } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""

RUN = """
query TriplineRun($id: ID!) { triggeredRun(id: $id) { ...TriplineRun } }
"""

DEFAULT_URL = "http://127.0.0.1:4000/graphql"
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED"})
# The server's limits (schema.graphql): points per logRunMetrics call, characters per idempotency key.
MAX_POINTS_PER_CALL = 1000
MAX_IDEMPOTENCY_KEY_LENGTH = 255

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "EmitResult",
    "InvalidSignatureError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestError",
    "ResultError",
    "RunMetric",
    "RunReport",
    "RunUpdate",
    "TrainingRun",
    "TransportError",
    "Tripline",
    "TriplineError",
    "ValidationError",
    "WatchTimeoutError",
    "verify_signature",
]


# --- Errors ------------------------------------------------------------------------------------


class TriplineError(Exception):
    """Every error this module raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResultError(TriplineError):
    """An expected failure the server answered as a typed result (a member of the result union
    whose ``__typename`` ends in ``Error``). Nothing was stored; retrying the same input fails the
    same way. ``typename`` is the GraphQL type, ``data`` its fields as received."""

    def __init__(self, typename: str, message: str, data: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.typename = typename
        self.data: Dict[str, Any] = dict(data or {})

    def __str__(self) -> str:
        return f"{self.typename}: {self.message}"


class ValidationError(ResultError):
    """An input value is invalid; ``field`` is its path, such as ``input.versionIndex``."""

    @property
    def field(self) -> Optional[str]:
        return self.data.get("field")

    def __str__(self) -> str:
        return f"{self.typename} on {self.field}: {self.message}"


class NotFoundError(ResultError):
    """Something the input names does not exist or is not visible to the key; ``field`` names the
    input."""

    @property
    def field(self) -> Optional[str]:
        return self.data.get("field")

    def __str__(self) -> str:
        return f"{self.typename} on {self.field}: {self.message}"


class ConflictError(ResultError):
    """The input clashes with what is stored; ``field`` names the input."""

    @property
    def field(self) -> Optional[str]:
        return self.data.get("field")

    def __str__(self) -> str:
        return f"{self.typename} on {self.field}: {self.message}"


class PermissionDeniedError(ResultError):
    """The key's role in the entity does not allow this; ``required_role`` is the least that
    does."""

    @property
    def required_role(self) -> Optional[str]:
        return self.data.get("requiredRole")


_RESULT_ERRORS = {
    "ValidationError": ValidationError,
    "NotFoundError": NotFoundError,
    "ConflictError": ConflictError,
    "PermissionDeniedError": PermissionDeniedError,
}


class RequestError(TriplineError):
    """The server refused the request as a whole: an HTTP 4xx, or GraphQL errors instead of data
    (a malformed document or variables, a refused limit). Not retried. ``code`` is the first
    error's ``extensions.code`` when there is one; ``request_id`` the server's ``x-request-id``,
    to quote when asking for help."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        errors: Optional[List[Dict[str, Any]]] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.errors: List[Dict[str, Any]] = list(errors or [])
        self.request_id = request_id


class AuthenticationError(RequestError):
    """The API key is missing, malformed, unknown or revoked (HTTP 401, ``UNAUTHENTICATED``)."""


class RateLimitedError(RequestError):
    """Over a rate limit (HTTP 429), still so after the retries, or told to wait longer than
    ``max_retry_after``. ``retry_after`` is the server's wait in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TransportError(TriplineError):
    """No usable answer: network errors, timeouts or HTTP 5xx, on every attempt. ``status`` is
    the last HTTP status (None when there was no answer), ``attempts`` how many were made; the
    last underlying exception is ``__cause__``."""

    def __init__(self, message: str, *, status: Optional[int] = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class WatchTimeoutError(TriplineError, TimeoutError):
    """``watch_runs`` reached its ``timeout`` before the runs it waited for were final."""


class InvalidSignatureError(TriplineError):
    """A webhook delivery's signature does not verify: a header is missing or malformed, the
    timestamp is outside the tolerance, or no signature matches the body."""


# --- Results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunUpdate:
    """A triggered run as the server reported it: at emit time, or one status change."""

    id: str
    status: str
    automation_name: Optional[str] = None
    result: Optional[str] = None
    attempt_count: Optional[int] = None
    event_id: Optional[str] = None
    updated_at: Optional[str] = None
    finished_at: Optional[str] = None
    next_attempt_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        """True for SUCCEEDED, FAILED and SKIPPED."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_graphql(cls, run: Dict[str, Any]) -> "RunUpdate":
        event = run.get("event") or {}
        return cls(
            id=run["id"],
            status=run["status"],
            automation_name=run.get("automationName"),
            result=run.get("result"),
            attempt_count=run.get("attemptCount"),
            event_id=event.get("id"),
            updated_at=run.get("updatedAt"),
            finished_at=run.get("finishedAt"),
            next_attempt_at=run.get("nextAttemptAt"),
            raw=run,
        )


@dataclass(frozen=True)
class EmitResult:
    """What ``emit_artifact_event`` returns: the stored event's id, whether this is the first
    result of an earlier call with the same idempotency key (``replayed``), the runs the event
    queued, and the idempotency key that was sent (keep it to retry later)."""

    event_id: str
    replayed: bool
    runs: Tuple[RunUpdate, ...]
    idempotency_key: str
    event: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def run_ids(self) -> List[str]:
        return [run.id for run in self.runs]

    @property
    def run_statuses(self) -> Dict[str, str]:
        return {run.id: run.status for run in self.runs}


@dataclass(frozen=True)
class RunMetric:
    """One metric of a training run: its latest step and value, and how many points were accepted."""

    name: str
    latest_step: int
    latest_value: float
    point_count: int
    updated_at: Optional[str] = None


@dataclass(frozen=True)
class TrainingRun:
    """A training run as the server holds it (the GraphQL ``Run``, id ``trun_…``): its latest
    state (``RUNNING``, ``FINISHED`` or ``FAILED``) and the latest value of every metric, by name.
    Not a ``RunUpdate``, which is one triggered run of an automation."""

    id: str
    name: str
    state: str
    metrics: Dict[str, RunMetric] = field(default_factory=dict, hash=False)
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_graphql(cls, run: Dict[str, Any]) -> "TrainingRun":
        return cls(
            id=run["id"],
            name=run["name"],
            state=run["state"],
            metrics={
                metric["name"]: RunMetric(
                    name=metric["name"],
                    latest_step=metric["latestStep"],
                    latest_value=metric["latestValue"],
                    point_count=metric["pointCount"],
                    updated_at=metric.get("updatedAt"),
                )
                for metric in run.get("metrics") or []
            },
            created_at=run.get("createdAt"),
            updated_at=run.get("updatedAt"),
            raw=run,
        )


@dataclass(frozen=True)
class RunReport:
    """What ``report_run_state`` and ``log_run_metrics`` return: the training run as it is now,
    the triggered runs the report queued, and the points accepted (0 for a state report).

    A metrics report larger than ``MAX_POINTS_PER_CALL`` is sent in several calls; then
    ``accepted_points`` and ``triggered_runs`` add up all of them, ``run`` is as the last one
    left it, and ``replayed`` is True only when every call was a replay. ``idempotency_key`` is
    the key of the whole report (pass it again to retry it), ``idempotency_keys`` the keys sent,
    one per call."""

    run: TrainingRun
    replayed: bool
    accepted_points: int
    triggered_runs: Tuple[RunUpdate, ...]
    idempotency_key: str
    idempotency_keys: Tuple[str, ...]

    @property
    def triggered_run_ids(self) -> List[str]:
        return [run.id for run in self.triggered_runs]


# --- The client --------------------------------------------------------------------------------


class _Retry(Exception):
    """An attempt failed in a way worth retrying (internal)."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        error: Optional[TriplineError] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.error = error


class Tripline:
    """A client for one Tripline server and API key.

    ``url`` defaults to ``TRIPLINE_URL``, then ``http://127.0.0.1:4000/graphql``; ``api_key`` to
    ``TRIPLINE_API_KEY`` (sent as ``Authorization: Bearer …``). ``timeout`` is how long one
    attempt may wait to connect and for each read, in seconds. Network errors, timeouts, HTTP 5xx
    and 429 are retried up to ``max_attempts`` tries in all, with exponential backoff and full
    jitter (a random wait below ``backoff_base * 2**(n-1)``, at most ``backoff_max``); a 429's
    ``Retry-After`` replaces the computed wait, unless it exceeds ``max_retry_after``, when
    ``RateLimitedError`` is raised at once. ``sleep`` and ``rng`` can be replaced in tests.
    ``ssl_context`` is used for ``https://`` URLs. Environment proxy settings are not used.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 60.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.url = url or os.environ.get("TRIPLINE_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("TRIPLINE_API_KEY")
        if not key:
            raise ValueError("Give an API key: the api_key argument or TRIPLINE_API_KEY.")
        self._api_key = key
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"TRIPLINE_URL must be an http:// or https:// URL, not {self.url!r}.")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1.")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/graphql") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"Tripline(url={self.url!r})"

    # --- emitArtifactEvent ---

    def emit_artifact_event(
        self,
        *,
        entity: str,
        event_type: str,
        collection: str,
        artifact_type: str,
        version_index: Optional[int] = None,
        project: Optional[str] = None,
        registry: Optional[str] = None,
        alias: Optional[str] = None,
        tag: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        author: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> EmitResult:
        """Reports one artifact event and returns the event and the runs it queued.

        ``event_type`` is ``CREATE_ARTIFACT`` (names a ``project``), ``LINK_ARTIFACT`` or
        ``UNLINK_ARTIFACT`` (a ``registry``), ``ADD_ARTIFACT_ALIAS`` (either, with an ``alias``),
        ``ADD_ARTIFACT_TAG`` or ``REMOVE_ARTIFACT_TAG`` (either, with a ``tag``), or
        ``ADD_COLLECTION_TAG`` or ``REMOVE_COLLECTION_TAG`` (either, with a ``tag`` and no
        ``version_index``; every other type needs ``version_index``). Every attempt of
        this call sends the same ``idempotency_key`` (a new UUID when none is given), so a retry
        after a lost answer returns the first result (``replayed=True``) instead of storing a
        second event. Pass a key derived from the logical event (``f"{build_id}-{version}"``)
        to make re-running the whole script safe too.

        Raises ValidationError, NotFoundError, ConflictError or PermissionDeniedError for the
        server's typed errors, AuthenticationError for a bad key, RateLimitedError, RequestError
        for other refusals, and TransportError when every attempt failed.
        """
        if (project is None) == (registry is None):
            raise ValueError("name exactly one of project or registry")
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        given = {
            "entity": entity,
            "eventType": event_type,
            "collection": collection,
            "artifactType": artifact_type,
            "versionIndex": version_index,
            "owner": {"project": project} if project is not None else {"registry": registry},
            "alias": alias,
            "tag": tag,
            "metadata": dict(metadata) if metadata is not None else None,
            "author": author,
            "idempotencyKey": key,
        }
        variables = {"input": {name: value for name, value in given.items() if value is not None}}
        data = self.execute(EMIT_ARTIFACT_EVENT + RUN_FIELDS + ERROR_FIELDS, variables, retry=True)
        result = _raise_for_typed_error(data["emitArtifactEvent"])
        return EmitResult(
            event_id=result["event"]["id"],
            replayed=bool(result["replayed"]),
            runs=tuple(RunUpdate.from_graphql(run) for run in result["triggeredRuns"]),
            idempotency_key=key,
            event=result["event"],
        )

    # --- reportRunState and logRunMetrics ---

    def report_run_state(
        self,
        *,
        entity: str,
        project: str,
        run: str,
        state: str,
        idempotency_key: Optional[str] = None,
    ) -> RunReport:
        """Reports a training run's ``state`` (``RUNNING``, ``FINISHED``, ``FAILED``, or
        ``CRASHED``, kept as ``FAILED``) and returns the run and the triggered runs of the
        RUN_STATE automations it fired. The first report of a ``run`` name in the ``project``
        creates the run; report it before logging metrics.

        Idempotency, retries and errors as for ``emit_artifact_event``: every attempt sends the
        same ``idempotency_key`` (a new UUID when none is given), so a retry after a lost answer
        returns the first result (``replayed=True``). Keys are shared with ``log_run_metrics``
        in the entity: use a different key for each report (``f"{job_id}-finished"``).
        """
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        given = {"entity": entity, "project": project, "run": run, "state": state, "idempotencyKey": key}
        result = self._report_run(REPORT_RUN_STATE, "reportRunState", given)
        return _run_report([result], key, [key])

    def log_run_metrics(
        self,
        *,
        entity: str,
        project: str,
        run: str,
        points: Iterable[Union[Tuple[int, str, float], Mapping[str, Any]]],
        idempotency_key: Optional[str] = None,
    ) -> RunReport:
        """Logs metric points to a training run (reported first with ``report_run_state``) and
        returns the run as it is now and the triggered runs of the metric automations they
        fired.

        ``points`` are ``(step, name, value)`` tuples or dicts with those keys: a whole ``step``
        from 0, increasing per metric; a metric ``name`` such as ``"val/loss"``; a finite
        ``value``. All are checked before anything is sent: a NaN or infinite value, a negative
        or fractional step or a point of another shape raises ``ValueError`` naming the point
        (``points[3].value``), and nothing is logged. Points are sent in step order; per
        metric, the server ignores a point at or before the latest step it has (so re-sent
        points count once: see ``accepted_points``).

        More than ``MAX_POINTS_PER_CALL`` (1000) points go in several calls, in step order, each
        with its own key derived from ``idempotency_key`` (``key#1``, ``key#2``, …; a key too
        long for a suffix is replaced by its SHA-256 first). Calling again with the same key and
        points after a failure replays the calls that went through and sends the rest. An
        automation fires at most once per call, and its cooldown (24 hours by default) keeps it
        from firing again in a later call of the same report.

        Retries and errors as for ``emit_artifact_event``; ``NotFoundError`` on ``input.run``
        when the run was never reported. When a later call fails, the earlier ones stay logged.
        """
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        checked = _metric_points(points)
        batches = [
            checked[start : start + MAX_POINTS_PER_CALL] for start in range(0, len(checked), MAX_POINTS_PER_CALL)
        ] or [[]]  # none at all: the server says why
        keys = [_batch_key(key, index, len(batches)) for index in range(len(batches))]
        results = [
            self._report_run(
                LOG_RUN_METRICS,
                "logRunMetrics",
                {"entity": entity, "project": project, "run": run, "points": batch, "idempotencyKey": batch_key},
            )
            for batch, batch_key in zip(batches, keys)
        ]
        return _run_report(results, key, keys)

    def _report_run(self, document: str, name: str, given: Dict[str, Any]) -> Dict[str, Any]:
        data = self.execute(document + TRAINING_RUN_FIELDS + RUN_FIELDS + ERROR_FIELDS, {"input": given}, retry=True)
        return _raise_for_typed_error(data[name])

    # --- Plain GraphQL ---

    def execute(
        self,
        query: str,
        variables: Optional[Mapping[str, Any]] = None,
        *,
        retry: bool = False,
    ) -> Dict[str, Any]:
        """Runs one GraphQL operation over HTTP POST and returns its ``data``.

        With ``retry=True``, network errors, timeouts, 5xx and 429 are retried as described on
        the class: only for operations that are safe to repeat (queries, and mutations with an
        idempotency key). Typed result errors are left in the data for the caller.
        """
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        attempts = self.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post_once(body)
            except _Retry as failure:
                if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
                    raise failure.error or RateLimitedError(str(failure), status=429) from None
                if attempt == attempts:
                    if isinstance(failure.error, RateLimitedError):
                        raise failure.error from None
                    raise TransportError(
                        f"{failure} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                        status=failure.status,
                        attempts=attempt,
                    ) from failure.__cause__
                self._sleep(self._delay(attempt, failure.retry_after))
        raise AssertionError("unreachable")

    def _delay(self, failures: int, retry_after: Optional[float]) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        return self._rng.uniform(0, ceiling)

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl_context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, accept: str) -> Dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": accept,
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": "tripline-python/1",
        }

    def _post_once(self, body: bytes) -> Dict[str, Any]:
        connection = self._connection(self.timeout)
        try:
            try:
                connection.request(
                    "POST",
                    self._path,
                    body=body,
                    headers=self._headers("application/graphql-response+json, application/json"),
                )
                response = connection.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as error:
                # Timeouts are OSErrors too. The request may have been processed: only retried
                # operations are safe to repeat, which is why emits carry an idempotency key.
                raise _Retry(f"Could not reach {self.url}: {error!r}") from error
            return _read_response(response.status, response.getheader, raw, self.url)
        finally:
            connection.close()

    # --- Watching runs ---

    def watch_runs(
        self,
        *,
        event_id: Optional[str] = None,
        run_id: Optional[str] = None,
        automation_id: Optional[str] = None,
        entity: Optional[str] = None,
        timeout: Optional[float] = None,
        idle_timeout: float = 45.0,
        catch_up: bool = True,
        until_final: bool = True,
    ) -> "RunWatch":
        """Streams run status changes over server-sent events, as ``RunUpdate`` objects::

            for run in client.watch_runs(event_id=result.event_id, timeout=600):
                print(run.id, run.status)

        The arguments narrow the subscription ``triggeredRunUpdated`` (all given must hold).
        Once the stream is open, with ``event_id`` or ``run_id`` and ``catch_up``, the runs'
        current states are read and yielded first, so changes made before the stream opened are
        not missed; an update older than one already yielded is skipped. With ``until_final``
        (and ``event_id`` or ``run_id``), iteration ends once every one of those runs is final
        (SUCCEEDED, FAILED or SKIPPED) — with ``event_id`` alone that takes ``catch_up``, which
        lists the event's runs; otherwise it goes on until the caller stops.

        ``timeout`` bounds the whole watch in seconds (``WatchTimeoutError``); ``idle_timeout``
        how long the stream may stay silent (the server pings every 12 s) before it counts as
        lost (``TransportError``). A lost stream is not reopened: call ``watch_runs`` again;
        with ``catch_up`` nothing is missed. Leaving the loop, ``close()``, or a ``with`` block
        closes the connection.
        """
        return RunWatch(
            self._watch(
                variables={
                    "entity": entity,
                    "eventId": event_id,
                    "runId": run_id,
                    "automationId": automation_id,
                },
                event_id=event_id,
                run_id=run_id,
                deadline=None if timeout is None else time.monotonic() + timeout,
                idle_timeout=idle_timeout,
                catch_up=catch_up,
                until_final=until_final,
            )
        )

    def _watch(
        self,
        *,
        variables: Dict[str, Optional[str]],
        event_id: Optional[str],
        run_id: Optional[str],
        deadline: Optional[float],
        idle_timeout: float,
        catch_up: bool,
        until_final: bool,
    ) -> Iterator[RunUpdate]:
        watching = event_id is not None or run_id is not None
        body = json.dumps(
            {
                "query": RUN_UPDATES + RUN_FIELDS,
                "variables": {name: value for name, value in variables.items() if value is not None},
            }
        ).encode()
        connection = self._connection(_remaining(deadline, self.timeout))
        try:
            try:
                connection.request("POST", self._path, body=body, headers=self._headers("text/event-stream"))
                response = connection.getresponse()
            except socket.timeout as error:
                if _expired(deadline):
                    raise WatchTimeoutError("The watch timed out before the stream opened.") from error
                raise TransportError(f"Could not open the run stream at {self.url}: {error!r}") from error
            except (OSError, http.client.HTTPException) as error:
                raise TransportError(f"Could not open the run stream at {self.url}: {error!r}") from error
            content_type = response.getheader("content-type") or ""
            if response.status != 200 or not content_type.startswith("text/event-stream"):
                raw = response.read()
                errors = _sse_errors(raw) if content_type.startswith("text/event-stream") else None
                if errors is not None:
                    raise _request_error(response.status, errors, response.getheader("x-request-id"))
                _read_response(response.status, response.getheader, raw, self.url)
                raise RequestError(
                    f"The server answered HTTP {response.status} without an event stream.",
                    status=response.status,
                )

            # The subscription is live once the response has started: read the current states
            # now, so nothing that happened before it was missed.
            latest: Dict[str, RunUpdate] = {}
            if catch_up and watching:
                for run in self._current_runs(event_id, run_id):
                    latest[run.id] = run
                    yield run
                if until_final and all(run.final for run in latest.values()):
                    return

            for kind, data in _sse_events(response, connection, deadline, idle_timeout):
                if kind == "complete":
                    return
                if kind != "next":
                    continue
                message = json.loads(data) if data else {}
                if message.get("errors"):
                    raise _request_error(200, message["errors"], response.getheader("x-request-id"))
                payload = (message.get("data") or {}).get("triggeredRunUpdated")
                if not payload:
                    continue
                run = RunUpdate.from_graphql(payload)
                if _is_stale(run, latest.get(run.id)):
                    continue
                latest[run.id] = run
                yield run
                if until_final and watching and all(r.final for r in latest.values()):
                    if run_id is not None or catch_up:
                        return
        finally:
            connection.close()

    def _current_runs(self, event_id: Optional[str], run_id: Optional[str]) -> List[RunUpdate]:
        if run_id is not None:
            run = self.execute(RUN + RUN_FIELDS, {"id": run_id}, retry=True)["triggeredRun"]
            if run is None:
                raise NotFoundError(
                    "NotFoundError", f"No triggered run {run_id} that this key can read.", {"field": "run_id"}
                )
            runs = [RunUpdate.from_graphql(run)]
            if event_id is not None:
                runs = [r for r in runs if r.event_id == event_id]
            return runs
        runs: List[RunUpdate] = []
        after: Optional[str] = None
        while True:
            node = self.execute(EVENT_RUNS + RUN_FIELDS, {"id": event_id, "after": after}, retry=True)["node"]
            if not node or "triggeredRuns" not in node:
                raise NotFoundError(
                    "NotFoundError", f"No artifact event {event_id} that this key can read.", {"field": "event_id"}
                )
            page = node["triggeredRuns"]
            runs.extend(RunUpdate.from_graphql(edge["node"]) for edge in page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                return runs
            after = page["pageInfo"]["endCursor"]


class RunWatch:
    """The iterator ``watch_runs`` returns: iterate it for ``RunUpdate`` objects; ``close()`` (or
    leaving a ``with`` block) closes the connection. Iteration ends when the runs are final (see
    ``watch_runs``) or the server completes the stream."""

    def __init__(self, updates: Iterator[RunUpdate]) -> None:
        self._updates = updates

    def __iter__(self) -> "RunWatch":
        return self

    def __next__(self) -> RunUpdate:
        return next(self._updates)

    def close(self) -> None:
        self._updates.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "RunWatch":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# --- Webhook signatures ------------------------------------------------------------------------


def verify_signature(
    secret: str,
    headers: Mapping[str, Any],
    body: Union[bytes, str],
    tolerance: float = 300,
    now: Union[float, datetime, None] = None,
) -> str:
    """Verifies a webhook delivery from Tripline (Standard Webhooks) and returns its
    ``webhook-id`` (the run id: the same on every retry, so de-duplicate on it).

    ``secret`` is the action's signing secret (``whsec_…``, as shown once at creation);
    ``headers`` the request headers (any letter case; a list value counts by its first item);
    ``body`` the raw request body exactly as received — parse JSON only after verifying.
    ``webhook-timestamp`` must be within ``tolerance`` seconds of ``now`` (Unix seconds or an
    aware datetime; the system clock by default), and one of the space-separated ``v1,…``
    entries of ``webhook-signature`` must be the base64 HMAC-SHA256 of ``id.timestamp.body``.
    Comparison is constant-time. Raises InvalidSignatureError otherwise, and ValueError for a
    secret that holds no key.
    """
    key = _signing_key(secret)
    lowered = {name.lower(): value for name, value in headers.items()}

    def header(name: str) -> str:
        value = lowered.get(name)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not value:
            raise InvalidSignatureError(f"The {name} header is missing.")
        return str(value)

    webhook_id = header("webhook-id")
    timestamp = header("webhook-timestamp")
    signatures = header("webhook-signature")
    if not timestamp.isdigit() or not timestamp.isascii():
        raise InvalidSignatureError("The webhook-timestamp header is not Unix seconds.")
    if now is None:
        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - int(timestamp)) > tolerance:
        raise InvalidSignatureError(
            f"The webhook-timestamp is more than {tolerance:g} seconds from now (a replay, or a wrong clock)."
        )
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    expected = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    matched = False
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Check every entry, so the time taken does not tell which one matched.
        matched = hmac.compare_digest(given, expected) or matched
    if not matched:
        raise InvalidSignatureError("No signature in webhook-signature matches the body.")
    return webhook_id


def _signing_key(secret: str) -> bytes:
    encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("The signing secret is not whsec_ followed by base64.") from error
    if not key:
        raise ValueError('The signing secret holds no key after "whsec_".')
    return key


# --- Helpers -----------------------------------------------------------------------------------


def _raise_for_typed_error(result: Dict[str, Any]) -> Dict[str, Any]:
    typename = result.get("__typename", "")
    if typename.endswith("Error") and "message" in result:
        fields = {name: value for name, value in result.items() if name not in ("__typename", "message")}
        raise _RESULT_ERRORS.get(typename, ResultError)(typename, result["message"], fields)
    return result


def _metric_points(points: Iterable[Any]) -> List[Dict[str, Any]]:
    """The points as ``MetricPointInput`` dicts in step order (stable, as the server applies
    them), or ValueError naming the first bad one. JSON cannot carry NaN or infinities, so they
    are refused here rather than sent as invalid JSON."""
    checked: List[Dict[str, Any]] = []
    for index, point in enumerate(points):
        at = f"points[{index}]"
        if isinstance(point, Mapping):
            missing = [name for name in ("step", "name", "value") if name not in point]
            if missing:
                raise ValueError(f"{at} has no {', '.join(missing)}: give step, name and value.")
            step, name, value = point["step"], point["name"], point["value"]
        elif isinstance(point, (tuple, list)) and len(point) == 3:
            step, name, value = point
        else:
            raise ValueError(f"{at} is {point!r}: give a (step, name, value) tuple or a dict with those keys.")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"{at}.step is {step!r}: the step is a whole number, 0 or more.")
        if not isinstance(name, str):
            raise ValueError(f"{at}.name is {name!r}: name the metric with a string, such as 'val/loss'.")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{at}.value is {value!r}: metric values are real numbers (int or float).")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(
                f"{at}.value is {value!r}: metric values must be finite (Tripline refuses NaN and "
                "infinities). Leave the point out, or log a finite value; nothing was sent."
            )
        checked.append({"step": int(step), "name": name, "value": number})
    checked.sort(key=lambda point: point["step"])
    return checked


def _batch_key(key: str, index: int, count: int) -> str:
    """The idempotency key of call ``index`` of ``count`` for one report: the key itself for a
    single call, else ``key#1``, ``key#2``, … (from the key's SHA-256 when the key is too long
    for the suffix), the same on every retry of the whole report."""
    if count == 1:
        return key
    suffix = f"#{index + 1}"
    if len(key) + len(suffix) > MAX_IDEMPOTENCY_KEY_LENGTH:
        key = hashlib.sha256(key.encode()).hexdigest()
    return key + suffix


def _run_report(results: List[Dict[str, Any]], key: str, keys: List[str]) -> RunReport:
    return RunReport(
        run=TrainingRun.from_graphql(results[-1]["run"]),
        replayed=all(result["replayed"] for result in results),
        accepted_points=sum(result.get("acceptedPoints", 0) for result in results),
        triggered_runs=tuple(RunUpdate.from_graphql(run) for result in results for run in result["triggeredRuns"]),
        idempotency_key=key,
        idempotency_keys=tuple(keys),
    )


def _read_response(
    status: int, getheader: Callable[[str], Optional[str]], raw: bytes, url: str
) -> Dict[str, Any]:
    """Turns one HTTP answer into ``data``, or raises (``_Retry`` for what is worth retrying)."""
    request_id = getheader("x-request-id")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if status == 429:
        retry_after = _retry_after(getheader("retry-after"), errors)
        error = _request_error(status, errors or [{"message": "Rate limited."}], request_id)
        assert isinstance(error, RateLimitedError)
        error.retry_after = retry_after
        raise _Retry(error.message, status=status, retry_after=retry_after, error=error)
    if status >= 500:
        raise _Retry(f"{url} answered HTTP {status}", status=status)
    if errors and not (isinstance(parsed, dict) and parsed.get("data")):
        raise _request_error(status, errors, request_id)
    if status != 200 or not isinstance(parsed, dict) or not isinstance(parsed.get("data"), dict):
        raise RequestError(f"{url} answered HTTP {status} without GraphQL data.", status=status, request_id=request_id)
    if errors:
        # Data and errors together: a field failed (the server masks unexpected errors).
        raise _request_error(status, errors, request_id)
    return parsed["data"]


def _request_error(status: int, errors: List[Dict[str, Any]], request_id: Optional[str]) -> RequestError:
    first = errors[0] if errors else {}
    extensions = first.get("extensions") or {}
    code = extensions.get("code")
    message = "; ".join(str(error.get("message", "")) for error in errors) or f"HTTP {status}"
    request_id = extensions.get("requestId") or request_id
    kwargs = {"status": status, "code": code, "errors": errors, "request_id": request_id}
    if status == 401 or code == "UNAUTHENTICATED":
        return AuthenticationError(message, **kwargs)
    if status == 429 or code == "RATE_LIMITED":
        return RateLimitedError(message, retry_after=extensions.get("retryAfterSeconds"), **kwargs)
    return RequestError(message, **kwargs)


def _retry_after(header: Optional[str], errors: Optional[List[Dict[str, Any]]]) -> Optional[float]:
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max(0.0, when.timestamp() - time.time())
    for error in errors or []:
        seconds = (error.get("extensions") or {}).get("retryAfterSeconds")
        if isinstance(seconds, (int, float)):
            return max(0.0, float(seconds))
    return None


def _sse_errors(raw: bytes) -> Optional[List[Dict[str, Any]]]:
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("data:"):
            try:
                message = json.loads(line[5:].strip())
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("errors"):
                return message["errors"]
    return None


def _sse_events(
    response: http.client.HTTPResponse,
    connection: http.client.HTTPConnection,
    deadline: Optional[float],
    idle_timeout: float,
) -> Iterator[Tuple[str, str]]:
    """Yields (event, data) per server-sent event. Each read may wait until the deadline, or
    ``idle_timeout`` at most: a socket that timed out cannot be read again, so either ends the
    stream."""
    kind: str = "message"
    data: List[str] = []
    while True:
        wait = idle_timeout if deadline is None else min(idle_timeout, deadline - time.monotonic())
        if wait <= 0:
            raise WatchTimeoutError("The watch timed out before the runs were final.")
        if connection.sock is not None:
            connection.sock.settimeout(wait)
        try:
            line = response.readline()
        except socket.timeout as error:
            if _expired(deadline):
                raise WatchTimeoutError("The watch timed out before the runs were final.") from error
            raise TransportError(f"The run stream sent nothing for {idle_timeout:g} s.") from error
        except (OSError, http.client.HTTPException) as error:
            raise TransportError(f"The run stream broke: {error!r}") from error
        if not line:
            raise TransportError("The server closed the run stream.")
        text = line.decode("utf-8").rstrip("\r\n")
        if text == "":
            if data:
                yield kind, "\n".join(data)
            elif kind != "message":
                yield kind, ""
            kind, data = "message", []
        elif text.startswith(":"):
            continue  # a keep-alive comment
        else:
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)


def _is_stale(run: RunUpdate, seen: Optional[RunUpdate]) -> bool:
    if seen is None or run.updated_at is None or seen.updated_at is None:
        return False
    new, old = _timestamp(run.updated_at), _timestamp(seen.updated_at)
    return new < old or (new == old and run.status == seen.status)


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _remaining(deadline: Optional[float], cap: float) -> float:
    return cap if deadline is None else max(0.001, min(cap, deadline - time.monotonic()))


def _expired(deadline: Optional[float]) -> bool:
    return deadline is not None and time.monotonic() >= deadline
