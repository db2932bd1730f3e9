"""synth_core: the dpsynth library (no Airflow here).

Table specs, DP-aware transforms, generators trained with DP-SGD, privacy accounting and the
budget ledger, metrics, reports, and warehouse / object-store I/O. Heavy modules (torch, opacus)
load only when a generator is used: ``import synth_core`` itself is cheap.
"""

__version__ = "0.1.0"
