"""CleverTap segment exports: opening them (``opening``: the parts, each file's format, the identity column),
reading them exactly (``reader`` on ``formats`` and ``csv_blocks``), CleverTap's identity rules
(``identities``) and loading the members into the journal (``loading``)."""

from . import identities
from .formats import CSV, JSON_LINES, MAX_RECORD, PARQUET
from .loading import Loaded, load_segment, validated_batches
from .opening import IDENTITY_COLUMNS, expand_parts, open_segment
from .reader import Row, RowLabel, Rows, Segment, SegmentFile, refuse_unusable

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
