"""Call arguments checked against a method's declared InputArguments (OPC 10000-4 5.11.2)."""

from __future__ import annotations

from asyncua import ua

from sdk.opcua.methods import ArgumentSpec, check_call

S, D = ua.VariantType.String, ua.VariantType.Double
SIGNATURE = [
    ArgumentSpec("Name", frozenset({S}), ua.ValueRank.Scalar),
    ArgumentSpec("Targets", frozenset({S}), ua.ValueRank.OneDimension),
    ArgumentSpec("Limit", frozenset({D}), ua.ValueRank.Scalar),
]


def _status(*args: ua.Variant) -> str | None:
    refusal = check_call(SIGNATURE, args)
    return None if refusal is None else refusal.StatusCode.name


def test_matching_arguments_pass() -> None:
    assert _status(ua.Variant("a", S), ua.Variant(["x"], S), ua.Variant(1.0, D)) is None
    assert _status(ua.Variant(None, S), ua.Variant([], S), ua.Variant(1.0, D)) is None  # null String, empty array
    assert _status(ua.Variant(), ua.Variant(), ua.Variant(1.0, D)) is None  # null Variants where null is a value


def test_counts_are_refused_before_types() -> None:
    assert _status(ua.Variant("a", S)) == "BadArgumentsMissing"
    assert _status() == "BadArgumentsMissing"
    too_many = (ua.Variant("a", S), ua.Variant(["x"], S), ua.Variant(1.0, D), ua.Variant(1.0, D))
    assert _status(*too_many) == "BadTooManyArguments"


def test_a_wrong_type_or_rank_names_the_argument() -> None:
    cases = {
        "type": (ua.Variant(1, ua.VariantType.Int32), ua.Variant(["x"], S), ua.Variant(1.0, D)),
        "array for scalar": (ua.Variant(["a"], S), ua.Variant(["x"], S), ua.Variant(1.0, D)),
        "scalar for array": (ua.Variant("a", S), ua.Variant("x", S), ua.Variant(1.0, D)),
        "null Double": (ua.Variant("a", S), ua.Variant(["x"], S), ua.Variant()),
    }
    for what, args in cases.items():
        refusal = check_call(SIGNATURE, args)
        assert refusal is not None, what
        assert refusal.StatusCode.name == "BadInvalidArgument", what
        results = [r.name for r in refusal.InputArgumentResults]
        assert results.count("BadTypeMismatch") == 1 and len(results) == 3, what
