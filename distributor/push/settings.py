"""What pushing needs to know: where and how the codes go to CleverTap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..clevertap import CleverTapCredentials
from ..files import HandOffSettings


class PushSettings(HandOffSettings, Protocol):
    """Where and how the codes go to CleverTap, beside what the files need: a run's
    :class:`~distributor.config.JobConfig`, or the :class:`~distributor.files.DistributionFiles` that
    ``distributor push`` reads (the same names)."""

    @property
    def clevertap(self) -> str | None: ...
    @property
    def clevertap_credentials(self) -> CleverTapCredentials | None: ...
    @property
    def clevertap_batch(self) -> int: ...
    @property
    def clevertap_concurrency(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def sandbox(self) -> Mapping[str, Any]: ...
