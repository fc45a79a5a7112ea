"""CleverTap segment exports: reading them exactly (``reader`` on ``formats``), CleverTap's identity rules
(``identities``) and loading the members into the journal (``loading``)."""

from . import identities
from .formats import CSV, JSON_LINES, MAX_RECORD, PARQUET
from .loading import Loaded, load_segment, validated_batches
from .reader import (
    IDENTITY_COLUMNS,
    Row,
    RowLabel,
    Rows,
    Segment,
    SegmentFile,
    expand_parts,
    open_segment,
    refuse_unusable,
)

__all__ = [
    "CSV",
    "IDENTITY_COLUMNS",
    "JSON_LINES",
    "MAX_RECORD",
    "PARQUET",
    "Loaded",
    "Row",
    "RowLabel",
    "Rows",
    "Segment",
    "SegmentFile",
    "expand_parts",
    "identities",
    "load_segment",
    "open_segment",
    "refuse_unusable",
    "validated_batches",
]
