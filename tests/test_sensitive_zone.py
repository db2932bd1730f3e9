"""Nothing exact leaves the sensitive zone.

Outside ``staging/`` (and the warehouse) every output is public configuration, a charged DP release,
or computed from those: no exact row count, no loss computed on real rows, no real cell value.

The end-to-end check trains the same small table twice through the real CLI (train, sample,
validate, publish into a temporary dpsynth home, DP-TVAE for one epoch): once with ``n`` rows and
once with ``n + 1``, the extra row a planted extreme (a category string no other row has and a
huge income). It then reads everything the flow wrote outside ``staging/`` — every member of the
model bundle, the shareable report, the published manifest, ``_latest.json``, ``sources.yml``,
the validation record the manifest links, and the CLI's ``--json`` outputs (what a task would push
to XCom) — and looks for the run's exact counts (source, train and holdout rows, as number tokens)
and the planted values. The exact counts are read from the staged split, inside the zone.

The unit checks below pin the pieces: DP-SGD's sampling rate and mean reduction follow the DP row
count, per-row training randomness does not follow the user's seed, ``auto`` chooses from the DP
row count, and an out-of-domain error does not count the offending rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from synth_core import cli
from synth_core.errors import SourceTableError
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.spec import TableSpec

PLANTED_CITY = "PLANTED-CITY-q7Zx31"
PLANTED_INCOME = 987_654_321.0
BASE_ROWS = 467  # n; the planted table has n + 1

SPEC_YAML = """\
table: people
columns:
  - name: age
    kind: integer
    nullable: false
    bounds: [18, 90]
  - name: income
    kind: numeric
    nullable: true
  - name: city
    kind: categorical
    nullable: true
  - name: member
    kind: boolean
    nullable: false
"""


def people(n: int, *, planted: bool) -> pd.DataFrame:
    """``n`` ordinary rows with NULLs (fixed seed), plus the planted extreme row when asked."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": np.round(rng.lognormal(10.0, 0.6, n), 2),
            "city": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object),
            "member": rng.random(n) < 0.4,
        }
    )
    frame.loc[rng.random(n) < 0.15, "income"] = np.nan
    frame.loc[rng.random(n) < 0.1, "city"] = None
    if planted:
        extreme = pd.DataFrame(
            {"age": [90], "income": [PLANTED_INCOME], "city": [PLANTED_CITY], "member": [True]}
        )
        frame = pd.concat([frame, extreme], ignore_index=True)
    return frame


@dataclass
class Release:
    """What one run of the flow left outside ``staging/``, and its exact counts (from inside)."""

    exact_counts: dict[str, int]
    dp_counts: set[int]
    texts: dict[str, str] = field(default_factory=dict)  # where -> text
    json_docs: dict[str, Any] = field(default_factory=dict)  # where -> parsed JSON
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def _cli(argv: list[str]) -> str:
    """Run ``dpsynth ARGV`` in-process; its stdout (a ``--json`` document) or a failure."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert code == 0, (argv[2], code, err.getvalue()[-2000:])
    return out.getvalue()


def _run_flow(root: Path, frame: pd.DataFrame) -> Release:
    home = root / "home"
    home.mkdir(parents=True)
    frame.to_sql("people", sa.create_engine(f"sqlite:///{home / 'warehouse.db'}"), index=False)
    spec_path = root / "people.yaml"
    spec_path.write_text(SPEC_YAML)
    dbt = root / "dbt"
    dbt.mkdir()
    (dbt / "dbt_project.yml").write_text("name: people\nversion: '1.0'\nconfig-version: 2\nprofile: people\n")
    model = home / "objects" / "models" / "people" / "model.dpsynth.zip"
    synthetic, report = root / "out" / "people_synth.parquet", root / "out" / "report.html"
    synthetic.parent.mkdir()
    train_args = [
        "--spec", str(spec_path), "--epsilon", "3", "--lifetime-epsilon", "5", "--generator", "dp_tvae",
        "--param", "epochs=1", "--param", "batch_size=100", "--seed", "1", "--holdout-fraction", "0.3",
        "--model", str(model),
    ]  # fmt: skip
    # a public row count: the default (the DP count) is allowed too, but could equal n by chance
    sample_args = ["--model", str(model), "--rows", "700", "--seed", "1", "-o", str(synthetic)]
    validate_args = [
        "--model", str(model), "--synthetic", str(synthetic), "--null-rate-tolerance", "1",
        "--max-dcr-share", "1", "--min-nndr", "0", "--max-attack-auc", "1", "--report", str(report),
    ]  # fmt: skip
    publish_args = ["--model", str(model), "--synthetic", str(synthetic), "--dbt-project-dir", str(dbt)]
    outputs = {
        f"{command} --json": _cli(["--home", str(home), command, "--quiet", *args, "--json"])
        for command, args in (
            ("train", train_args),
            ("sample", sample_args),
            ("validate", validate_args),
            ("publish", publish_args),
        )
    }
    staging = home / "objects" / "staging"
    train = pd.concat([pd.read_parquet(p) for p in staging.rglob("train.parquet")])
    holdout = pd.concat([pd.read_parquet(p) for p in staging.rglob("holdout.parquet")])
    assert len(train) + len(holdout) == len(frame)
    with zipfile.ZipFile(model) as zf:
        bundle = json.loads(zf.read("bundle.json"))
    dp_rows = int(bundle["transformer"]["dp_row_count"])
    release = Release(
        exact_counts={"source rows": len(frame), "train rows": len(train), "holdout rows": len(holdout)},
        # DP releases may take any value, the exact count's included (a coincidence, not a leak)
        dp_counts={dp_rows, round(dp_rows / 0.7)},
    )
    for where, stdout in outputs.items():
        release.texts[where] = stdout
        release.json_docs[where] = json.loads(stdout)
    # every file the flow wrote outside staging/ (and outside the warehouse and the ledger)
    candidates = [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(staging)]
    for path in candidates:
        where = str(path.relative_to(root))
        if path.suffix in (".db", ".parquet") or path.name == "dbt_project.yml" or path == spec_path:
            continue  # the warehouse, the ledger, the synthetic rows themselves, our own inputs
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    data = zf.read(member)
                    if member.endswith(".pt"):
                        release.weights.update(torch.load(io.BytesIO(data), weights_only=True))
                        release.texts[f"{where}!{member} (bytes)"] = data.decode("latin-1")
                    else:
                        release.texts[f"{where}!{member}"] = data.decode()
                        if member.endswith(".json"):
                            release.json_docs[f"{where}!{member}"] = json.loads(data)
            continue
        text = path.read_text()
        release.texts[where] = text
        if path.suffix == ".json":
            release.json_docs[where] = json.loads(text)
    return release


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Release]:
    root = tmp_path_factory.mktemp("zone")
    return {
        "n": _run_flow(root / "n", people(BASE_ROWS, planted=False)),
        "n+1": _run_flow(root / "n_plus_1", people(BASE_ROWS, planted=True)),
    }


#: base64 payloads (embedded PNGs) are opaque bytes, not numbers written as text
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def number_tokens(text: str, value: int) -> list[str]:
    """Occurrences of ``value`` written as a number (``467``, ``467.0``), with context.

    A token is not part of a longer word or number: ``1467``, ``0.467``, ``467.5`` and ``a467``
    do not count.
    """
    text = _DATA_URI.sub("<data-uri>", text)
    pattern = re.compile(rf"(?<![\w.]){value}(?:\.0+)?(?![\w]|\.\d)")
    return [text[max(0, m.start() - 60) : m.end() + 60] for m in pattern.finditer(text)]


def _where_binary(where: str) -> bool:
    return where.endswith("(bytes)")


# -- the end-to-end rule -------------------------------------------------------------------------


def _is_train_manifest(where: str) -> bool:
    """The train step's manifest: its ``--json`` output (the train task's XCom) and the file beside the model."""
    return where == "train --json" or where.endswith(".train.json")


#: JSON facts that are DP releases (or computed from them): equal to an exact count only by chance
DP_COUNT_KEYS = ("dp_row_count", "dp_source_rows", "expected_batch_size")


def _json_leaves(doc: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(doc, dict):
        return [leaf for k, v in doc.items() for leaf in _json_leaves(v, f"{path}.{k}" if path else str(k))]
    if isinstance(doc, list):
        return [leaf for i, v in enumerate(doc) for leaf in _json_leaves(v, f"{path}[{i}]")]
    return [(path, doc)]


def _json_dicts(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict):
        return [doc, *(d for v in doc.values() for d in _json_dicts(v))]
    if isinstance(doc, list):
        return [d for v in doc for d in _json_dicts(v)]
    return []


def _count_leaks(release: Release, wheres: list[str]) -> dict[str, list[str]]:
    """Exact counts written in ``wheres``: in a JSON document, any number equal to one outside the
    DP facts, or a number token inside a string; elsewhere, a number token (a token equal to a DP
    count is then skipped: a DP release may take any value)."""
    leaks: dict[str, list[str]] = {}
    for what, value in release.exact_counts.items():
        for where in wheres:
            if _where_binary(where):
                continue
            if where in release.json_docs:
                hits = [
                    f"{path} = {leaf!r}"
                    for path, leaf in _json_leaves(release.json_docs[where])
                    if (
                        isinstance(leaf, int | float)
                        and not isinstance(leaf, bool)
                        and leaf == value
                        and not path.endswith(DP_COUNT_KEYS)
                    )
                    or (
                        isinstance(leaf, str)
                        and value not in release.dp_counts
                        and number_tokens(leaf, value)
                    )
                ]
            else:
                hits = [] if value in release.dp_counts else number_tokens(release.texts[where], value)
            if hits:
                leaks[f"{what} = {value} in {where}"] = hits[:3]
    return leaks


@pytest.mark.slow
@pytest.mark.parametrize("run", ["n", "n+1"])
def test_no_exact_count_leaves_the_sensitive_zone(releases: dict[str, Release], run: str) -> None:
    release = releases[run]
    expected = {
        "train --json", "sample --json", "validate --json", "publish --json", "_latest.json", "_manifest.json",
        "sources.yml", "people_synthetic.yml", "report.html", "bundle.json", ".train.json",
    }  # fmt: skip
    seen = {w for w in expected if any(where.endswith(w) or w in where for where in release.texts)}
    assert seen == expected, f"outputs not found: {sorted(expected - seen)} in {sorted(release.texts)}"
    leaks = _count_leaks(release, [w for w in release.texts if not _is_train_manifest(w)])
    assert not leaks, f"exact counts outside staging/: {json.dumps(leaks, indent=1)}"
    # weight tensors: no dimension is a row count
    shapes = {name: tuple(t.shape) for name, t in release.weights.items()}
    sized = {name: s for name, s in shapes.items() if set(s) & set(release.exact_counts.values())}
    assert not sized, f"tensors sized by an exact count: {sized}"


@pytest.mark.slow
@pytest.mark.parametrize("run", ["n", "n+1"])
def test_no_exact_count_in_the_train_manifest(releases: dict[str, Release], run: str) -> None:
    release = releases[run]
    leaks = _count_leaks(release, [w for w in release.texts if _is_train_manifest(w)])
    assert not leaks, f"exact counts in the train manifest: {json.dumps(leaks, indent=1)}"


#: what the validate step observes on real rows without DP (DCR, NNDR, attack AUC, utility, fidelity)
REAL_DATA_METRICS = (
    "dcr_share",
    "dcr_median_train",
    "nndr_mean",
    "nndr_p05",
    "attack_auc",
    "tstr_auc",
    "tvd_1way_mean",
)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["n", "n+1"])
def test_real_data_evaluation_stays_in_staging(releases: dict[str, Release], run: str) -> None:
    """The published manifest links no validation record outside ``staging/``, and nothing published
    (manifest, ``_latest.json``, ``sources.yml``, the shareable report, the bundle) holds an observed metric."""
    release = releases[run]
    published = [
        w for w in release.texts
        if "published/" in w or w.startswith("dbt/") or w.endswith(("!bundle.json", "report.html")) or w == "publish --json"
    ]  # fmt: skip
    found = {w: [m for m in REAL_DATA_METRICS if f'"{m}"' in release.texts[w]] for w in published}
    assert not any(found.values()), found
    uri = release.json_docs["publish --json"].get("validation_uri")
    if uri is None or "/staging/" in uri:
        return
    # a record linked from outside the zone may say what was checked and whether it passed, not what
    # was observed on real rows
    (where,) = [w for w in release.json_docs if uri.endswith(w)]
    record = release.json_docs[where]
    observed = [path for path, _ in _json_leaves(record) if path.split(".")[-1] in REAL_DATA_METRICS]
    observed += [
        f"{d.get('metric')} observed {d['observed']}"
        for d in _json_dicts(record)
        # the privacy checks observe real rows (DCR, NNDR, attack AUC); ε is the DP accounting
        if d.get("family") == "privacy"
        and d.get("observed") is not None
        and d.get("metric") not in ("epsilon", "delta")
    ]
    assert not observed, (
        f"the published manifest links {uri}, which holds real-data observations: {observed[:6]}"
    )


@pytest.mark.slow
def test_the_planted_row_leaves_no_trace_outside_staging(releases: dict[str, Release]) -> None:
    release = releases["n+1"]
    for where, text in release.texts.items():
        assert PLANTED_CITY not in text, where
        if not _where_binary(where):
            readable = _DATA_URI.sub("<data-uri>", text)
            assert not number_tokens(readable, int(PLANTED_INCOME)), where
            assert "9.87654321e+08" not in readable and "9.87654321e8" not in readable, where
    for name, tensor in release.weights.items():
        if tensor.is_floating_point() and tensor.numel():
            assert not torch.isclose(tensor, torch.tensor(PLANTED_INCOME, dtype=tensor.dtype)).any(), name


def _keys(doc: Any, prefix: str = "") -> list[str]:
    if isinstance(doc, dict):
        return [k for key, value in doc.items() for k in (f"{prefix}{key}", *_keys(value, f"{prefix}{key}."))]
    if isinstance(doc, list):
        return [k for item in doc for k in _keys(item, prefix)]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("run", ["n", "n+1"])
def test_no_loss_on_real_rows_leaves_the_sensitive_zone(releases: dict[str, Release], run: str) -> None:
    release = releases[run]
    bundles = [w for w in release.texts if w.endswith("!bundle.json")]
    assert bundles
    for where in bundles:
        bundle = json.loads(release.texts[where])
        assert "rows" not in bundle["training"] and "final_loss" not in bundle["training"], bundle["training"]
    # a fact named ...loss (final_loss, critic_loss); parameters such as loss_factor are configuration
    losses = {
        where: [k for k in _keys(doc) if k.lower().endswith("loss")]
        for where, doc in release.json_docs.items()
    }
    assert not any(losses.values()), losses
    for where, text in release.texts.items():
        if where.endswith(".html"):
            assert "final_loss" not in text and "training loss" not in text.lower(), where


@pytest.mark.slow
def test_both_runs_publish_the_same_kinds_of_facts(releases: dict[str, Release]) -> None:
    """Adding one row changes values, never which facts are published (no key exists only for n+1)."""

    def shape(release: Release) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for where, doc in release.json_docs.items():
            name = re.sub(r"cli__\w+", "RUN", where.split("/")[-1] if "--json" not in where else where)
            out[name] = set(_keys(doc))
        return out

    a, b = shape(releases["n"]), shape(releases["n+1"])
    assert a.keys() == b.keys()
    assert {k: a[k] ^ b[k] for k in a if a[k] ^ b[k]} == {}


# -- the pieces ----------------------------------------------------------------------------------


def _private_trainer(rows: int, row_count: float, batch_size: int = 100) -> Any:
    from synth_core.dp_training import DPSGDConfig, PrivateTrainer

    class PerRowMSE(torch.nn.Module):
        reduction = "mean"

        def forward(self, out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
            per_row = ((out - batch) ** 2).mean(dim=1)
            return per_row.mean() if self.reduction == "mean" else per_row

    data = np.random.default_rng(0).standard_normal((rows, 3)).astype(np.float32)
    return PrivateTrainer(
        torch.nn.Linear(3, 3), PerRowMSE(), data, PrivacyAccountant(PrivacyBudget(2.0, 1e-5)),
        DPSGDConfig(epochs=1, batch_size=batch_size, device="cpu"), row_count=row_count,
    )  # fmt: skip


def test_sampling_rate_and_mean_reduction_follow_the_dp_row_count_not_n() -> None:
    """q = 1/ceil(N̂/B) and Opacus's divisor N̂·q come from the DP count N̂: equal for n and n+1."""
    for rows in (900, 901):
        trainer = _private_trainer(rows, row_count=1234.5)
        assert trainer.steps_per_epoch == 13 and trainer.sample_rate == pytest.approx(1 / 13)
        assert trainer.expected_batch_size == pytest.approx(1234.5 / 13)
        assert trainer.optimizer.expected_batch_size == pytest.approx(1234.5 / 13)  # what Opacus divides by
        # the Poisson sampler draws at q, however many rows there are
        assert trainer.loader.batch_sampler.sample_rate == pytest.approx(1 / 13)
    with pytest.raises(Exception, match="row_count"):
        _private_trainer(900, row_count=float("nan"))


def test_training_logs_show_neither_the_exact_count_nor_a_loss(caplog: pytest.LogCaptureFixture) -> None:
    """The DP-SGD progress log and callback carry the DP row count, ε and timings only."""
    from synth_core.generators import create_synthesizer

    frame, spec = _tiny_table(613)
    events: list[dict[str, Any]] = []
    synth = create_synthesizer("dp_tvae", epochs=2, batch_size=200, hidden=[8], latent_dim=4, device="cpu")
    with caplog.at_level("INFO", logger="synth_core"):
        synth.fit(frame, spec, PrivacyBudget(3.0, 1e-5), seed=0, progress=events.append)
    assert synth.transformer_ is not None
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("synth_core"))
    assert "epoch 2/2" in text and "DP count" in text
    assert "loss" not in text.lower(), text
    if synth.transformer_.dp_row_count != 613:
        assert not number_tokens(text, 613), text
    assert events and all("loss" not in e for e in events), events


def _tiny_table(n: int = 120) -> tuple[pd.DataFrame, TableSpec]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b", "c"], n).astype(object),
            "d": rng.choice(["u", "v"], n).astype(object),
        }
    )
    spec = TableSpec.from_dict(
        {
            "table": "tiny",
            "columns": [
                {"name": "x", "kind": "numeric", "bounds": [-5, 5]},
                {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]},
                {"name": "d", "kind": "categorical", "categories": ["u", "v"]},
            ],
        }
    )
    return frame, spec


def test_same_user_seed_draws_different_per_row_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """TVAE's reparameterisation noise and DP-GReaT's column orders come from the run's secret seed.

    A batch larger than the table makes q = 1: every step sees every row, in the same order, so
    with draws that followed the (public) user seed two fits would draw the very same noise.
    """
    from synth_core.generators import create_synthesizer, dp_great

    frame, spec = _tiny_table()
    budget = PrivacyBudget(8.0, 1e-5)

    # TVAE: the first reparameterisation draw of each fit (and the initial weights, which do follow it)
    draws: list[torch.Tensor] = []
    real_randn_like = torch.randn_like

    def recording_randn_like(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = real_randn_like(t, *args, **kwargs)
        draws.append(out.detach().clone())
        return out

    monkeypatch.setattr(torch, "randn_like", recording_randn_like)
    firsts = []
    for _ in range(2):
        draws.clear()
        synth = create_synthesizer(
            "dp_tvae", epochs=1, batch_size=10_000, hidden=[8], latent_dim=4, device="cpu"
        )
        synth.fit(frame, spec, budget, seed=123)
        assert synth.training_["sample_rate"] == 1.0
        firsts.append(draws[0])
    monkeypatch.undo()
    assert firsts[0].shape == firsts[1].shape
    assert not torch.equal(firsts[0], firsts[1]), "TVAE's reparameterisation noise follows the user's seed"

    # DP-GReaT: the column orders of the first training batch
    orders: list[torch.Tensor] = []
    real_serialize = dp_great.serialize_batch

    def recording_serialize(batch: torch.Tensor, starts: torch.Tensor, gen: torch.Generator) -> Any:
        pairs, target = real_serialize(batch, starts, gen)
        orders.append(pairs.clone())
        return pairs, target

    monkeypatch.setattr(dp_great, "serialize_batch", recording_serialize)
    firsts = []
    for _ in range(2):
        orders.clear()
        great = create_synthesizer(
            "dp_great", epochs=1, batch_size=10_000, d_model=8, n_layers=1, n_heads=2, d_ff=16, device="cpu"
        )
        great.fit(frame, spec, budget, seed=123)
        firsts.append(orders[0])
    assert not torch.equal(firsts[0], firsts[1]), "DP-GReaT's column orders follow the user's seed"


def test_auto_chooses_from_the_dp_row_count_released_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from synth_core.generators import auto

    frame, spec = _tiny_table(137)
    seen: list[int | None] = []
    real_choose = auto.choose_generator

    def recording_choose(spec: TableSpec, dp_rows: int | None, *args: Any, **kwargs: Any) -> tuple[str, str]:
        seen.append(dp_rows)
        return real_choose(spec, dp_rows, *args, **kwargs)

    monkeypatch.setattr(auto, "choose_generator", recording_choose)
    monkeypatch.setattr(auto, "marginal_extra_installed", lambda: False)
    synth = auto.AutoSynthesizer(gpu=False, generator_params={"dp_maf": {"epochs": 1, "hidden": [8]}})
    synth.fit(frame, spec, PrivacyBudget(2.0, 1e-5))
    assert synth.chosen == "dp_maf" and synth.transformer_ is not None and synth.privacy_ is not None
    assert seen == [synth.transformer_.dp_row_count]  # the DP count, released by preprocessing
    names = [m["name"] for m in synth.privacy_["mechanisms"]]
    assert names.count("row_count") == 1  # released and charged once, then reused by dp_maf
    reason = synth.training_["auto"]["reason"]
    assert f"about {synth.transformer_.dp_row_count} rows (DP count)" in reason
    if synth.transformer_.dp_row_count != 137:
        assert not number_tokens(reason, 137), reason


def test_out_of_domain_error_names_the_column_but_counts_nothing() -> None:
    from synth_core.transformer import fit_transformer_under_dp

    frame, spec = _tiny_table()
    transformer = fit_transformer_under_dp(
        frame, spec, PrivacyAccountant(PrivacyBudget(2.0, 1e-5)), np.random.default_rng(0)
    )
    bad = frame.copy()
    bad.loc[:2, "c"] = "zz"  # three rows outside the public domain
    with pytest.raises(SourceTableError, match="column 'c'") as info:
        transformer.transform(bad, np.random.default_rng(0))
    assert not re.search(r"\d", str(info.value).replace("'tiny'", "")), str(info.value)
