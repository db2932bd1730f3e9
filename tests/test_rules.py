"""Semantic rules: the expression language, and enforcement at sampling time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synth_core.errors import SpecError
from synth_core.rules import Rule, RuleUnsatisfiableError, evaluate_rules, rules_hold
from synth_core.spec import TableSpec


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "relationship": pd.Series(["Husband", "Wife", "Husband", None, "Own-child"], dtype="str"),
            "sex": pd.Series(["Male", "Female", "Female", "Male", None], dtype="str"),
            "gain": pd.array([0, 10, 5, 0, 7], dtype="Int64"),
            "loss": pd.array([0, 0, 3, None, 0], dtype="Int64"),
            "start": pd.to_datetime(["2020-01-01"] * 5).astype("datetime64[us]"),
            "end": pd.Series(
                pd.to_datetime(["2020-01-02", "2019-01-01", "2021-01-01", None, "2020-01-01"])
            ).astype("datetime64[us]"),
        }
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("relationship == 'Husband' -> sex == 'Male'", [True, True, False, True, True]),
        ("gain * loss == 0", [True, True, False, True, True]),  # NULL loss: unknown, not a violation
        ("end >= start", [True, False, True, True, True]),
        ("end >= '2020-06-01'", [False, False, True, True, False]),
        ("0 <= gain <= 6", [True, False, True, True, False]),
        ("relationship in ['Husband', 'Wife'] -> `sex` != 'Other'", [True] * 5),
        ("relationship not in ['Own-child'] or isnull(sex)", [True] * 5),
        ("notnull(loss) -> abs(gain - loss) < 8", [True, False, True, True, True]),
        ("not (sex == 'Female' and relationship == 'Husband')", [True, True, False, True, True]),
        ("relationship == 'Wife' -> (sex == 'Female') and gain > 5", [True, True, True, True, True]),
    ],
)
def test_rules_follow_three_valued_check_semantics(
    frame: pd.DataFrame, expr: str, expected: list[bool]
) -> None:
    assert Rule("r", expr).evaluate(frame).tolist() == expected


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("__import__('os').system('x')", "only isnull(x), notnull(x) and abs(x) may be called"),
        ("sex.upper() == 'X'", "may be called"),
        ("sex.real == 'X'", "Attribute is not allowed"),
        ("a -> b -> c", "use parentheses to chain implications"),
        ("lambda: 1", "Lambda is not allowed"),
        ("age >", "cannot parse"),
        ("[x for x in y]", "ListComp is not allowed"),
    ],
)
def test_unsafe_or_malformed_rules_are_refused_at_load(expr: str, needle: str) -> None:
    with pytest.raises(SpecError, match="rule 'r'") as err:
        Rule("r", expr)
    assert needle in str(err.value)


def test_spec_rules_must_name_output_columns(adult_spec: TableSpec) -> None:
    assert [r.name for r in adult_spec.rules] == ["husband_is_male", "wife_is_female", "gain_or_loss"]
    raw = adult_spec.to_dict()
    raw["rules"] = [{"name": "ghost", "expr": "salary > 0"}]
    with pytest.raises(SpecError, match=r"rule 'ghost': columns \['salary'\] are not columns"):
        TableSpec.from_dict(raw)
    raw["rules"] = [{"name": "x", "expr": "age > 0", "severity": "fatal"}]
    with pytest.raises(SpecError, match="severity must be one of"):
        TableSpec.from_dict(raw)


@pytest.mark.slow
def test_sampling_enforces_critical_rules_and_spends_nothing(adult_split, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    from synth_core.generators import create_synthesizer
    from synth_core.privacy import PrivacyBudget

    train, _ = adult_split
    synth = create_synthesizer("dp_tvae", epochs=2, hidden=[64]).fit(
        train, adult_spec, PrivacyBudget(3.0, 1e-6)
    )
    spent = synth.privacy_["epsilon"]
    out = synth.sample(20_000, seed=4)
    assert len(out) == 20_000
    assert rules_hold(adult_spec.rules, out).all()
    assert synth.privacy_["epsilon"] == spent
    # without the rules the same model does violate them: enforcement is doing the work
    no_rules = TableSpec.from_dict({k: v for k, v in adult_spec.to_dict().items() if k != "rules"})
    synth.transformer_.spec = no_rules
    raw = synth.sample(20_000, seed=4)
    assert not rules_hold(adult_spec.rules, raw).all()
    # a rule the model cannot satisfy fails clearly, naming it
    impossible = TableSpec.from_dict(
        {**adult_spec.to_dict(), "rules": [{"name": "nobody", "expr": "age > 200"}]}
    )
    synth.transformer_.spec = impossible
    with pytest.raises(RuleUnsatisfiableError, match=r"rule 'nobody' failed most") as err:
        synth.sample(1_000, seed=1)
    assert "0.00%" in str(err.value)
    # warning rules are reported by validation but not enforced
    warning = TableSpec.from_dict(
        {**adult_spec.to_dict(), "rules": [{"name": "older", "expr": "age > 200", "severity": "warning"}]}
    )
    synth.transformer_.spec = warning
    assert len(synth.sample(100, seed=1)) == 100


# ------------------------------------------------------------------------------------------------
# the compiled evaluator equals the reference evaluator (generated frames and rules)

_TEXT = st.sampled_from(["a", "b", "Husband", "Male", "1", "2.5", "-3", "", None])
_NUMERIC_COLUMNS = ["i", "f", "k"]
_TEXT_COLUMNS = ["t", "u", "o"]
_OTHER_COLUMNS = ["d", "b"]
_NUMBER = st.one_of(st.integers(-6, 6), st.sampled_from([0.5, -2.5, 3.0, 1e-9]))
_STRING = st.sampled_from(["'a'", "'b'", "'Husband'", "'1'", "'2.5'", "''", "'2020-01-02'"])


@st.composite
def _frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 25))
    text_dtype = draw(st.sampled_from(["str", "object"]))

    def column(values: st.SearchStrategy[object]) -> list[object]:
        return draw(st.lists(values, min_size=n, max_size=n))

    floats = st.one_of(
        st.floats(-10, 10, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0])
    )
    days = st.one_of(st.none(), st.integers(18_200, 18_400))
    return pd.DataFrame(
        {
            "t": pd.Series(column(_TEXT), dtype=text_dtype),
            "u": pd.Series(column(_TEXT), dtype="str"),
            # an object column mixing text and numbers: the reference's object semantics apply
            "o": pd.Series(column(st.one_of(_TEXT, st.integers(-3, 3))), dtype=object),
            "i": pd.array(column(st.one_of(st.none(), st.integers(-5, 5))), dtype="Int64"),
            "f": pd.Series(column(floats), dtype="float64"),
            "k": pd.Series(column(st.integers(-1000, 1000)), dtype="int64"),
            "d": pd.Series(
                [pd.NaT if v is None else pd.Timestamp(v, unit="D") for v in column(days)],
                dtype="datetime64[us]",
            ),
            "b": pd.Series(column(st.booleans()), dtype=bool),
        }
    )


def _numeric_terms() -> st.SearchStrategy[str]:
    base = st.one_of(st.sampled_from(_NUMERIC_COLUMNS), _NUMBER.map(repr))
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda x: f"abs({x})"),
            inner.map(lambda x: f"-{x}"),
        ),
        max_leaves=4,
    )


def _operands() -> st.SearchStrategy[str]:
    return st.one_of(
        _numeric_terms(),
        st.sampled_from(_TEXT_COLUMNS + _OTHER_COLUMNS),
        _STRING,
        st.just("None"),
    )


def _conditions() -> st.SearchStrategy[str]:
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    comparison = st.one_of(
        st.tuples(_operands(), ops, _operands()).map(" ".join),
        st.tuples(_operands(), ops, _operands(), ops, _operands()).map(" ".join),
    )
    members = st.lists(st.one_of(_STRING, _NUMBER.map(repr), st.just("None")), min_size=1, max_size=4)
    membership = st.tuples(
        st.sampled_from(_TEXT_COLUMNS + _NUMERIC_COLUMNS + _OTHER_COLUMNS),
        st.sampled_from(["in", "not in"]),
        members.map(lambda m: "[" + ", ".join(m) + "]"),
    ).map(" ".join)
    nulls = st.tuples(
        st.sampled_from(["isnull", "notnull"]),
        st.sampled_from(_TEXT_COLUMNS + _NUMERIC_COLUMNS + _OTHER_COLUMNS),
    ).map(lambda t: f"{t[0]}({t[1]})")
    bare = st.sampled_from(_TEXT_COLUMNS + _NUMERIC_COLUMNS + ["b"])
    atom = st.one_of(comparison, membership, nulls, bare)
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            inner.map(lambda x: f"not ({x})"),
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
                lambda t: f"({t[0]}) {t[1]} ({t[2]})"
            ),
        ),
        max_leaves=4,
    )


_RULES = st.one_of(
    _conditions(), st.tuples(_conditions(), _conditions()).map(lambda t: f"{t[0]} -> ({t[1]})")
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=_frames(), expr=_RULES)
def test_compiled_rules_equal_the_reference_evaluator(frame: pd.DataFrame, expr: str) -> None:
    rule = Rule("r", expr)
    try:
        expected = rule.evaluate_reference(frame)
    except Exception as exc:  # the reference refuses (e.g. text < number): so must the compiled form
        with pytest.raises(type(exc)):
            rule.evaluate(frame)
        return
    assert rule.evaluate(frame).tolist() == expected.tolist(), expr


@settings(max_examples=100, deadline=None)
@given(frame=_frames(), exprs=st.lists(_RULES, min_size=1, max_size=4))
def test_rules_evaluated_together_share_columns_and_agree(frame: pd.DataFrame, exprs: list[str]) -> None:
    rules = [Rule(f"r{i}", e) for i, e in enumerate(exprs)]
    try:
        expected = {r.name: r.evaluate_reference(frame) for r in rules}
    except Exception:
        return
    together = evaluate_rules(rules, frame)
    assert {k: v.tolist() for k, v in together.items()} == {k: v.tolist() for k, v in expected.items()}
    assert (
        rules_hold(rules, frame).tolist()
        == np.logical_and.reduce([np.ones(len(frame), dtype=bool), *expected.values()]).tolist()
    )


def test_compiled_rules_keep_sql_check_semantics_on_nulls() -> None:
    frame = pd.DataFrame(
        {
            "rel": pd.Series(["Husband", None, "Wife", "Husband"], dtype="str"),
            "sex": pd.Series(["Female", "Female", None, "Male"], dtype="str"),
            "gain": pd.array([1, None, 0, 5], dtype="Int64"),
            "loss": pd.Series([2.0, 3.0, float("nan"), 0.0]),
        }
    )
    # NULL operand: unknown, not a violation; only definitely-false rows violate
    assert Rule("r", "rel == 'Husband' -> sex == 'Male'").evaluate(frame).tolist() == [
        False,
        True,
        True,
        True,
    ]
    assert Rule("r", "gain * loss == 0").evaluate(frame).tolist() == [False, True, True, True]
    assert Rule("r", "rel != None").evaluate(frame).tolist() == [True] * 4
    assert Rule("r", "isnull(gain) or gain > 0").evaluate(frame).tolist() == [True, True, False, True]
