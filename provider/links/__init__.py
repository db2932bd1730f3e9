"""Airflow extra links of the dpsynth provider."""
