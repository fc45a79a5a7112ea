"""distributor: hand out one Voucherify code to every member of a CleverTap segment, exactly once."""

__version__ = "0.1.0"
