"""The library's public names: everything a user imports comes from ``distributor`` itself, and only that."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import distributor

PUBLIC = {
    "ConfigError", "Credentials", "Distribution", "DistributorError", "InputError", "JobConfig", "JournalError",
    "JournalLocked", "Rate", "RunResult", "RunStats", "StopRun", "__version__", "run_distribution",
}


def test_the_public_names_are_exactly_these() -> None:
    assert set(distributor.__all__) == PUBLIC
    for name in distributor.__all__:
        assert hasattr(distributor, name), name


def test_the_version_has_one_source_the_package_metadata() -> None:
    assert distributor.__version__ == importlib.metadata.version("distributor")


def test_no_shipped_file_points_outside_the_package() -> None:
    package = Path(distributor.__file__).parent
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "shared/" not in text, f"{path.relative_to(package)} names a path outside the package"
