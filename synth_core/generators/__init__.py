"""Generators: one registry of named DP synthesizers (see :mod:`synth_core.generators.base`).

Importing this package registers every generator: ``dp_tvae``, ``dp_ctgan``,
``dp_ctgan_ensemble``, ``dp_tabsyn``, ``dp_maf``, ``dp_great``, ``dp_tablegan`` and ``dp_tgan``.
"""

from synth_core.generators.base import (
    Synthesizer,
    available_generators,
    create_synthesizer,
    get_generator_class,
    register_generator,
)
from synth_core.generators.dp_ctgan import DPCTGANSynthesizer
from synth_core.generators.dp_ctgan_ensemble import DPCTGANEnsembleSynthesizer
from synth_core.generators.dp_great import DPGreatSynthesizer
from synth_core.generators.dp_maf import DPMAFSynthesizer
from synth_core.generators.dp_tablegan import DPTableGANSynthesizer
from synth_core.generators.dp_tabsyn import DPTabSynSynthesizer
from synth_core.generators.dp_tgan import DPTGANSynthesizer
from synth_core.generators.dp_tvae import DPTVAESynthesizer

__all__ = [
    "DPCTGANEnsembleSynthesizer",
    "DPCTGANSynthesizer",
    "DPGreatSynthesizer",
    "DPMAFSynthesizer",
    "DPTGANSynthesizer",
    "DPTVAESynthesizer",
    "DPTabSynSynthesizer",
    "DPTableGANSynthesizer",
    "Synthesizer",
    "available_generators",
    "create_synthesizer",
    "get_generator_class",
    "register_generator",
]
