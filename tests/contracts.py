"""Voucherify's official OpenAPI schemas, read from ``../shared/contracts/`` (tests skip where it is absent)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker

CONTRACTS = Path(__file__).resolve().parents[1].parent / "shared" / "contracts"
PUBLICATIONS = "voucherify-publications.openapi.json"
CAMPAIGNS = "voucherify-campaigns.openapi.json"


@functools.cache
def validator(spec_file: str, schema: str) -> OAS30Validator:
    """A validator for one named schema of an OpenAPI file, its ``$ref``s resolvable; skips without the file."""
    path = CONTRACTS / spec_file
    if not path.is_file():
        pytest.skip(f"the official Voucherify contracts are not at {CONTRACTS}")
    components = json.loads(path.read_text(encoding="utf-8"))["components"]
    root = {"$ref": f"#/components/schemas/{schema}", "components": components}
    return OAS30Validator(root, format_checker=oas30_format_checker)


def check(spec_file: str, schema: str, instance: object) -> None:
    errors = list(validator(spec_file, schema).iter_errors(instance))
    assert not errors, f"{schema}: " + "; ".join(explain(error) for error in errors[:5])


def explain(error: Any) -> str:
    """The deepest cause of a schema error (a oneOf failure otherwise prints the whole instance)."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
