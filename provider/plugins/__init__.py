"""The dpsynth Airflow UI plugin: a privacy-budget page mounted by the api-server
(:mod:`synth_provider.plugins.budget_view`), linked from the UI's navigation
(:class:`synth_provider.plugins.plugin.DPSynthPlugin`, registered through the provider info)."""
