"""A local stand-in for CleverTap's server API: profile uploads, one-profile look-ups and the profiles query.

It answers as CleverTap documents it:

* ``POST /1/upload`` — ``{"d": [record, …]}``, at most ``max_records`` records (1000), answered HTTP 200 with
  ``{"status": "success"|"partial"|"fail", "processed": N, "unprocessed": [{"status": "fail", "code": C,
  "error": "… Skipped record number : I", "record": {…}}]}`` (``I`` is the record's 0-based index in ``d``);
  an upsert: an identity not found creates a profile;
* at most ``max_concurrent`` requests in flight per account (15): more are answered
  ``429 Too many concurrent requests`` (no Retry-After header);
* ``401`` for a wrong account id or passcode (also what a wrong region answers);
* faults: whole requests answered 5xx before anything is applied (``error_rate``), requests applied and then
  their connection dropped (``lost_answer_rate``), single records refused with a transient server error
  (``record_failure_rate``, code 500), and latency;
* ``GET /1/profile.json?identity=…`` and the Get User Profiles API: ``POST /1/profiles.json?batch_size=N``
  returns a ``cursor``; ``GET /1/profiles.json?cursor=…`` pages through ``records`` while ``next_cursor``
  comes back.  The stand-in's query matches every profile (the query body is only checked to be JSON).

The world is plain Python (no I/O): the HTTP routes are in :func:`clevertap_routes`, served by the same
loopback machinery as the Voucherify stand-in (``server.py``), on the same port under ``/1/…``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEMO_ACCOUNT_ID = "sandbox-ct-account"
DEMO_PASSCODE = "sandbox-ct-passcode"

#: CleverTap's own answer codes used here.
CODE_MISSING_IDENTITY = 523
CODE_VALUE_TOO_LONG = 521
CODE_TRANSIENT = 500

_PLACEHOLDERS = frozenset(
    {
        "undefined",
        "null",
        "na",
        "n/a",
        "0",
        "nil",
        "-1",
        "infinity",
        "-infinity",
        "inf",
        "-inf",
        "nan",
        "-nan",
        "empty",
        "xxxxxx",
        "none",
    }
)
_IDENTIFIER_PROPERTIES = ("Email", "Phone", "Name")


@dataclass(frozen=True)
class CleverTapConfig:
    """How the stand-in behaves.  Rates are shares of requests (or of records) from 0 to 1."""

    account_id: str = DEMO_ACCOUNT_ID
    passcode: str = field(default=DEMO_PASSCODE, repr=False)
    max_records: int = 1000
    max_concurrent: int = 15
    latency: float = 0.0
    error_rate: float = 0.0
    lost_answer_rate: float = 0.0
    record_failure_rate: float = 0.0
    #: share of profiles-query calls (start and pages) answered 429 (half) or 503 (half), as its small cap does
    query_error_rate: float = 0.0
    #: the passcode revoked mid-run: after this many uploads every request answers 401
    revoked_after_uploads: int | None = None
    max_batch_size: int = 5000
    #: Identities CleverTap refuses for good (523), as it does a malformed one: per-record final failures.
    refused_identities: frozenset[str] = frozenset()
    seed: int | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> CleverTapConfig:
        """From a ``[sandbox.clevertap]`` table: ``latency`` may be text such as ``"80ms"``."""
        from ..units import parse_duration

        values = {key.replace("-", "_"): value for key, value in options.items()}
        if "latency" in values and not isinstance(values["latency"], (int, float)):
            values["latency"] = parse_duration(values["latency"])
        if "refused_identities" in values:
            values["refused_identities"] = frozenset(values["refused_identities"])
        return cls(**values)


@dataclass(frozen=True)
class Write:
    """One record applied to a profile: when, which profile, which properties."""

    at: float
    key: tuple[str, str]
    properties: dict[str, Any]


class CleverTapWorld:
    """CleverTap's state: the profiles, every write applied, and the counts the tests assert on."""

    def __init__(self, config: CleverTapConfig | None = None) -> None:
        self.config = config or CleverTapConfig()
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.counts: dict[str, int] = {
            "uploads": 0,
            "records": 0,
            "unauthorized": 0,
            "too_many_concurrent": 0,
            "fault_5xx": 0,
            "lost_answer": 0,
            "record_failures": 0,
            "too_many_records": 0,
            "identifier_properties": 0,
            "query_faults": 0,
        }
        self.max_in_flight = 0
        self._in_flight = 0
        self._random = random.Random(self.config.seed)
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, int]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what the tests read
    def holds(self, identity: str, *, key: str = "identity") -> dict[str, Any] | None:
        """The properties of the profile with this identity (or objectId), ``None`` if CleverTap has none."""
        return self.profiles.get((key, identity))

    def writes_per_profile(self) -> dict[tuple[str, str], int]:
        counted: dict[tuple[str, str], int] = {}
        for write in self.writes:
            counted[write.key] = counted.get(write.key, 0) + 1
        return counted

    # ------------------------------------------------------------------ rules
    def authorised(self, account_id: str | None, passcode: str | None) -> bool:
        revoked = self.config.revoked_after_uploads
        ok = account_id == self.config.account_id and passcode == self.config.passcode
        ok = ok and (revoked is None or self.counts["uploads"] < revoked)
        if not ok:
            self.counts["unauthorized"] += 1
        return ok

    def enter(self) -> bool:
        """Admit one request, or ``False`` when ``max_concurrent`` are already in flight (answer 429)."""
        with self._lock:
            if self._in_flight >= self.config.max_concurrent:
                self.counts["too_many_concurrent"] += 1
                return False
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return True

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def draw(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def upload(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """Apply an upload body; returns the HTTP status and the JSON answer."""
        records = payload.get("d") if isinstance(payload, dict) else None
        if not isinstance(records, list):
            return 400, {"status": "fail", "error": 'Invalid payload: expected {"d": [...]}', "code": 400}
        if len(records) > self.config.max_records:
            self.counts["too_many_records"] += 1
            return 400, {
                "status": "fail",
                "code": 400,
                "error": f"Too many records: {len(records)} given, at most {self.config.max_records} allowed",
            }
        self.counts["uploads"] += 1
        unprocessed = []
        for index, record in enumerate(records):
            refusal = self._apply(record)
            if refusal is not None:
                code, message = refusal
                unprocessed.append(
                    {
                        "status": "fail",
                        "code": code,
                        "error": f"{message}. Skipped record number : {index}",
                        "record": record,
                    }
                )
        processed = len(records) - len(unprocessed)
        status = "success" if not unprocessed else ("partial" if processed else "fail")
        return 200, {"status": status, "processed": processed, "unprocessed": unprocessed}

    def _apply(self, record: Any) -> tuple[int, str] | None:
        self.counts["records"] += 1
        if not isinstance(record, dict) or record.get("type") != "profile":
            return 512, "Invalid record: type must be profile"
        key = "identity" if "identity" in record else "objectId"
        identity = record.get(key)
        if (
            not isinstance(identity, str)
            or not identity
            or len(identity) >= 1024
            or identity.lower() in _PLACEHOLDERS
            or identity in self.config.refused_identities
        ):
            return CODE_MISSING_IDENTITY, "Identity or objectId missing or invalid"
        data = record.get("profileData")
        if not isinstance(data, dict):
            return 512, "profileData missing"
        for name, value in data.items():
            if len(str(name).encode()) > 120 or len(str(value).encode()) > 512:
                return CODE_VALUE_TOO_LONG, f"Property {str(name)[:40]} key or value too long"
        if self.draw(self.config.record_failure_rate):
            self.counts["record_failures"] += 1
            return CODE_TRANSIENT, "Internal error, please retry"
        if any(name in data for name in _IDENTIFIER_PROPERTIES):
            self.counts["identifier_properties"] += 1
        self.profiles.setdefault((key, identity), {}).update(data)
        self.writes.append(Write(time.time(), (key, identity), dict(data)))
        return None

    def profile(self, identity: str | None, object_id: str | None) -> tuple[int, dict[str, Any]]:
        key = ("identity", identity) if identity is not None else ("objectId", object_id or "")
        found = self.profiles.get(key)
        if found is None:
            return 200, {"status": "fail", "error": "Profile not found", "code": 404}
        return 200, {"status": "success", "record": {key[0]: key[1], "profileData": dict(found)}}

    def start_query(self, query: Any, batch_size: int) -> tuple[int, dict[str, Any]]:
        if not isinstance(query, dict):
            return 400, {"status": "fail", "error": "Invalid query", "code": 400}
        if not 1 <= batch_size <= self.config.max_batch_size:
            return 400, {
                "status": "fail",
                "error": f"batch_size must be 1 to {self.config.max_batch_size}",
                "code": 400,
            }
        records = [{key[0]: key[1], "profileData": dict(data)} for key, data in self.profiles.items()]
        cursor = self._new_cursor(records, 0, batch_size)
        return 200, {"status": "success", "cursor": cursor}

    def page(self, cursor: str) -> tuple[int, dict[str, Any]]:
        state = self._cursors.get(cursor)
        if state is None:
            return 400, {"status": "fail", "error": "Invalid or expired cursor", "code": 400}
        records, start, size = state
        page = records[start : start + size]
        answer: dict[str, Any] = {"status": "success", "records": page}
        if start + size < len(records):
            answer["next_cursor"] = self._new_cursor(records, start + size, size)
        return 200, answer

    def _new_cursor(self, records: list[dict[str, Any]], start: int, size: int) -> str:
        cursor = f"cur{self._random.getrandbits(64):016x}"
        self._cursors[cursor] = (records, start, size)
        return cursor


class CleverTapDropped(Exception):
    """Raised on purpose after an applied upload's status line (``lost_answer_rate``): the connection drops."""


class _DroppedResponse(Response):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        raise CleverTapDropped("the CleverTap sandbox dropped this answer on purpose (lost_answer_rate)")


def clevertap_routes(world: CleverTapWorld) -> list[Route]:
    """The ``/1/…`` routes, to be placed before any catch-all route of the app."""

    async def guarded(request: Request, handle: Any) -> Response:
        if not world.authorised(
            request.headers.get("x-clevertap-account-id"), request.headers.get("x-clevertap-passcode")
        ):
            return JSONResponse({"status": "fail", "error": "Account Id and Passcode not valid", "code": 401}, 401)
        if not world.enter():
            return JSONResponse({"status": "fail", "error": "Too many concurrent requests", "code": 429}, 429)
        try:
            if world.config.latency > 0:
                await anyio.sleep(world.config.latency * (0.5 + world._random.random()))
            response: Response = await handle()
            return response
        finally:
            world.leave()

    async def upload(request: Request) -> Response:
        async def handle() -> Response:
            payload = _json(await request.body())
            if world.draw(world.config.error_rate):
                world.counts["fault_5xx"] += 1
                return JSONResponse({"status": "fail", "error": "Internal Server Error", "code": 503}, 503)
            status, answer = world.upload(payload)
            if status == 200 and world.draw(world.config.lost_answer_rate):
                world.counts["lost_answer"] += 1
                return _DroppedResponse(json.dumps(answer).encode(), 200, media_type="application/json")
            return JSONResponse(answer, status)

        return await guarded(request, handle)

    async def profile(request: Request) -> Response:
        async def handle() -> Response:
            status, answer = world.profile(request.query_params.get("identity"), request.query_params.get("objectId"))
            return JSONResponse(answer, status)

        return await guarded(request, handle)

    def query_fault() -> Response | None:
        if not world.draw(world.config.query_error_rate):
            return None
        world.counts["query_faults"] += 1
        if world.draw(0.5):
            return JSONResponse({"status": "fail", "error": "Too many concurrent requests", "code": 429}, 429)
        return JSONResponse({"status": "fail", "error": "Service Unavailable", "code": 503}, 503)

    async def profiles_start(request: Request) -> Response:
        async def handle() -> Response:
            fault = query_fault()
            if fault is not None:
                return fault
            try:
                batch_size = int(request.query_params.get("batch_size", "10"))
            except ValueError:
                batch_size = 0
            status, answer = world.start_query(_json(await request.body()), batch_size)
            return JSONResponse(answer, status)

        return await guarded(request, handle)

    async def profiles_page(request: Request) -> Response:
        async def handle() -> Response:
            fault = query_fault()
            if fault is not None:
                return fault
            status, answer = world.page(request.query_params.get("cursor", ""))
            return JSONResponse(answer, status)

        return await guarded(request, handle)

    return [
        Route("/1/upload", upload, methods=["POST"]),
        Route("/1/profile.json", profile, methods=["GET"]),
        Route("/1/profiles.json", profiles_start, methods=["POST"]),
        Route("/1/profiles.json", profiles_page, methods=["GET"]),
    ]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
