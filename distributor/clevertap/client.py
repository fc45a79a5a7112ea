"""CleverTap's server API, the parts this job uses: Upload User Profiles, one profile, the profiles query.

* :func:`resolve_url` turns ``--clevertap`` (a region such as ``eu1`` or ``in1``, a full URL, or ``sandbox``) into
  the base URL;
* :class:`CleverTapCredentials` come only from ``CLEVERTAP_ACCOUNT_ID`` / ``CLEVERTAP_PASSCODE``; the passcode is
  never shown (``repr``, messages, logs);
* :class:`CleverTapClient` sends the calls and turns every answer into an :class:`UploadOutcome` (HTTP 200 is
  not success: each ``unprocessed[]`` entry is mapped back to the record it names) or a typed error:
  :class:`CleverTapAuthError` (401/403: wrong account, passcode or region), :class:`CleverTapTransient`
  (5xx, 429, no answer: retry), :class:`CleverTapRefused` (any other refusal of the whole request: final).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from ..credentials import (
    CleverTapCredentials,
)
from ..exchange import NoCompleteAnswer, bounded_exchange
from ..transport import lean_transport

#: Per-record answer codes that mean "try again" (CleverTap's other per-record codes, e.g. 523, are final).
TRANSIENT_RECORD_CODES = frozenset({429, 500, 502, 503, 504})
#: The largest answer read: a profiles page of 5,000 records with their properties stays well below it.
MAX_BODY_BYTES = 64 * 1024 * 1024
_SKIPPED = re.compile(r"Skipped record number\s*:\s*(\d+)")


class CleverTapError(Exception):
    """A CleverTap call that did not succeed.  ``str()`` never holds the passcode."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class CleverTapAuthError(CleverTapError):
    """401/403: the account id, the passcode or the region is wrong.  Every further call would fail too."""


class CleverTapTransient(CleverTapError):
    """5xx, 429 (too many concurrent requests), a timeout or a lost answer: the same call may succeed later."""


class CleverTapRefused(CleverTapError):
    """Any other refusal of a whole request (e.g. 400): sending it again will not help."""


@dataclass(frozen=True)
class RecordError:
    """CleverTap's answer for one record it did not process."""

    code: int | None
    message: str

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_RECORD_CODES


@dataclass(frozen=True)
class UploadOutcome:
    """One upload's answer: ``failures`` maps the index of each unprocessed record (in the request) to why."""

    status: str
    processed: int
    failures: dict[int, RecordError]


class CleverTapClient:
    """An async client for one account; use it as ``async with CleverTapClient(url, credentials) as client``."""

    def __init__(
        self,
        url: str,
        credentials: CleverTapCredentials,
        *,
        timeout: float = 30.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._deadline = timeout  # of the whole call, body included (see distributor.exchange)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={
                "X-CleverTap-Account-Id": credentials.account_id,
                "X-CleverTap-Passcode": credentials.passcode,
                "Content-Type": "application/json; charset=utf-8",
            },
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            transport=transport or lean_transport(self.url, max_connections=max_connections),  # h13-http
        )

    def __repr__(self) -> str:
        return f"CleverTapClient({self.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ calls
    async def check_credentials(self) -> None:
        """One cheap authenticated call (``GET /1/profile.json`` of an identity nobody has): proves the account id,
        the passcode and the region, or raises.  "Profile not found" is the expected, successful answer."""
        await self._call("GET", "/1/profile.json", params={"identity": "distributor-credentials-check"})

    async def upload(self, records: Sequence[Mapping[str, Any]]) -> UploadOutcome:
        """``POST /1/upload`` of ``records``; maps every ``unprocessed[]`` entry back to its index."""
        body = await self._call("POST", "/1/upload", json={"d": list(records)})
        status = str(body.get("status", ""))
        unprocessed = body.get("unprocessed") or []
        if not isinstance(unprocessed, list):
            raise CleverTapTransient(f"CleverTap answered an unreadable upload result: {str(body)[:200]}")
        failures: dict[int, RecordError] = {}
        for entry in unprocessed:
            index = _record_index(entry, records)
            if index is None:
                raise CleverTapTransient(
                    f"CleverTap reported an unprocessed record that cannot be matched: {str(entry)[:200]}"
                )
            code = entry.get("code") if isinstance(entry, dict) else None
            message = str(entry.get("error", "")) if isinstance(entry, dict) else str(entry)
            failures[index] = RecordError(
                code if isinstance(code, int) else None, _SKIPPED.sub("", message).rstrip(" .:") or "refused"
            )
        if status == "success" and failures:
            status = "partial"
        if status not in ("success", "partial", "fail"):
            raise CleverTapTransient(f"CleverTap answered an unknown upload status {status!r}")
        processed = len(records) - len(failures)
        if status == "fail" and not failures:
            raise CleverTapRefused(
                f"CleverTap refused the upload: {body.get('error') or body}", status=200, code=_int(body.get("code"))
            )
        return UploadOutcome(status, processed, failures)

    async def profile(self, identity: str, *, key: str = "identity") -> dict[str, Any] | None:
        """The profile's properties, or ``None`` when CleverTap holds no such profile.  ``key``: ``identity`` or
        ``objectId`` (a segment keyed on CleverTap ids)."""
        body = await self._call("GET", "/1/profile.json", params={key: identity})
        record = body.get("record")
        if body.get("status") != "success" or not isinstance(record, dict):
            return None
        data = record.get("profileData")
        return dict(data) if isinstance(data, dict) else {}

    async def start_query(self, query: Mapping[str, Any], batch_size: int) -> str:
        body = await self._call("POST", "/1/profiles.json", params={"batch_size": str(batch_size)}, json=dict(query))
        cursor = body.get("cursor")
        if not isinstance(cursor, str) or not cursor:
            raise CleverTapRefused(f"CleverTap answered no cursor to the profiles query: {body.get('error') or body}")
        return cursor

    async def page(self, cursor: str) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the query: its records (numbers kept as CleverTap wrote them) and the next cursor."""
        body = await self._call("GET", "/1/profiles.json", params={"cursor": cursor}, exact=True)
        records = body.get("records") or []
        next_cursor = body.get("next_cursor")
        return [r for r in records if isinstance(r, dict)], next_cursor if isinstance(
            next_cursor, str
        ) and next_cursor else None

    async def profiles(self, query: Mapping[str, Any], batch_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of the profiles query (no retries here: the caller decides)."""
        cursor: str | None = await self.start_query(query, batch_size)
        while cursor is not None:
            records, cursor = await self.page(cursor)
            yield records

    # ------------------------------------------------------------------ plumbing
    async def _call(self, method: str, path: str, *, exact: bool = False, **kwargs: Any) -> dict[str, Any]:
        try:
            response, content = await bounded_exchange(
                self._http, method, path, deadline=self._deadline, max_body=MAX_BODY_BYTES, **kwargs
            )
        except NoCompleteAnswer as failure:
            raise CleverTapTransient(f"no complete answer from CleverTap to {method} {path}: {failure}") from None
        body = _body(content, exact=exact)
        message = str(body.get("error") or f"HTTP {response.status_code}")
        code = _int(body.get("code"))
        if response.status_code in (401, 403):
            raise CleverTapAuthError(message, status=response.status_code, code=code)
        if response.status_code == 429 or response.status_code >= 500:
            raise CleverTapTransient(message, status=response.status_code, code=code)
        if response.status_code != 200:
            raise CleverTapRefused(
                f"CleverTap refused {method} {path} (HTTP {response.status_code}): {message}",
                status=response.status_code,
                code=code,
            )
        if not body and method == "POST":
            raise CleverTapTransient(f"CleverTap answered {method} {path} with an unreadable body")
        return body


def _body(content: bytes, *, exact: bool = False) -> dict[str, Any]:
    """The JSON object answered (``{}`` if none); ``exact``: numbers stay the text CleverTap wrote."""
    import json

    try:
        parsed = (
            (json.loads(content, parse_int=str, parse_float=str) if exact else json.loads(content)) if content else {}
        )
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _record_index(entry: Any, records: Sequence[Mapping[str, Any]]) -> int | None:
    """Which request record an ``unprocessed[]`` entry is about: its echoed ``record`` when that is unique in the
    request, else the 0-based "Skipped record number : N" of its message."""
    if not isinstance(entry, dict):
        return None
    echoed = entry.get("record")
    if isinstance(echoed, dict):
        matches = [index for index, record in enumerate(records) if record == echoed]
        if len(matches) == 1:
            return matches[0]
    found = _SKIPPED.search(str(entry.get("error", "")))
    if found is not None and int(found.group(1)) < len(records):
        return int(found.group(1))
    return None
