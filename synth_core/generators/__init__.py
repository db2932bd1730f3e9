"""Generators: one registry of named DP synthesizers (see :mod:`synth_core.generators.base`).

Importing this package registers every generator: the DP-SGD family ``dp_tvae``, ``dp_ctgan``,
``dp_ctgan_ensemble``, ``dp_tabsyn``, ``dp_maf``, ``dp_great``, ``dp_tablegan`` and ``dp_tgan``; the
marginal-based ``aim`` and ``mst`` (fitting needs the ``[marginal]`` extra); and ``auto``, which
picks one by a documented rule.
"""

from synth_core.generators.aim import AIMSynthesizer
from synth_core.generators.auto import AutoSynthesizer
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
from synth_core.generators.mst import MSTSynthesizer

__all__ = [
    "AIMSynthesizer",
    "AutoSynthesizer",
    "DPCTGANEnsembleSynthesizer",
    "DPCTGANSynthesizer",
    "DPGreatSynthesizer",
    "DPMAFSynthesizer",
    "DPTGANSynthesizer",
    "DPTVAESynthesizer",
    "DPTabSynSynthesizer",
    "DPTableGANSynthesizer",
    "MSTSynthesizer",
    "Synthesizer",
    "available_generators",
    "create_synthesizer",
    "get_generator_class",
    "register_generator",
]
