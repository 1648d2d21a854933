"""Data quality as OPC UA StatusCode values (OPC 10000-4 7.39), without depending on the OPC UA binding.

The pipeline gives every output a StatusCode that says why it cannot be trusted;
the values are the standard numeric codes, so the binding passes them through.
"""

from __future__ import annotations

GOOD = 0x00000000
BAD_WAITING_FOR_INITIAL_DATA = 0x80320000  # an input has no value yet
BAD_CONFIGURATION_ERROR = 0x80890000  # no binding, or it does not fit the model
BAD_OUT_OF_RANGE = 0x803C0000  # an input is NaN, infinite, or outside the manifest's valid range
BAD_TYPE_MISMATCH = 0x80740000  # an input is not a number
BAD_INTERNAL_ERROR = 0x80020000  # inference failed
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000  # computed from inputs whose source is disconnected

_SEVERITY_MASK = 0xC0000000


def is_bad(code: int) -> bool:
    """Severity Bad (top bits 10)."""
    return code & _SEVERITY_MASK == 0x80000000


def is_uncertain(code: int) -> bool:
    """Severity Uncertain (top bits 01)."""
    return code & _SEVERITY_MASK == 0x40000000
