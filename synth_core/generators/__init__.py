"""Generators: one registry of named DP synthesizers (see :mod:`synth_core.generators.base`)."""

from synth_core.generators.base import (
    Synthesizer,
    available_generators,
    create_synthesizer,
    get_generator_class,
    register_generator,
)
from synth_core.generators.dp_tvae import DPTVAESynthesizer

__all__ = [
    "DPTVAESynthesizer",
    "Synthesizer",
    "available_generators",
    "create_synthesizer",
    "get_generator_class",
    "register_generator",
]
