"""Fit and sample one SmartNoise synthesizer; run by ``generators.py`` inside its own virtualenv.

smartnoise-synth 1.0.8 pins opacus < 0.15 and mbi < 2, which cannot live beside this project's
stack, so it gets ``benchmarks/.venv-smartnoise`` (``make bench-smartnoise-venv``). This script
imports only the standard library, pandas and snsynth. It reads one JSON job::

    {"synth": "aim", "epsilon": 1.0, "delta": 1e-05, "train_csv": ..., "out_csv": ...,
     "n_rows": 32561, "params": {}, "columns": [{"name": "age", "kind": "continuous",
     "lower": 17, "upper": 90, "nullable": false}, {"name": "sex", "kind": "categorical",
     "nullable": false}, ...]}

It writes the synthetic rows to ``out_csv`` (and, for aim/mst, SmartNoise's own output to
``out_raw_csv``: see below) and prints one JSON line with ``fit_s``, ``sample_s``,
``peak_rss_mb`` (VmHWM) and ``preprocessor_eps``.

How the harness levels the field: the same public bounds our TableSpec declares are given to
SmartNoise's transformers (``BinTransformer`` for aim/mst, ``MinMaxTransformer`` for the GANs),
so neither side pays ε for them. Where no public bounds exist, SmartNoise estimates them under DP
with ``preprocessor_eps`` (10 % of ε, taken out of the total as SmartNoise does), as ours does.
SmartNoise learns category sets from the data without charging ε; ours declares them public or
discovers them under DP; this favours SmartNoise, never us.

SmartNoise's aim/mst return every continuous value as the midpoint of its bin (20 equal-width
bins), so the synthetic column holds 20 distinct values, which scores badly on any metric that
bins real values finely. Ours map a bin back to a uniform position inside it. To compare the
methods rather than this output step, ``out_csv`` gets the same post-processing (a uniform draw
inside the bin, no privacy cost); ``out_raw_csv`` keeps SmartNoise's midpoints.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

#: share of ε SmartNoise spends on bounds that are not public (its docs suggest a small share)
PREPROCESSOR_SHARE = 0.1

#: continuous columns are cut into this many bins for the marginal methods (snsynth's default for
#: continuous columns in the "cube" style)
CUBE_BINS = 20


def _transformer(columns: list[dict[str, Any]], style: str) -> Any:
    from snsynth.transform import (
        BinTransformer,
        ChainTransformer,
        LabelTransformer,
        MinMaxTransformer,
        OneHotEncoder,
        TableTransformer,
    )

    parts: list[Any] = []
    for col in columns:
        nullable = bool(col["nullable"])
        if col["kind"] == "categorical":
            label = LabelTransformer(nullable=nullable)
            parts.append(label if style == "cube" else ChainTransformer([label, OneHotEncoder()]))
        elif style == "cube":
            parts.append(
                BinTransformer(
                    bins=CUBE_BINS, lower=col.get("lower"), upper=col.get("upper"), nullable=nullable
                )
            )
        else:
            parts.append(MinMaxTransformer(lower=col.get("lower"), upper=col.get("upper"), nullable=nullable))
    return TableTransformer(parts)


def spread_within_bins(frame: Any, synth: Any, seed: int = 0) -> Any:
    """Replace each binned continuous value (a bin midpoint) with a uniform draw inside its bin."""
    import numpy as np
    from snsynth.transform import BinTransformer

    rng = np.random.default_rng(seed)
    out = frame.copy()
    for name, t in zip(frame.columns, synth._transformer.transformers, strict=True):
        if not isinstance(t, BinTransformer):
            continue
        width = (t.fit_upper - t.fit_lower) / t.bins
        values = out[name].astype("float64")
        present = values.notna().to_numpy()
        jitter = rng.uniform(-width / 2, width / 2, size=len(values))
        out[name] = values.where(~present, values + jitter)
    return out


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def main() -> None:
    import pandas as pd
    from snsynth import Synthesizer

    job = json.loads(sys.argv[1])
    columns = job["columns"]
    categorical = [c["name"] for c in columns if c["kind"] == "categorical"]
    continuous = [c["name"] for c in columns if c["kind"] == "continuous"]
    dtypes = {name: str for name in categorical}
    frame = pd.read_csv(job["train_csv"], dtype=dtypes, keep_default_na=False, na_values=[""])
    frame = frame[[c["name"] for c in columns]]
    style = "cube" if job["synth"] in ("aim", "mst") else "gan"
    transformer = _transformer(columns, style)
    needs_eps = any(c["kind"] == "continuous" and c.get("lower") is None for c in columns)
    preprocessor_eps = PREPROCESSOR_SHARE * job["epsilon"] if needs_eps else 0.0
    params = dict(job.get("params") or {})
    if style == "gan":
        params.setdefault("cuda", False)
        params.setdefault("verbose", False)
    synth = Synthesizer.create(job["synth"], epsilon=job["epsilon"], delta=job["delta"], **params)
    started = time.perf_counter()
    synth.fit(
        frame,
        transformer=transformer,
        categorical_columns=categorical,
        continuous_columns=continuous,
        preprocessor_eps=preprocessor_eps,
        nullable=any(c["nullable"] for c in columns),
    )
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    out = synth.sample(int(job["n_rows"]))
    sample_s = time.perf_counter() - started
    synthetic = pd.DataFrame(out, columns=frame.columns)
    if style == "cube":
        synthetic.to_csv(job["out_raw_csv"], index=False)
        synthetic = spread_within_bins(synthetic, synth)
    synthetic.to_csv(job["out_csv"], index=False)
    result = {
        "fit_s": fit_s,
        "sample_s": sample_s,
        "peak_rss_mb": _peak_rss_mb(),
        "preprocessor_eps": preprocessor_eps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
