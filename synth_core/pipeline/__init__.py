"""The release pipeline: each step of a release written once, driven by typed jobs.

The Airflow operators (``synth_provider.operators``), the pod entrypoint
(:mod:`synth_core.pod_entrypoint`) and the CLI (:mod:`synth_core.cli`) are thin adapters over it:
they parse arguments, log, and map errors; everything else happens here.

* :mod:`~synth_core.pipeline.jobs` — the typed inputs of each step and the defaults (once);
* :mod:`~synth_core.pipeline.layout` — :class:`RunLayout`, every object URI of a run;
* :mod:`~synth_core.pipeline.records` — the typed model bundle and the train record;
* :mod:`~synth_core.pipeline.budget` — the one failure policy of a ledger reservation;
* :mod:`~synth_core.pipeline.steps` — stage, train, sample, validate, publish, resample;
* :mod:`~synth_core.pipeline.signing` — validation records publish trusts only if a step wrote them;
* :mod:`~synth_core.pipeline.command_line` — exit codes and argument types of the command lines.

Importing this package imports nothing heavy (no torch, pandas, GX, Airflow).
"""
