"""DP-GReaT (a small GPT over serialized rows) trained with DP-SGD on real Adult rows.

It stays in budget, clips and noises per row (one row = one sequence), decodes only valid rows,
builds its vocabulary from public/DP information only, and round-trips through a bundle. The
optional local-checkpoint path fine-tunes a tiny GPT-2 saved locally, with the real ``transformers``.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import synth_core.generators.dp_great as dp_great  # registers "dp_great"
from synth_core.errors import ParameterError
from synth_core.generators import Synthesizer, available_generators, create_synthesizer
from synth_core.privacy import PrivacyAccountant, PrivacyBudget
from synth_core.spec import TableSpec
from synth_core.transformer import fit_transformer_under_dp

pytestmark = pytest.mark.slow

TINY = {"epochs": 1, "batch_size": 500, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}


MARKER = "ZZ-PLANTED-MARKER-9c3b"
OUTLIER = 7_654_321


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """One intra-op thread: on a small shared machine this is several times faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fixed_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the (slow, separately tested) noise calibration where a test is not about the budget."""
    monkeypatch.setattr(
        PrivacyAccountant, "calibrate_noise_multiplier", lambda self, q, steps, epsilon=None: 2.0
    )


@pytest.fixture(scope="module")
def tiny_fit(adult_split, adult_spec):  # type: ignore[no-untyped-def]
    """A tiny model fit at ε=3 on rows holding a planted unique category and a unique number."""
    train, _ = adult_split
    train = train.head(6000).copy()
    train.loc[17, "native_country"] = MARKER  # category domain discovered under DP
    train.loc[18, "fnlwgt"] = OUTLIER  # no public bounds: range and quantiles under DP
    synth = create_synthesizer("dp_great", **TINY)
    return synth.fit(train, adult_spec, PrivacyBudget(3.0, 1e-5), seed=5)


def test_registered_and_parameters_validated() -> None:
    assert "dp_great" in available_generators()
    synth = create_synthesizer("dp_great", **TINY)
    assert synth.params == {
        **TINY, "learning_rate": synth.params["learning_rate"], "max_grad_norm": 1.0, "temperature": 1.0,
        "grad_sample_mode": "ghost", "device": "auto", "physical_batch_size": None, "pretrained_path": None,
    }  # fmt: skip
    for bad, name in (
        ({"epochs": 0}, "epochs"),
        ({"d_model": 2.5}, "d_model"),
        ({"n_layers": True}, "n_layers"),
        ({"d_model": 30, "n_heads": 4}, "n_heads"),
        ({"temperature": 0.0}, "temperature"),
        ({"physical_batch_size": 0}, "physical_batch_size"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"pretrained_path": 7}, "pretrained_path"),
    ):
        with pytest.raises(ParameterError, match=name):
            create_synthesizer("dp_great", **bad)


def test_fit_stays_within_the_budget(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    privacy = tiny_fit.privacy_
    assert 2.9 < privacy["epsilon"] <= 3.0  # calibrated to the target, never above it
    names = [m["name"] for m in privacy["mechanisms"]]
    assert names[-1] == "dp-sgd" and "categories:native_country" in names
    sgd = privacy["mechanisms"][-1]
    assert sgd["noise_multiplier"] > 0.3 and sgd["steps"] == round(1 / sgd["sample_rate"])
    assert tiny_fit.training_["vocab_size"] == tiny_fit.vocabulary_.size


def test_every_sampled_row_parses_and_respects_domains(tiny_fit, adult_split, adult_spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    out = tiny_fit.sample(1000, seed=1)
    assert len(out) == 1000 and list(out.columns) == list(train.columns)
    assert out.dtypes.astype(str).to_dict() == train.dtypes.astype(str).to_dict()
    transformer = tiny_fit.transformer_
    for rule in adult_spec.rules:  # the base class enforced the critical rules
        assert rule.evaluate(out).all(), rule.name
    for col in transformer.columns:
        values = out[col.name]
        if not col.nullable:
            assert values.notna().all(), col.name
        present = values.dropna()
        if col.is_continuous:
            bins = col.bins
            v = present.to_numpy(dtype=np.float64)[:, None]
            slack = 0.5 if col.integer else 1e-9  # integers are rounded inside an interval bin
            inside = (v >= bins.left - slack) & (v <= bins.right + slack) & (bins.mass > 0)
            assert inside.any(axis=1).all(), f"{col.name}: a value outside every non-empty DP bin"
        else:
            assert set(present) <= set(col.categories), col.name


def test_constrained_decoding_overrides_the_model(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    """Even a model that wants one wrong token everywhere emits each column once, in its vocabulary."""
    vocab = tiny_fit.vocabulary_
    model = dp_great.GreatGPT(**{k: v for k, v in tiny_fit.model_.config.items()})
    model.load_state_dict(tiny_fit.model_.state_dict())
    with torch.no_grad():
        model.head.bias[int(vocab.value_start[0])] = 1e4  # the first value token of column 0
    rng = np.random.default_rng(0)
    orders = np.argsort(rng.random((300, vocab.n_columns)), axis=1)
    slots = dp_great._sample_scratch(model, vocab, orders, 1.0, torch.Generator().manual_seed(0))
    assert slots.shape == (300, vocab.n_columns)
    # every column got a value (-1 marks an unfilled column) from its own vocabulary
    assert ((slots >= 0) & (slots < vocab.value_width[None, :])).all()
    assert (slots[:, 0] == 0).all()  # column 0 follows the model; the others cannot
    assert len({tuple(r) for r in slots[:, 1:]}) > 1


def test_vocabulary_holds_no_value_that_appears_only_in_the_real_table(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    synth = tiny_fit
    vocab = synth.vocabulary_
    text = " ".join(
        vocab.labels + vocab.column_phrases + [s for labels in vocab.value_labels for s in labels]
    )
    for needle in (MARKER, str(OUTLIER), "7.65432e+06"):
        assert needle not in text
    # every label is a column name, a public or DP-discovered category, a special slot or a DP bin
    by_name = {c.name: c for c in synth.transformer_.columns}
    for name, labels in zip(vocab.columns, vocab.value_labels, strict=True):
        col = by_name[name]
        if not col.is_continuous:
            allowed = {dp_great._category_label(v) for v in col.categories} | {"<other>", "<null>"}
            assert set(labels) <= allowed, name
    fnlwgt = by_name["fnlwgt"].bins
    assert OUTLIER not in set(fnlwgt.left) | set(fnlwgt.right)
    with zipfile.ZipFile(io.BytesIO(synth.to_bytes())) as zf:
        contents = b"".join(zf.read(name) for name in zf.namelist())
    for needle in (MARKER, str(OUTLIER), f"{OUTLIER}.0"):
        assert needle.encode() not in contents
    assert MARKER not in set(synth.sample(1000, seed=0)["native_country"].dropna())


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_private_gradients_are_clipped_and_noised_per_row(
    adult_split, adult_spec, fixed_noise, mode: str
) -> None:  # type: ignore[no-untyped-def]
    from dp_checks import assert_clipped_and_noised

    from synth_core.dp_training import DPSGDConfig, PrivateTrainer

    train, _ = adult_split
    train = train.head(4000)
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    rng = np.random.default_rng(0)
    transformer = fit_transformer_under_dp(train, adult_spec, accountant, rng)
    vocab = dp_great.build_vocabulary(transformer)
    slots = dp_great.matrix_to_slots(transformer.transform(train, rng), transformer, vocab)
    model = dp_great.GreatGPT(vocab.size, vocab.n_columns, 32, 2, 2, 64)
    trainer = PrivateTrainer(
        model, dp_great.MaskedValueLoss(vocab.column_mask()), slots.astype(np.float32), accountant,
        DPSGDConfig(epochs=1, batch_size=200, max_grad_norm=0.5, grad_sample_mode=mode, device="cpu"),
        row_count=transformer.dp_row_count,
    )  # fmt: skip
    # one row = one whole sequence (every token of the row) through the real model and loss
    pairs, target = dp_great.serialize_batch(
        torch.from_numpy(slots[:1]), torch.from_numpy(vocab.value_start), torch.Generator().manual_seed(0)
    )
    assert pairs.shape == (1, vocab.n_columns, 2)
    assert_clipped_and_noised(trainer, lambda: trainer.criterion(trainer.module(pairs), target))

    # a Poisson batch processed in chunks gets the very update of one pass (noise off to compare)
    pairs, target = dp_great.serialize_batch(
        torch.from_numpy(slots[:7]), torch.from_numpy(vocab.value_start), torch.Generator().manual_seed(1)
    )
    updates: list[list[torch.Tensor]] = []
    trainer.optimizer.noise_multiplier = 0.0
    trainer.optimizer.original_optimizer.step = lambda closure=None: updates.append(  # type: ignore[method-assign]
        [p.grad.clone() for p in trainer.raw_module.parameters()]
    )
    dp_great._dp_step(trainer, pairs, target, physical=7)
    dp_great._dp_step(trainer, pairs, target, physical=3)  # chunks of 3, 3 and 1 rows
    assert len(updates) == 2 and trainer.steps == 2
    for whole, chunked in zip(*updates, strict=True):
        torch.testing.assert_close(whole, chunked)


def test_rows_become_bin_and_category_tokens_and_back(adult_split, adult_spec) -> None:  # type: ignore[no-untyped-def]
    train, _ = adult_split
    train = train.head(3000)
    accountant = PrivacyAccountant(PrivacyBudget(3.0, 1e-5))
    rng = np.random.default_rng(1)
    transformer = fit_transformer_under_dp(train, adult_spec, accountant, rng)
    vocab = dp_great.build_vocabulary(transformer)
    slots = dp_great.matrix_to_slots(transformer.transform(train, rng), transformer, vocab)
    assert ((slots >= 0) & (slots < vocab.value_width[None, :])).all()
    again = dp_great.matrix_to_slots(
        dp_great.slots_to_matrix(slots, transformer, vocab, rng), transformer, vocab
    )
    np.testing.assert_array_equal(again, slots)  # decoding stays inside the token's bin/category
    sex = vocab.columns.index("sex")
    labels = np.asarray(vocab.value_labels[sex])[slots[:, sex]]
    np.testing.assert_array_equal(labels, train["sex"].to_numpy())


def test_bundle_round_trip_resamples_identically(tiny_fit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = tiny_fit.save(tmp_path / "great.zip")
    loaded = Synthesizer.load(uri)
    assert isinstance(loaded, dp_great.DPGreatSynthesizer)
    assert loaded.privacy_ == tiny_fit.privacy_ and loaded.params == tiny_fit.params
    assert loaded.vocabulary_.labels == tiny_fit.vocabulary_.labels
    pd.testing.assert_frame_equal(loaded.sample(400, seed=5), tiny_fit.sample(400, seed=5))


def test_pretrained_path_without_transformers_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(
        ParameterError, match=r"pretrained_path needs the optional 'transformers' package"
    ) as err:
        create_synthesizer("dp_great", pretrained_path=str(tmp_path))
    assert "pip install 'transformers" in str(err.value) and "nothing is downloaded" in str(err.value)


# -- the local-checkpoint path, with the real `transformers` and a tiny GPT-2 built here -------------


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local GPT-2 checkpoint (1 layer, width 32, byte-level tokenizer) saved like a real one."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab["<|endoftext|>"] = 256
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    ).save_pretrained(path)
    config = GPT2Config(
        vocab_size=257, n_positions=1024, n_embd=32, n_layer=1, n_head=2, bos_token_id=256, eos_token_id=256
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def test_local_checkpoint_is_fine_tuned_privately_and_decodes_valid_rows(
    tiny_gpt2: Path, tmp_path: Path, adult_split, adult_spec, fixed_noise
) -> None:
    train, _ = adult_split
    synth = create_synthesizer("dp_great", pretrained_path=str(tiny_gpt2), epochs=1, batch_size=100)
    synth.fit(train.head(300), adult_spec, PrivacyBudget(3.0, 1e-5), seed=3)
    assert synth.training_["pretrained"] is True and synth.privacy_["mechanisms"][-1]["name"] == "dp-sgd"
    lm = synth.lm_.lm
    assert (
        lm.get_output_embeddings().weight is not lm.get_input_embeddings().weight
    )  # untied for ghost clipping

    orders = np.argsort(np.random.default_rng(4).random((30, synth.vocabulary_.n_columns)), axis=1)
    slots = synth.lm_.sample(orders, 1.0, torch.Generator().manual_seed(4))
    assert ((slots >= 0) & (slots < synth.vocabulary_.value_width[None, :])).all()  # each column once
    matrix = dp_great.slots_to_matrix(slots, synth.transformer_, synth.vocabulary_, np.random.default_rng(4))
    frame = synth.transformer_.inverse_transform(matrix, np.random.default_rng(4))
    assert len(frame) == 30
    for col in synth.transformer_.columns:
        present = frame[col.name].dropna()
        if not col.is_continuous:
            assert set(present) <= set(col.categories), col.name

    blob = synth.to_bytes()
    loaded = Synthesizer.from_bytes(blob)
    np.testing.assert_array_equal(
        loaded._sample_matrix(20, np.random.default_rng(9)),
        synth._sample_matrix(20, np.random.default_rng(9)),
    )
    # a checkpoint whose position table is shorter than a serialized row: a clear error, not an IndexError
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    short = tmp_path / "short-context"
    shutil.copytree(tiny_gpt2, short)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    ).save_pretrained(short)
    with pytest.raises(ParameterError, match=r"more than its 64 positions"):
        create_synthesizer("dp_great", pretrained_path=str(short), epochs=1).fit(
            train.head(200), adult_spec, PrivacyBudget(3.0, 1e-5)
        )
    with pytest.raises(ParameterError, match="not a local directory"):
        create_synthesizer("dp_great", pretrained_path=str(tmp_path / "nope"), epochs=1).fit(
            train.head(200), adult_spec, PrivacyBudget(3.0, 1e-5)
        )
