"""Airflow operators of the dpsynth provider."""
