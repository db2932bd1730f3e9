"""synth_provider: the dpsynth Apache Airflow provider.

Operators extract a warehouse table, train a DP generator, sample, validate and publish a
synthetic replacement table. Importing this package (and parsing a DAG that uses it) loads only
Airflow's task SDK: synth_core, torch, opacus, pandas and Great Expectations are imported inside
``execute()``.
"""

__version__ = "0.1.0"
