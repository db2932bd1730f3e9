"""Semantic rules: the expression language, and enforcement at sampling time."""

from __future__ import annotations

import pandas as pd
import pytest

from synth_core.errors import SpecError
from synth_core.rules import Rule, RuleUnsatisfiableError, rules_hold
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
