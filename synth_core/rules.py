"""Semantic rules: declared constraints every synthetic row must satisfy.

A rule is a boolean expression over the columns of one row, in a small, safe language (parsed with
:mod:`ast`; nothing is ``eval``-ed):

* comparisons, chained or not: ``end_date >= start_date``, ``0 <= age <= 120``;
* arithmetic: ``capital_gain * capital_loss == 0``, ``net == gross - tax``;
* membership: ``relationship in ['Husband', 'Wife']``, ``state not in ['XX']``;
* logic: ``and``, ``or``, ``not``, and implication ``A -> B`` (forbidden/allowed combinations and
  conditional domains: ``relationship == 'Husband' -> sex == 'Male'``);
* ``isnull(col)``, ``notnull(col)``, ``abs(x)``; string, number, boolean and ``None`` literals;
  column names that are not identifiers go in backticks: ```capital-gain` > 0``.

NULLs follow SQL ``CHECK`` semantics (three-valued logic): a comparison with a NULL operand is
unknown, and a row violates a rule only where the rule is definitely false.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synth_core.errors import NonRetryableError, SpecError

SEVERITIES = ("critical", "warning")
_BACKTICK = re.compile(r"`([^`]+)`")


class RuleUnsatisfiableError(NonRetryableError):
    """Sampling could not produce rows satisfying the rules within its bounded number of tries."""


#: A value under three-valued logic: (values, known) arrays of the frame's length.
_Tri = tuple[NDArray[Any], NDArray[np.bool_]]


@dataclass(frozen=True)
class Rule:
    """A named semantic rule.

    Attributes:
        name: identifier used in validation results and error messages.
        expr: the expression (see the module docstring).
        severity: ``critical`` (sampling enforces it; a violation fails the release gate) or
            ``warning`` (reported only).
        description: free text.
    """

    name: str
    expr: str
    severity: str = "critical"
    description: str | None = None
    _tree: ast.expr = field(init=False, repr=False, compare=False)
    _columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _compiled: CompiledRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"rule {self.name!r}"
        if not self.name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise SpecError(f"rule names must be identifiers, got {self.name!r}")
        if self.severity not in SEVERITIES:
            raise SpecError(f"{where}: severity must be one of {SEVERITIES}, got {self.severity!r}")
        tree, columns = _parse(self.expr, where)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "_compiled", CompiledRule(self.name, tree))

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the rule reads, in order of first use."""
        return self._columns

    def evaluate(self, frame: pd.DataFrame) -> NDArray[np.bool_]:
        """``True`` where the rule holds or is unknown (NULL operands); shape ``(len(frame),)``.

        Runs the rule's compiled form (:class:`CompiledRule`): the same result as
        :meth:`evaluate_reference`, without re-parsing each cell.
        """
        return self._compiled.evaluate(frame)

    def evaluate_reference(self, frame: pd.DataFrame) -> NDArray[np.bool_]:
        """:meth:`evaluate` by the node-by-node reference evaluator over object arrays (the
        definition of the semantics; slow: every comparison re-parses its operands)."""
        values, known = _Evaluator(frame, self.name).visit(self._tree)
        truth = np.asarray(values, dtype=bool)
        return ~(known & ~truth)

    def violations(self, frame: pd.DataFrame) -> int:
        return int((~self.evaluate(frame)).sum())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "expr": self.expr}
        if self.severity != "critical":
            out["severity"] = self.severity
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Rule:
        if not isinstance(raw, Mapping) or "name" not in raw or "expr" not in raw:
            raise SpecError(f"each rule needs a name and an expr, got {raw!r}")
        unknown = set(raw) - {"name", "expr", "severity", "description"}
        if unknown:
            raise SpecError(f"rule {raw['name']!r}: unknown keys {sorted(unknown)}")
        return cls(
            str(raw["name"]), str(raw["expr"]), str(raw.get("severity", "critical")), raw.get("description")
        )


def _split_implication(expr: str, where: str) -> tuple[str, str] | None:
    """``A -> B`` at the top level (outside quotes and brackets) → ``(A, B)``."""
    depth, quote, i = 0, "", 0
    found = -1
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif expr.startswith("->", i) and depth == 0:
            if found >= 0:
                raise SpecError(f"{where}: use parentheses to chain implications ('->' appears twice)")
            found = i
        i += 1
    if found < 0:
        return None
    return expr[:found], expr[found + 2 :]


def _parse(expr: str, where: str) -> tuple[ast.expr, tuple[str, ...]]:
    names: dict[str, str] = {}

    def protect(match: re.Match[str]) -> str:
        placeholder = f"__col{len(names)}__"
        names[placeholder] = match.group(1)
        return placeholder

    text = _BACKTICK.sub(protect, expr.strip())
    parts = _split_implication(text, where)
    source = f"(not ({parts[0]})) or ({parts[1]})" if parts else text
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise SpecError(f"{where}: cannot parse {expr!r}: {exc.msg}") from None
    columns: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(f"{where}: {type(node).__name__} is not allowed in rules ({expr!r})")
        if isinstance(node, ast.Call):
            if (
                not isinstance(node.func, ast.Name)
                or node.func.id not in _FUNCTIONS
                or len(node.args) != 1
                or node.keywords
            ):
                raise SpecError(f"{where}: only isnull(x), notnull(x) and abs(x) may be called")
        elif isinstance(node, ast.Name):
            node.id = names.get(node.id, node.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not _is_function_name(tree, node) and node.id not in columns:
            columns.append(node.id)
    return tree, tuple(columns)


def _is_function_name(tree: ast.expr, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


_ALLOWED_NODES = (
    ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.Mod, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call,
)  # fmt: skip
_FUNCTIONS = ("isnull", "notnull", "abs")
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}  # fmt: skip


class _Evaluator:
    """Vectorised three-valued evaluation over a DataFrame."""

    def __init__(self, frame: pd.DataFrame, rule: str) -> None:
        self.frame = frame
        self.rule = rule
        self.n = len(frame)

    def visit(self, node: ast.expr) -> _Tri:
        method = getattr(self, f"_{type(node).__name__}")
        result: _Tri = method(node)
        return result

    def _all_known(self) -> NDArray[np.bool_]:
        return np.ones(self.n, dtype=bool)

    def _Name(self, node: ast.Name) -> _Tri:
        if node.id not in self.frame.columns:
            raise SpecError(f"rule {self.rule!r} reads column {node.id!r}, which the table does not have")
        series = self.frame[node.id]
        known = series.notna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(series):
            return series.to_numpy(), known
        return series.to_numpy(dtype=object, na_value=None), known

    def _Constant(self, node: ast.Constant) -> _Tri:
        if node.value is None:
            return np.full(self.n, None, dtype=object), np.zeros(self.n, dtype=bool)
        values = np.empty(self.n, dtype=object)
        values[:] = [node.value] * self.n
        return values, self._all_known()

    def _literal_list(self, node: ast.expr) -> list[Any]:
        if not isinstance(node, ast.List | ast.Tuple) or not all(
            isinstance(e, ast.Constant) for e in node.elts
        ):
            raise SpecError(f"rule {self.rule!r}: 'in' needs a list of literals")
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]

    def _Compare(self, node: ast.Compare) -> _Tri:
        left = self.visit(node.left)
        truth = np.ones(self.n, dtype=bool)
        known = self._all_known()
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                members = self._literal_list(comparator)
                hit = pd.Series(left[0]).isin(members).to_numpy()
                step: _Tri = (hit if isinstance(op, ast.In) else ~hit, left[1])
                right = left
            else:
                right = self.visit(comparator)
                both = left[1] & right[1]
                out = np.zeros(self.n, dtype=bool)
                if both.any():
                    lhs, rhs = _comparable(pd.Series(left[0][both]), pd.Series(right[0][both]))
                    out[both] = np.asarray(_COMPARE[type(op)](lhs, rhs), dtype=bool)
                step = (out, both)
            truth, known = _and((truth, known), step)
            left = right
        return truth, known

    def _BoolOp(self, node: ast.BoolOp) -> _Tri:
        combine = _and if isinstance(node.op, ast.And) else _or
        acc = self._as_bool(self.visit(node.values[0]))
        for value in node.values[1:]:
            acc = combine(acc, self._as_bool(self.visit(value)))
        return acc

    def _UnaryOp(self, node: ast.UnaryOp) -> _Tri:
        values, known = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            truth, known = self._as_bool((values, known))
            return ~truth, known
        numbers = _numeric(values, known)
        return (-numbers if isinstance(node.op, ast.USub) else numbers), known

    def _BinOp(self, node: ast.BinOp) -> _Tri:
        left, right = self.visit(node.left), self.visit(node.right)
        known = left[1] & right[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _ARITH[type(node.op)](_numeric(*left), _numeric(*right))
        known = known & np.isfinite(out)
        return out, known

    def _Call(self, node: ast.Call) -> _Tri:
        assert isinstance(node.func, ast.Name)
        values, known = self.visit(node.args[0])
        if node.func.id == "isnull":
            return ~known, self._all_known()
        if node.func.id == "notnull":
            return known.copy(), self._all_known()
        return np.abs(_numeric(values, known)), known

    def _as_bool(self, tri: _Tri) -> _Tri:
        values, known = tri
        truth = np.zeros(self.n, dtype=bool)
        truth[known] = np.asarray([bool(v) for v in np.asarray(values, dtype=object)[known]], dtype=bool)
        return truth, known


def _comparable(lhs: pd.Series, rhs: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Datetimes compare with date strings (``start >= '2020-01-01'``); numbers stored as objects
    compare as numbers."""
    lhs_dt, rhs_dt = pd.api.types.is_datetime64_any_dtype(lhs), pd.api.types.is_datetime64_any_dtype(rhs)
    if lhs_dt and not rhs_dt:
        rhs = pd.to_datetime(rhs, utc=getattr(lhs.dt, "tz", None) is not None)
    elif rhs_dt and not lhs_dt:
        lhs = pd.to_datetime(lhs, utc=getattr(rhs.dt, "tz", None) is not None)
    elif not lhs_dt:
        ln, rn = pd.to_numeric(lhs, errors="coerce"), pd.to_numeric(rhs, errors="coerce")
        if ln.notna().all() and rn.notna().all():
            return ln, rn
    return lhs, rhs


def _numeric(values: NDArray[Any], known: NDArray[np.bool_]) -> NDArray[np.float64]:
    out = np.full(len(values), np.nan, dtype=np.float64)
    if known.any():
        out[known] = pd.to_numeric(
            pd.Series(np.asarray(values, dtype=object)[known]), errors="coerce"
        ).to_numpy(dtype=np.float64)
    return out


def _and(a: _Tri, b: _Tri) -> _Tri:
    """Kleene AND: false if either is known false; true if both known true; else unknown."""
    a_false, b_false = a[1] & ~a[0], b[1] & ~b[0]
    false = a_false | b_false
    true = a[1] & b[1] & a[0] & b[0]
    return true, false | true


def _or(a: _Tri, b: _Tri) -> _Tri:
    """Kleene OR: true if either is known true; false if both known false; else unknown."""
    a_true, b_true = a[1] & a[0], b[1] & b[0]
    true = a_true | b_true
    false = a[1] & b[1] & ~a[0] & ~b[0]
    return true, true | false


def rules_hold(rules: Sequence[Rule], frame: pd.DataFrame) -> NDArray[np.bool_]:
    """Rows (``(len(frame),)`` bool) where every rule holds or is unknown."""
    ok = np.ones(len(frame), dtype=bool)
    for holds in evaluate_rules(rules, frame).values():
        ok &= holds
    return ok


def evaluate_rules(rules: Sequence[Rule], frame: pd.DataFrame) -> dict[str, NDArray[np.bool_]]:
    """``{rule name: rows where it holds or is unknown}``, the columns read once for all rules."""
    columns = _Columns(frame)
    return {rule.name: rule._compiled.evaluate(columns) for rule in rules}


# ------------------------------------------------------------------------------------------------
# compiled evaluation: the reference semantics over typed columns
#
# A rule is compiled once into a tree of nodes. At evaluation, each column the rule reads is
# extracted once per frame: numbers as float64 (``_Num``), text as codes into its distinct values
# (``_Factor``: a comparison with a literal is evaluated once per distinct value by the reference
# code, then gathered by code). Operand kinds the fast paths do not cover (datetimes, booleans,
# text in arithmetic, mixed object columns) make that node fall back to the reference evaluator
# on its subtree, so every rule evaluates exactly as ``Rule.evaluate_reference`` does.


class _Fallback(Exception):
    """The operands are of a kind the compiled node does not handle: the reference evaluates it."""


@dataclass(frozen=True)
class _Factor:
    """A text column: ``codes`` (``-1`` where NULL) into ``uniques`` (object array of str)."""

    codes: NDArray[np.intp]
    uniques: NDArray[Any]


@dataclass(frozen=True)
class _Num:
    """Numbers as float64 (NaN where unknown)."""

    values: NDArray[np.float64]


@dataclass(frozen=True)
class _Lit:
    """A literal, not broadcast."""

    value: Any


class _Columns:
    """The columns of one frame, each extracted once (shared by the rules evaluated on it)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n = len(frame)
        self._cache: dict[str, tuple[Any, NDArray[np.bool_]]] = {}

    def get(self, name: str, rule: str) -> tuple[Any, NDArray[np.bool_]]:
        if name not in self._cache:
            if name not in self.frame.columns:
                raise SpecError(f"rule {rule!r} reads column {name!r}, which the table does not have")
            self._cache[name] = _extract(self.frame[name])
        return self._cache[name]


def _extract(series: pd.Series) -> tuple[Any, NDArray[np.bool_]]:
    dtype = series.dtype
    known = series.notna().to_numpy()
    if (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    ):
        return _Num(series.to_numpy(dtype=np.float64, na_value=np.nan)), known
    if isinstance(dtype, pd.StringDtype) or (
        pd.api.types.is_object_dtype(dtype)
        and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
    ):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return _Factor(np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)), known
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.to_numpy(), known
    return series.to_numpy(dtype=object, na_value=None), known


def _gather(per_unique: NDArray[np.bool_], codes: NDArray[np.intp]) -> NDArray[np.bool_]:
    """``per_unique[codes]``, ``False`` where the code is ``-1`` (NULL)."""
    if per_unique.size == 0:
        return np.zeros(codes.shape, dtype=bool)
    return np.where(codes >= 0, per_unique[codes], False)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


#: a compiled value: (an array, ``_Num``, ``_Factor`` or ``_Lit``; known)
_CTri = tuple[Any, NDArray[np.bool_]]
_Node = Callable[[_Columns], _CTri]


class CompiledRule:
    """A rule's expression compiled once; :meth:`evaluate` equals ``Rule.evaluate_reference``."""

    def __init__(self, rule: str, tree: ast.expr) -> None:
        self.rule = rule
        self.tree = tree
        self.root = self._compile(tree)

    def evaluate(self, frame: pd.DataFrame | _Columns) -> NDArray[np.bool_]:
        columns = frame if isinstance(frame, _Columns) else _Columns(frame)
        values, known = self.root(columns)
        if not (isinstance(values, np.ndarray) and values.dtype == bool):
            values, known = _Evaluator(columns.frame, self.rule).visit(self.tree)
        truth = np.asarray(values, dtype=bool)
        return ~(known & ~truth)

    # -- compilation -----------------------------------------------------------------------------
    def _compile(self, node: ast.expr) -> _Node:
        fast = self._fast(node)

        def run(columns: _Columns) -> _CTri:
            try:
                return fast(columns)
            except _Fallback:
                return _Evaluator(columns.frame, self.rule).visit(node)

        return run

    def _fast(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.Name):
            name = node.id
            return lambda columns: columns.get(name, self.rule)
        if isinstance(node, ast.Constant):
            value = node.value
            return lambda columns: (_Lit(value), np.full(columns.n, value is not None))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BoolOp):
            combine = _and if isinstance(node.op, ast.And) else _or
            parts = [self._compile(v) for v in node.values]

            def boolop(columns: _Columns) -> _CTri:
                acc = _truth(parts[0](columns), columns.n)
                for part in parts[1:]:
                    acc = combine(acc, _truth(part(columns), columns.n))
                return acc

            return boolop
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        return _no_fast_path

    def _compare(self, node: ast.Compare) -> _Node:
        first = self._compile(node.left)
        steps: list[tuple[ast.cmpop, _Node | None, list[Any] | None]] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                literal = isinstance(comparator, ast.List | ast.Tuple) and all(
                    isinstance(e, ast.Constant) for e in comparator.elts
                )
                if not literal:
                    return _no_fast_path  # the reference raises its error
                assert isinstance(comparator, ast.List | ast.Tuple)
                members = [e.value for e in comparator.elts if isinstance(e, ast.Constant)]
                steps.append((op, None, members))
            else:
                steps.append((op, self._compile(comparator), None))

        def compare(columns: _Columns) -> _CTri:
            n = columns.n
            left = first(columns)
            truth, known = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
            for op, comparator, members in steps:
                if comparator is None:
                    assert members is not None
                    value, left_known = left
                    if not isinstance(value, _Factor):
                        raise _Fallback
                    hit = _gather(
                        pd.Series(value.uniques, dtype=object).isin(members).to_numpy(), value.codes
                    )
                    step: _CTri = (hit if isinstance(op, ast.In) else ~hit, left_known)
                    right = left
                else:
                    right = comparator(columns)
                    step = _compare_fast(op, left, right, n)
                truth, known = _and((truth, known), step)
                left = right
            return truth, known

        return compare

    def _unary(self, node: ast.UnaryOp) -> _Node:
        operand = self._compile(node.operand)
        if isinstance(node.op, ast.Not):

            def negate(columns: _Columns) -> _CTri:
                truth, known = _truth(operand(columns), columns.n)
                return ~truth, known

            return negate
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0

        def signed(columns: _Columns) -> _CTri:
            value, known = operand(columns)
            if isinstance(value, _Num):
                return _Num(sign * value.values), known
            if isinstance(value, _Lit) and _is_number(value.value):
                return _Lit(-value.value if sign < 0 else +value.value), known
            raise _Fallback

        return signed

    def _binop(self, node: ast.BinOp) -> _Node:
        left, right = self._compile(node.left), self._compile(node.right)
        op = _ARITH[type(node.op)]

        def arith(columns: _Columns) -> _CTri:
            (lv, lk), (rv, rk) = left(columns), right(columns)
            a, b = _number_operand(lv), _number_operand(rv)
            if not isinstance(lv, _Num) and not isinstance(rv, _Num):
                raise _Fallback
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                out = np.asarray(op(a, b), dtype=np.float64)
            return _Num(out), lk & rk & np.isfinite(out)

        return arith

    def _call(self, node: ast.Call) -> _Node:
        assert isinstance(node.func, ast.Name)
        func = node.func.id
        operand = self._compile(node.args[0])

        def call(columns: _Columns) -> _CTri:
            value, known = operand(columns)
            if func == "isnull":
                return ~known, np.ones(columns.n, dtype=bool)
            if func == "notnull":
                return known.copy(), np.ones(columns.n, dtype=bool)
            if isinstance(value, _Num):
                return _Num(np.abs(value.values)), known
            if isinstance(value, _Lit) and _is_number(value.value):
                return _Lit(abs(value.value)), known
            raise _Fallback

        return call


def _no_fast_path(columns: _Columns) -> _CTri:
    raise _Fallback


def _number_operand(value: Any) -> Any:
    """A float64 array or a number; anything else falls back."""
    if isinstance(value, _Num):
        return value.values
    if isinstance(value, _Lit) and _is_number(value.value):
        return float(value.value)
    raise _Fallback


def _compare_fast(op: ast.cmpop, left: _CTri, right: _CTri, n: int) -> _CTri:
    (lv, lk), (rv, rk) = left, right
    both = lk & rk
    compare = _COMPARE[type(op)]
    out = np.zeros(n, dtype=bool)
    if (isinstance(lv, _Lit) and lv.value is None) or (isinstance(rv, _Lit) and rv.value is None):
        return out, both  # a NULL literal: unknown everywhere
    if (isinstance(lv, _Factor) and isinstance(rv, _Lit)) or (
        isinstance(lv, _Lit) and isinstance(rv, _Factor)
    ):
        factor = lv if isinstance(lv, _Factor) else rv
        literal = rv if isinstance(rv, _Lit) else lv
        assert isinstance(factor, _Factor) and isinstance(literal, _Lit)
        if factor.uniques.size == 0:
            return out, both
        uniques = pd.Series(factor.uniques, dtype=object)
        repeated = pd.Series([literal.value] * factor.uniques.size, dtype=object)
        lhs, rhs = _comparable(uniques, repeated) if lv is factor else _comparable(repeated, uniques)
        per_unique = np.asarray(compare(lhs, rhs), dtype=bool)
        return _gather(per_unique, factor.codes) & both, both
    if isinstance(lv, _Num) or isinstance(rv, _Num):
        a, b = _number_operand(lv), _number_operand(rv)
        a = a[both] if isinstance(a, np.ndarray) else a
        b = b[both] if isinstance(b, np.ndarray) else b
        out[both] = np.asarray(compare(a, b), dtype=bool)
        return out, both
    raise _Fallback


def _truth(tri: _CTri, n: int) -> _CTri:
    """``(truth, known)`` of a value used as a condition (``bool(v)`` where known)."""
    value, known = tri
    if isinstance(value, np.ndarray) and value.dtype == bool:
        return value & known, known
    if isinstance(value, _Num):
        return known & (np.nan_to_num(value.values, nan=0.0) != 0), known
    if isinstance(value, _Factor):
        per_unique = np.asarray([bool(u) for u in value.uniques], dtype=bool)
        return _gather(per_unique, value.codes) & known, known
    if isinstance(value, _Lit):
        return known & bool(value.value), known
    truth = np.zeros(n, dtype=bool)
    truth[known] = np.asarray([bool(v) for v in np.asarray(value, dtype=object)[known]], dtype=bool)
    return truth, known
