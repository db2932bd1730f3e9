"""Airflow hooks of the dpsynth provider."""
