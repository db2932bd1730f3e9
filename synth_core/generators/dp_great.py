"""DP-GReaT: a small GPT over serialized rows ("column is value"), trained with DP-SGD.

The GReaT approach (Borisov et al. 2023) writes each row as a sentence ``age is 39, workclass is
Private, ...`` with a fresh random column order every time the row is seen, trains a causal
language model on those sentences, and samples rows by generating sentences. Here:

* **Tokens come only from public or DP information.** The vocabulary is built from the fitted
  :class:`~synth_core.transformer.TableTransformer`: one token per modelled column name, one per
  category slot of a categorical column (its public or DP-discovered domain, plus ``<other>`` and
  ``<null>`` where the transformer has those slots), and one per non-empty DP quantile bin of a
  continuous column (:class:`~synth_core.mechanisms.QuantileBins`: atoms such as
  ``capital_gain == 0`` and intervals of a data-independent grid), plus ``<null>`` when nullable.
  A raw value never becomes a token: a row's continuous value is replaced by the index of its bin,
  and a sampled bin token is decoded to a value drawn within the bin (post-processing).
* **Serialization.** A row of ``C`` modelled columns in the random order ``π`` is the sentence
  ``<bos> col(π1) val(π1) col(π2) val(π2) ... col(πC) val(πC)`` ("column is value", with
  column-specific value tokens). The order is drawn uniformly per row and per visit, from the
  run's secret seed (:func:`~synth_core.privacy.secret_seed`), never from ``seed``: how many
  orders a step draws depends on its Poisson batch, so a public stream would tie every later
  order (and the model) to the batch sizes. ``seed`` fixes initialisation only. To halve the compute, position ``j``
  of the model's input carries two tokens, embeddings summed: the previous value ``val(π(j-1))``
  (``<bos>`` first) and the next column ``col(πj)``; the model sees exactly the prefix of the
  interleaved sentence before each value, in ``C`` positions instead of ``2C``. Only value tokens
  are predicted (sampling draws the order itself, uniformly, as in training).
* **Model.** A decoder-only transformer (token and position embeddings, pre-LayerNorm blocks of
  causal self-attention built from ``nn.Linear`` and a GELU MLP, no dropout, an untied output head).
  Every parameterized layer is an ``nn.Linear``, ``nn.Embedding`` or ``nn.LayerNorm``, all of which
  Opacus 1.6 supports in ``ghost`` (fast gradient clipping) and ``hooks`` modes
  (``nn.MultiheadAttention`` is not; Opacus's ``DPMultiheadAttention`` is also built from
  ``nn.Linear`` but offers no key/value cache for incremental decoding, so the attention here is
  two ``nn.Linear`` layers around ``scaled_dot_product_attention``).
* **Privacy.** The whole model goes through :class:`~synth_core.dp_training.PrivateTrainer`
  (Poisson sampling, per-sample clipping, Gaussian noise, calibration against the release's
  accountant). The privacy unit is the row: one row is one sequence (the batch dimension), and the
  criterion returns one loss per row, the mean negative log-likelihood of its value tokens, with
  shape ``(B,)``; Opacus therefore clips the gradient of the whole sequence as one sample. (The
  ghost-clipping loss wrapper's ``shape`` argument is only needed for criteria returning ``(B·T,)``
  token losses; this one reduces over the sequence itself.)
* **Constrained decoding.** Sampling emits, for each row, the columns in a uniform random order;
  at each column the next-token logits are masked to that column's value tokens, so every sampled
  row parses, holds every column exactly once, and every value lies in the column's domain or in
  one of its non-empty DP bins. Training uses the same per-column mask in its softmax, so the model
  spends no capacity on impossible tokens.
* **Local pre-trained checkpoints.** With ``pretrained_path`` (needs the optional ``transformers``
  package) a user-supplied *local* causal LM (e.g. GPT-2) is fine-tuned instead, on the natural-text
  form ``" age is 39, workclass is Private, ..."`` of the same public vocabulary, with trie-constrained
  decoding over its own tokenizer. Files are read with ``local_files_only=True``; nothing is
  downloaded.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri
from torch import nn
from torch.nn import functional as F

from synth_core.dp_training import DPSGDConfig, PrivateTrainer, ProgressCallback, reseed_after_initialisation
from synth_core.errors import ParameterError
from synth_core.generators.base import Synthesizer, register_generator
from synth_core.privacy import PrivacyAccountant, PrivacyBudget, secret_seed
from synth_core.spec import ColumnKind, TableSpec
from synth_core.transformer import ColumnTransform, TableTransformer

#: rows decoded per forward batch at sampling time (bounds the KV cache and logits memory)
SAMPLE_BATCH_ROWS = 8192
#: the same for a pre-trained checkpoint (large vocabularies: logits of 50k tokens per row)
PRETRAINED_SAMPLE_BATCH_ROWS = 256
#: default rows per forward/backward pass when fine-tuning a pre-trained checkpoint
PRETRAINED_PHYSICAL_BATCH = 16
#: sampled values are drawn from the middle (1 - 2·margin) of their bin's CDF step, so the float32
#: matrix decodes back into the same bin
_BIN_MARGIN = 1e-3
_NULL_LABEL = "<null>"
_OTHER_LABEL = "<other>"
_TRANSFORMERS_HINT = (
    "pip install 'transformers>=4.40' (or install dpsynth with its transformers extra); "
    "only a local checkpoint directory is read, nothing is downloaded"
)


# ------------------------------------------------------------------------------------------------
# vocabulary: public metadata and DP outputs only


@dataclass(frozen=True)
class GreatVocabulary:
    """The token vocabulary of one fitted transformer.

    Token ids: ``0`` is ``<bos>``; ``1..C`` are the column tokens (``C`` modelled columns, in the
    transformer's order); then each column's value tokens are contiguous: column ``c`` owns ids
    ``value_start[c] .. value_start[c] + value_width[c] - 1``, where value slot ``s`` is

    * categorical/boolean: the transformer's softmax slot ``s`` (domain values, then ``<other>`` when
      the domain was discovered under DP, then ``<null>`` when nullable);
    * numeric/integer/datetime: the ``s``-th DP quantile bin of positive DP mass (``bins[c][s]``
      is its index in the column's :class:`~synth_core.mechanisms.QuantileBins`), then ``<null>``
      when nullable. Bins the DP histogram found empty get no token.

    Attributes:
        columns: modelled column names, length ``C``.
        labels: readable label of every token, length ``V`` (column name, category, bin as text).
        column_phrases: per column, the text standing for "column is" (``"age is"``).
        value_labels: per column, the text of each value slot (category, ``"39"``, ``"12000 to 26000"``).
        value_start: ``(C,)`` int64, first value-token id of each column.
        value_width: ``(C,)`` int64, number of value slots of each column.
        bins: per column, ``(slots without NULL,)`` int64 bin index of each slot (continuous
            columns; empty for categorical ones).
    """

    columns: list[str]
    labels: list[str]
    column_phrases: list[str]
    value_labels: list[list[str]]
    value_start: NDArray[np.int64]
    value_width: NDArray[np.int64]
    bins: list[NDArray[np.int64]]

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def column_token(self, c: int) -> int:
        return 1 + c

    def column_mask(self) -> NDArray[np.bool_]:
        """``(C, V)`` bool: the value tokens of each column."""
        mask = np.zeros((self.n_columns, self.size), dtype=bool)
        for c in range(self.n_columns):
            mask[c, self.value_start[c] : self.value_start[c] + self.value_width[c]] = True
        return mask


def build_vocabulary(transformer: TableTransformer) -> GreatVocabulary:
    """The vocabulary of ``transformer`` (deterministic: rebuilt identically from a saved bundle)."""
    columns = [c.name for c in transformer.columns]
    labels = ["<bos>", *(f"<col:{name}>" for name in columns)]
    starts: list[int] = []
    widths: list[int] = []
    value_labels: list[list[str]] = []
    bins: list[NDArray[np.int64]] = []
    for col in transformer.columns:
        slots, kept = _value_slots(col)
        starts.append(len(labels))
        widths.append(len(slots))
        value_labels.append(slots)
        bins.append(kept)
        labels.extend(f"{col.name}={s}" for s in slots)
    return GreatVocabulary(
        columns=columns,
        labels=labels,
        column_phrases=[f"{name.replace('_', ' ')} is" for name in columns],
        value_labels=value_labels,
        value_start=np.asarray(starts, dtype=np.int64),
        value_width=np.asarray(widths, dtype=np.int64),
        bins=bins,
    )


def _value_slots(col: ColumnTransform) -> tuple[list[str], NDArray[np.int64]]:
    """Labels of a column's value slots, and the bin index of each bin slot (continuous columns)."""
    if col.is_continuous:
        assert col.bins is not None
        kept = np.flatnonzero(col.bins.mass > 0).astype(np.int64)
        labels = [_bin_label(float(col.bins.left[b]), float(col.bins.right[b]), col) for b in kept]
        if col.nullable:
            labels.append(_NULL_LABEL)
        return labels, kept
    assert col.categories is not None
    labels = [_category_label(v) for v in col.categories]
    if col.has_other:
        labels.append(_OTHER_LABEL)
    if col.nullable:
        labels.append(_NULL_LABEL)
    return labels, np.zeros(0, dtype=np.int64)


def _category_label(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _bin_label(low: float, high: float, col: ColumnTransform) -> str:
    text = _number_text(low, col) if low == high else f"{_number_text(low, col)} to {_number_text(high, col)}"
    return text


def _number_text(value: float, col: ColumnTransform) -> str:
    if col.kind == ColumnKind.DATETIME:
        unit = 86400.0 if col.datetime_unit == "day" else 1.0  # the transformer's model units
        try:
            stamp = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=value * unit)
        except OverflowError:  # beyond year 1..9999: keep the number
            return f"{value:.6g}"
        return stamp.date().isoformat() if col.datetime_unit == "day" else stamp.isoformat(sep=" ")
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


# ------------------------------------------------------------------------------------------------
# rows <-> value slots


def matrix_to_slots(
    matrix: NDArray[np.float32], transformer: TableTransformer, vocab: GreatVocabulary
) -> NDArray[np.int64]:
    """Value slot of every cell: ``(n, C)`` int64 from the transformer's ``(n, d)`` matrix.

    Continuous cells map back to their DP quantile bin through the normal CDF (the transformer
    placed each value inside its bin's CDF step; a value in a bin of zero DP mass sits on the edge
    of a neighbouring non-empty bin and maps to it). Nothing but the bin index survives.
    """
    n = matrix.shape[0]
    out = np.empty((n, len(transformer.columns)), dtype=np.int64)
    for c, col in enumerate(transformer.columns):
        if not col.is_continuous:
            (span,) = col.spans
            out[:, c] = np.argmax(matrix[:, span.start : span.start + span.width], axis=1)
            continue
        assert col.bins is not None
        spans = iter(col.spans)
        missing = np.zeros(n, dtype=bool)
        if col.nullable:
            ms = next(spans)
            missing = matrix[:, ms.start + 1] > matrix[:, ms.start]
        vs = next(spans)
        kept = vocab.bins[c]
        # cdf_right restricted to the non-empty bins: the first one whose CDF reaches u holds u
        cdf = col.bins.cdf_right[kept]
        u = ndtr(matrix[:, vs.start].astype(np.float64))
        out[:, c] = np.clip(np.searchsorted(cdf, u, side="left"), 0, kept.size - 1)
        out[missing, c] = kept.size
    return out


def slots_to_matrix(
    slots: NDArray[np.int64], transformer: TableTransformer, vocab: GreatVocabulary, rng: np.random.Generator
) -> NDArray[np.float32]:
    """The transformer's ``(n, d)`` float32 matrix for value slots ``(n, C)``.

    A bin slot becomes a standard-normal score drawn uniformly within the middle of the bin's CDF
    step, which the transformer's inverse maps to a value inside that bin (uniform within an
    interval, the atom's value for an atom).
    """
    n = slots.shape[0]
    out = np.zeros((n, transformer.output_dim), dtype=np.float32)
    rows = np.arange(n)
    for c, col in enumerate(transformer.columns):
        s = slots[:, c]
        if not col.is_continuous:
            (span,) = col.spans
            out[rows, span.start + s] = 1.0
            continue
        assert col.bins is not None
        spans = iter(col.spans)
        kept = vocab.bins[c]
        missing = s >= kept.size
        if col.nullable:
            ms = next(spans)
            out[rows, ms.start + missing.astype(np.int64)] = 1.0
        vs = next(spans)
        b = kept[np.minimum(s, kept.size - 1)]
        lo = col.bins.cdf_right[b] - col.bins.mass[b]
        frac = rng.uniform(_BIN_MARGIN, 1.0 - _BIN_MARGIN, size=n)
        z = ndtri(np.clip(lo + frac * col.bins.mass[b], 1e-12, 1.0 - 1e-12))
        out[:, vs.start] = np.where(missing, 0.0, z).astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------
# the model


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from two ``nn.Linear`` layers (Opacus-supported).

    ``forward(x (B, T, d), cache)`` returns ``(y (B, T, d), (keys, values))`` where keys/values
    have shape ``(B, heads, T_past + T, d / heads)``; ``cache`` holds the previous keys/values
    (incremental decoding), ``None`` for a full causal pass.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape
        q, k, v = (
            z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in self.qkv(x).split(d, dim=2)
        )
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
            past = k.shape[2] - t
            keys = torch.arange(k.shape[2], device=x.device)
            queries = torch.arange(past, past + t, device=x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[None, :] <= queries[:, None])
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, d_ff)
        self.out = nn.Linear(d_ff, d_model)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), cache)
        x = x + a
        return x + self.out(F.gelu(self.fc(self.ln2(x)))), kv


class GreatGPT(nn.Module):
    """Decoder-only transformer over serialized rows.

    Position ``j`` of a row carries two tokens whose embeddings are summed: the value token of the
    row's ``(j-1)``-th column (``<bos>`` at ``j = 0``) and the column token of its ``j``-th
    column. The model reads exactly what it would read in the interleaved sentence ``<bos> col val
    col val ...`` before each value, with half the positions. ``forward(pairs (B, T, 2) int64)``
    returns the value logits ``(B, T, V)`` (position ``j`` predicts the ``j``-th value).
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, n_layers: int, n_heads: int, d_ff: int):
        super().__init__()
        self.config = {
            "vocab_size": vocab_size,
            "max_len": max_len,
            "d_model": d_model,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "d_ff": d_ff,
        }
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.modules():  # GPT-2's scaled init of the residual projections
            if isinstance(block, Block):
                for proj in (block.attn.proj, block.out):
                    nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * n_layers))

    def hidden(
        self,
        pairs: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        offset: int = 0,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Final hidden states ``(B, T, d)`` for ``pairs`` ``(B, T, 2)`` at positions ``offset..``."""
        b, t, _ = pairs.shape
        positions = torch.arange(offset, offset + t, device=pairs.device).expand(b, t).contiguous()
        # one embedding call for both tokens of a position (a second call would tie the table)
        x = self.tok(pairs).sum(dim=2) + self.pos(positions)
        new: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, caches[i] if caches is not None else None)
            new.append(kv)
        return x, new

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        h, _ = self.hidden(pairs)
        return self.head(self.ln_f(h))

    def next_logits(self, h_last: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(h_last))


class MaskedValueLoss(nn.Module):
    """Per-row mean negative log-likelihood of the value tokens, softmax restricted per column.

    ``forward(logits (B, C, V), target (B, C, 2) int64)``: ``target[..., 0]`` is the column index
    of each position, ``target[..., 1]`` the value token. ``reduction`` ``"none"`` gives ``(B,)``
    (one loss per row = per sequence: the DP unit), ``"mean"``/``"sum"`` a scalar.
    """

    def __init__(self, column_mask: NDArray[np.bool_], reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction
        self.register_buffer("bias", torch.from_numpy(np.where(column_mask, 0.0, -1e9).astype(np.float32)))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bias: torch.Tensor = self.bias  # type: ignore[assignment]
        masked = logits + bias[target[..., 0]]
        nll = F.cross_entropy(masked.flatten(0, 1), target[..., 1].flatten(), reduction="none")
        per_row = nll.view(target.shape[0], target.shape[1]).mean(dim=1)
        if self.reduction == "none":
            return per_row
        return per_row.sum() if self.reduction == "sum" else per_row.mean()


def serialize_batch(
    slots: torch.Tensor, vocab_start: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training input and target for a batch of rows in fresh random column orders.

    Args:
        slots: ``(B, C)`` int64 value slots.
        vocab_start: ``(C,)`` int64 first value-token id per column.
        generator: CPU generator of the column orders (data independent).

    Returns:
        ``(pairs (B, C, 2), target (B, C, 2))``: per position ``(column token, previous value
        token or <bos>)`` and ``(column index, value token)``.
    """
    b, c = slots.shape
    device = slots.device
    order = torch.argsort(torch.rand(b, c, generator=generator), dim=1).to(device)
    values = torch.gather(slots, 1, order) + vocab_start[order]
    previous = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=device), values[:, :-1]], dim=1)
    return torch.stack([order + 1, previous], dim=2), torch.stack([order, values], dim=2)


def _dp_step(trainer: PrivateTrainer, inputs: torch.Tensor, target: torch.Tensor, physical: int) -> None:
    """One DP-SGD step on a Poisson batch, in chunks of at most ``physical`` rows.

    The loss of a chunk is ``trainer.criterion(trainer.module(inputs[chunk]), target[chunk])``
    (rows along dimension 0). Every chunk but the last is backpropagated and its per-sample clipped
    gradients accumulated by the DP optimizer with the step skipped (Opacus's
    ``signal_skip_step``, as its ``BatchMemoryManager`` does); the last chunk goes through
    :meth:`PrivateTrainer.step`, which adds the noise once for the whole Poisson batch, scales by
    the expected batch size and counts one step.
    """
    rows = int(inputs.shape[0])
    starts = list(range(0, rows, physical))
    for k, start in enumerate(starts):
        part = slice(start, min(rows, start + physical))
        loss = trainer.criterion(trainer.module(inputs[part]), target[part])
        if k + 1 < len(starts):
            loss.backward()
            trainer.optimizer.signal_skip_step(do_skip=True)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        else:
            trainer.step(loss)


# ------------------------------------------------------------------------------------------------
# the generator


@register_generator
class DPGreatSynthesizer(Synthesizer):
    """DP-GReaT: a GPT over serialized rows trained from scratch with DP-SGD.

    Args:
        epochs: DP-SGD epochs (expected passes over the rows; each pass sees every row in a
            fresh random column order).
        batch_size: expected Poisson batch size, rows (= sequences).
        learning_rate: Adam learning rate.
        max_grad_norm: per-row clipping bound (L2 norm of one sequence's gradient).
        d_model: embedding/hidden width.
        n_layers: transformer blocks.
        n_heads: attention heads (must divide ``d_model``).
        d_ff: hidden width of each block's MLP.
        temperature: sampling temperature (> 0; 1 samples the model's distribution).
        grad_sample_mode: Opacus per-sample gradient mode (``ghost`` or ``hooks``).
        device: ``auto``, ``cpu`` or ``cuda``.
        physical_batch_size: most rows per forward/backward pass (memory bound): a Poisson batch
            larger than this is processed in chunks whose clipped gradients are summed before the
            one noisy step (same privacy, same update). ``None``: the whole batch for the scratch
            model, 16 rows for a pre-trained checkpoint.
        pretrained_path: a *local* directory holding a causal-LM checkpoint and tokenizer (e.g.
            GPT-2 saved with ``save_pretrained``) to fine-tune instead of training from scratch; needs
            the optional ``transformers`` package. The architecture parameters above are then
            ignored. Nothing is downloaded.
    """

    name = "dp_great"

    def __init__(
        self,
        *,
        epochs: int = 12,
        batch_size: int = 1000,
        learning_rate: float = 3e-3,
        max_grad_norm: float = 1.0,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int = 128,
        temperature: float = 1.0,
        grad_sample_mode: str = "ghost",
        device: str = "auto",
        physical_batch_size: int | None = None,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            temperature=temperature,
            grad_sample_mode=grad_sample_mode,
            device=device,
            physical_batch_size=physical_batch_size,
            pretrained_path=pretrained_path,
        )
        names = ["epochs", "batch_size", "d_model", "n_layers", "n_heads", "d_ff"]
        for name in [*names, *(["physical_batch_size"] if physical_batch_size is not None else [])]:
            value = self.params[name]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
        if d_model % n_heads:
            raise ParameterError(f"n_heads must divide d_model, got n_heads={n_heads}, d_model={d_model}")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
            raise ParameterError(f"temperature must be a number > 0, got {temperature!r}")
        if pretrained_path is not None:
            if not isinstance(pretrained_path, str | os.PathLike) or not str(pretrained_path):
                raise ParameterError(
                    f"pretrained_path must be a local directory path, got {pretrained_path!r}"
                )
            _require_transformers()
        self.dp_config = DPSGDConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_grad_norm=max_grad_norm,
            grad_sample_mode=grad_sample_mode,
            device=device,
        )
        self.vocabulary_: GreatVocabulary | None = None
        self.model_: GreatGPT | None = None
        self.lm_: _LocalLM | None = None

    # -- training --------------------------------------------------------------------------------
    def fit(
        self,
        data: pd.DataFrame,
        spec: TableSpec,
        budget: PrivacyBudget,
        *,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """See :meth:`Synthesizer.fit`; a ``pretrained_path`` is checked before any data is read."""
        path = self.params["pretrained_path"]
        if path is not None and not os.path.isdir(path):
            raise ParameterError(
                f"pretrained_path {str(path)!r} is not a local directory (nothing is downloaded)"
            )
        return super().fit(data, spec, budget, seed=seed, progress=progress)

    def _fit_matrix(
        self,
        matrix: np.ndarray,
        accountant: PrivacyAccountant,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        assert self.transformer_ is not None
        vocab = build_vocabulary(self.transformer_)
        self.vocabulary_ = vocab
        slots = matrix_to_slots(matrix, self.transformer_, vocab)
        torch.manual_seed(seed)
        if self.params["pretrained_path"] is not None:
            lm = _LocalLM.from_checkpoint(str(self.params["pretrained_path"]), vocab)
            physical = int(self.params["physical_batch_size"] or PRETRAINED_PHYSICAL_BATCH)
            facts = lm.fit(
                slots, accountant, self.dp_config, physical,
                row_count=self.transformer_.dp_row_count, progress=progress,
            )  # fmt: skip
            self.lm_ = lm
            return facts
        p = self.params
        model = GreatGPT(
            vocab.size,
            vocab.n_columns,
            int(p["d_model"]),
            int(p["n_layers"]),
            int(p["n_heads"]),
            int(p["d_ff"]),
        )
        criterion = MaskedValueLoss(vocab.column_mask())
        trainer = PrivateTrainer(
            model, criterion, slots.astype(np.float32), accountant, self.dp_config,
            row_count=self.transformer_.dp_row_count,
        )  # fmt: skip
        reseed_after_initialisation()
        starts = torch.from_numpy(vocab.value_start).to(trainer.device)
        criterion.to(trainer.device)
        # column orders are drawn per private row: from the run's secret seed, never the user's
        orders = torch.Generator().manual_seed(secret_seed())
        epochs = int(p["epochs"])
        physical = int(p["physical_batch_size"] or 1 << 62)
        current = 1
        for epoch, batch in trainer.batches(epochs):
            if epoch != current:
                trainer.log_epoch(current, epochs, progress)
                current = epoch
            pairs, target = serialize_batch(batch.long(), starts, orders)
            _dp_step(trainer, pairs, target, physical)
        trainer.log_epoch(current, epochs, progress)
        result = trainer.finish()
        self.model_ = model.to("cpu").eval()
        # no training loss and no exact row count in the bundle: un-noised statistics of private rows
        return {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": result.device,
            "vocab_size": vocab.size,
            "parameters": sum(int(t.numel()) for t in model.parameters()),
        }

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def _sample_matrix(self, n: int, rng: np.random.Generator) -> np.ndarray:
        assert self.transformer_ is not None and self.vocabulary_ is not None
        vocab = self.vocabulary_
        temperature = float(self.params["temperature"])
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        slots = np.zeros((n, vocab.n_columns), dtype=np.int64)
        chunk = SAMPLE_BATCH_ROWS if self.lm_ is None else PRETRAINED_SAMPLE_BATCH_ROWS
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            orders = np.argsort(rng.random((stop - start, vocab.n_columns)), axis=1)
            if self.lm_ is not None:
                slots[start:stop] = self.lm_.sample(orders, temperature, gen)
            else:
                assert self.model_ is not None
                slots[start:stop] = _sample_scratch(self.model_, vocab, orders, temperature, gen)
        return slots_to_matrix(slots, self.transformer_, vocab, rng)

    # -- bundles ---------------------------------------------------------------------------------
    def _model_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.lm_ is not None:
            return self.lm_.state()
        assert self.model_ is not None
        return dict(self.model_.config), {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}

    def _restore_model(self, config: dict[str, Any], state: dict[str, Any]) -> None:
        assert self.transformer_ is not None
        self.vocabulary_ = build_vocabulary(self.transformer_)
        if config.get("kind") == "pretrained":
            self.lm_ = _LocalLM.restore(config, state, self.vocabulary_)
            return
        if int(config["vocab_size"]) != self.vocabulary_.size:
            raise AssertionError("bundle vocabulary does not match its transformer")
        model = GreatGPT(
            **{k: int(config[k]) for k in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff")}
        )
        model.load_state_dict(state)
        self.model_ = model.eval()


def _sample_scratch(
    model: GreatGPT,
    vocab: GreatVocabulary,
    orders: NDArray[np.int64],
    temperature: float,
    gen: torch.Generator,
) -> NDArray[np.int64]:
    """Value slots ``(B, C)`` for rows whose columns are emitted in ``orders`` ``(B, C)``.

    Incremental decoding with a key/value cache; at each position the logits are masked to the
    current column's value tokens, so each column gets exactly one value from its own vocabulary.
    """
    b, c = orders.shape
    bias = torch.from_numpy(np.where(vocab.column_mask(), 0.0, -math.inf).astype(np.float32))
    order_t = torch.from_numpy(orders)
    starts = torch.from_numpy(vocab.value_start)
    rows = torch.arange(b)
    out = torch.full((b, c), -1, dtype=torch.long)  # every column is filled exactly once below
    previous = torch.zeros(b, dtype=torch.long)
    caches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    for j in range(c):
        col = order_t[:, j]
        h, caches = model.hidden(torch.stack([col + 1, previous], dim=1)[:, None, :], caches, j)
        logits = model.next_logits(h[:, -1]) / temperature + bias[col]
        previous = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
        out[rows, col] = previous - starts[col]
    return out.numpy()


# ------------------------------------------------------------------------------------------------
# optional: fine-tuning a user-supplied local checkpoint (needs `transformers`)


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ParameterError(
            "pretrained_path needs the optional 'transformers' package, which is not installed: "
            + _TRANSFORMERS_HINT
        ) from None
    return transformers


class _HFWrapper(nn.Module):
    """Makes a Hugging Face causal LM an Opacus-friendly module: ``(B, T)`` ids → ``(B, T, V)`` logits.

    Position ids are passed with the batch dimension (``(B, T)``), so the position embedding's
    per-sample gradients are per row.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        positions = torch.arange(t, device=input_ids.device).expand(b, t).contiguous()
        logits: torch.Tensor = self.lm(input_ids=input_ids, position_ids=positions, use_cache=False).logits
        return logits


class TokenNLLLoss(nn.Module):
    """Per-row mean NLL of the labelled tokens: ``forward(logits (B, T, V), labels (B, T))``,
    label ``-100`` = not scored. ``reduction`` ``"none"`` → ``(B,)`` (one loss per sequence)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
        scored = (labels != -100).sum(dim=1).clamp(min=1)
        per_row = nll.view(labels.shape).sum(dim=1) / scored
        if self.reduction == "none":
            return per_row
        return per_row.sum() if self.reduction == "sum" else per_row.mean()


@dataclass
class _Trie:
    """Prefix tree of one column's value phrases (token-id sequences); leaves carry the slot."""

    children: dict[int, _Trie]
    slot: int | None = None


class _LocalLM:
    """A local pre-trained causal LM fine-tuned with DP-SGD on the natural-text serialization.

    Row text: ``<bos> " age is" " 39" "," " workclass is" " Private" "," ...``: each column's
    phrase, then its value label (public/DP vocabulary only), then a separator token. Decoding is
    lock-step (every row appends one token per step): forced tokens for the column phrases, and
    trie-constrained sampling for value phrases (ending at the separator).
    """

    def __init__(self, lm: Any, vocab: GreatVocabulary, tokens: dict[str, Any]) -> None:
        self.lm = lm  # a transformers PreTrainedModel (typed loosely: transformers is optional)
        self.vocab = vocab
        self.tokens = tokens  # bos, sep, column phrase ids, value phrase ids (all from public text)
        self.tries = [self._trie(phrases) for phrases in tokens["values"]]

    @staticmethod
    def _trie(phrases: list[list[int]]) -> _Trie:
        root = _Trie({})
        for slot, ids in enumerate(phrases):
            node = root
            for tok in ids:
                if node.slot is not None:  # an earlier phrase ends inside this one
                    raise AssertionError("value phrases are not prefix free")
                node = node.children.setdefault(tok, _Trie({}))
            if node.slot is not None or node.children:
                raise AssertionError("value phrases are not prefix free")
            node.slot = slot
        return root

    @classmethod
    def from_checkpoint(cls, path: str, vocab: GreatVocabulary) -> _LocalLM:
        tf = _require_transformers()
        tokenizer = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
        lm = tf.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        # Opacus's ghost clipping cannot clip tied parameters: give the output layer its own copy
        out, inp = lm.get_output_embeddings(), lm.get_input_embeddings()
        if out is not None and inp is not None and out.weight is inp.weight:
            out.weight = nn.Parameter(inp.weight.detach().clone())
            lm.config.tie_word_embeddings = False
        tokens = _phrase_tokens(tokenizer, vocab)
        # the longest row sentence must fit the checkpoint's position table (else an opaque IndexError)
        longest = 1 + sum(
            len(phrase) + max(len(value) for value in values)
            for phrase, values in zip(tokens["columns"], tokens["values"], strict=True)
        )
        limit = next(
            (
                int(v)
                for k in ("n_positions", "max_position_embeddings")
                if (v := getattr(lm.config, k, None))
            ),
            None,
        )
        if limit is not None and longest > limit:
            raise ParameterError(
                f"pretrained_path: a serialized row can take {longest} tokens of this checkpoint's tokenizer, "
                f"more than its {limit} positions; use a checkpoint with a longer context or a tokenizer "
                "with larger word pieces"
            )
        return cls(lm, vocab, tokens)

    # training
    def _sequences(
        self, slots: NDArray[np.int64], orders: NDArray[np.int64]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bos, sep = self.tokens["bos"], self.tokens["sep"]
        seqs: list[list[int]] = []
        labels: list[list[int]] = []
        for row, order in zip(slots, orders, strict=True):
            ids, lab = [bos], [-100]
            for c in order:
                phrase = self.tokens["columns"][c]
                value = self.tokens["values"][c][row[c]]
                ids += phrase + value
                lab += [-100] * len(phrase) + value
            seqs.append(ids)
            labels.append(lab)
        t = max(len(s) for s in seqs)
        tokens = torch.full((len(seqs), t), sep, dtype=torch.long)
        target = torch.full((len(seqs), t), -100, dtype=torch.long)
        for i, (s, lab) in enumerate(zip(seqs, labels, strict=True)):
            tokens[i, : len(s)] = torch.tensor(s)
            target[i, : len(lab)] = torch.tensor(lab)
        return tokens[:, :-1].contiguous(), target[:, 1:].contiguous()

    def fit(
        self,
        slots: NDArray[np.int64],
        accountant: PrivacyAccountant,
        config: DPSGDConfig,
        physical: int,
        *,
        row_count: float,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        wrapper = _HFWrapper(self.lm)
        trainer = PrivateTrainer(
            wrapper, TokenNLLLoss(), slots.astype(np.float32), accountant, config, row_count=row_count
        )
        # dropout of the checkpoint and the column orders are drawn per private row: secret seeds
        reseed_after_initialisation()
        rng = np.random.default_rng(secret_seed())
        current = 1
        for epoch, batch in trainer.batches(config.epochs):
            if epoch != current:
                trainer.log_epoch(current, config.epochs, progress)
                current = epoch
            rows = batch.long().cpu().numpy()
            orders = np.argsort(rng.random(rows.shape), axis=1)
            tokens, target = self._sequences(rows, orders)
            tokens, target = tokens.to(trainer.device), target.to(trainer.device)
            _dp_step(trainer, tokens, target, physical)
        trainer.log_epoch(current, config.epochs, progress)
        result = trainer.finish()
        self.lm.to("cpu").eval()
        return {
            "noise_multiplier": result.noise_multiplier,
            "sample_rate": result.sample_rate,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": result.device,
            "pretrained": True,
        }

    # sampling
    def sample(
        self, orders: NDArray[np.int64], temperature: float, gen: torch.Generator
    ) -> NDArray[np.int64]:
        """Value slots ``(B, C)``; rows emit their columns in ``orders`` ``(B, C)``."""
        b, c = orders.shape
        cols, sep = self.tokens["columns"], self.tokens["sep"]
        out = np.full((b, c), -1, dtype=np.int64)
        # per-row state: next column index j, forced tokens left, current trie node (value phase)
        j = np.zeros(b, dtype=np.int64)
        forced: list[list[int]] = [list(cols[orders[i, 0]]) for i in range(b)]
        node: list[_Trie | None] = [None] * b
        step_in = torch.full((b, 1), self.tokens["bos"], dtype=torch.long)
        past: Any = None
        pos = 0
        while (j < c).any():
            result = self.lm(
                input_ids=step_in, position_ids=torch.full((b, 1), pos), past_key_values=past, use_cache=True
            )
            past, pos = result.past_key_values, pos + 1
            logits = result.logits[:, -1].float() / temperature
            nxt = torch.full((b,), sep, dtype=torch.long)
            for i in range(b):
                if j[i] >= c:
                    continue
                if forced[i]:
                    nxt[i] = forced[i].pop(0)
                    if not forced[i]:
                        node[i] = self.tries[orders[i, j[i]]]
                    continue
                here = node[i]
                assert here is not None
                options = torch.tensor(sorted(here.children))
                probs = torch.softmax(logits[i, options], dim=0)
                tok = int(options[int(torch.multinomial(probs, 1, generator=gen))])
                nxt[i] = tok
                child = here.children[tok]
                if child.slot is not None:  # value complete: next column
                    out[i, orders[i, j[i]]] = child.slot
                    j[i] += 1
                    node[i] = None
                    if j[i] < c:
                        forced[i] = list(cols[orders[i, j[i]]])
                else:
                    node[i] = child
            step_in = nxt[:, None]
        return out

    # bundles
    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        config = {
            "kind": "pretrained",
            "lm_config": json.loads(self.lm.config.to_json_string()),
            "tokens": self.tokens,
        }
        return config, {k: v.detach().cpu() for k, v in self.lm.state_dict().items()}

    @classmethod
    def restore(cls, config: dict[str, Any], state: dict[str, Any], vocab: GreatVocabulary) -> _LocalLM:
        tf = _require_transformers()
        raw = dict(config["lm_config"])
        lm_config = tf.AutoConfig.for_model(raw.pop("model_type"), **raw)
        lm = tf.AutoModelForCausalLM.from_config(lm_config)
        lm.load_state_dict(state)
        return cls(lm.eval(), vocab, config["tokens"])


def _phrase_tokens(tokenizer: Any, vocab: GreatVocabulary) -> dict[str, Any]:
    """Token ids of every column phrase and value phrase (from the public vocabulary's text)."""

    def encode(text: str) -> list[int]:
        return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]

    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    comma = encode(",")
    columns = [encode(" " + p) for p in vocab.column_phrases]
    for sep in ([comma[0]] if len(comma) == 1 else []) + [eos]:
        values = []
        for labels in vocab.value_labels:
            phrases = [[*encode(" " + label), sep] for label in labels]
            if len({tuple(p) for p in phrases}) < len(phrases):  # two labels encode alike: number them
                phrases = [[*encode(f" {label} #{k}"), sep] for k, label in enumerate(labels)]
            values.append(phrases)
        try:
            for phrases in values:
                _LocalLM._trie(phrases)
        except AssertionError:
            continue  # the comma also occurs inside labels in a way that breaks prefix freedom
        return {"bos": int(bos), "sep": int(sep), "columns": columns, "values": values}
    raise ParameterError(
        "pretrained_path: the checkpoint's tokenizer cannot encode the value labels unambiguously"
    )
