"""SASRec (Kang & McAuley 2018), the standard self-attentive sequential recommender, on
torch's own transformer layers.

Why not a library: RecTools' ``SASRecModel`` (0.19) pins numpy<2, pandas<3 and attrs<24, and
RePlay's (replay-rec 0.22) pandas<3, scikit-learn<1.9 and pyarrow<24; both would downgrade
the platform's pandas 3 / numpy 2 stack. The model follows RecTools' defaults where the
brief allows (shared input / output item embeddings, pre-norm blocks, softmax loss over the
whole catalog, dropout 0.2), with CPU-sized dimensions.

Trained on the training purchases, each user's items ordered by time (the last
``max_len``); the model learns to predict every next item of a sequence from its prefix.
A user is scored from the history (the last ``max_len`` items before the evaluated period)
with the softmax over the catalog, so every score is positive; a user without history gets
the popular items.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from recsys_assets.evaluation.baselines import USER_BLOCK, BaselineInputs, ItemSpace, popularity, rank_by_scores

PAD = 0  # item index 0 is padding; catalog item i is index i + 1


@dataclass(frozen=True)
class SasrecSettings:
    factors: int
    blocks: int
    heads: int
    max_len: int
    dropout: float
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    threads: int


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set for a block and restored after it (the setting is per process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Sasrec(nn.Module):
    def __init__(self, items: int, settings: SasrecSettings):
        super().__init__()
        self.items = nn.Embedding(items + 1, settings.factors, padding_idx=PAD)
        # Positions count back from the newest item, so that "the last purchase" is one embedding.
        self.positions = nn.Embedding(settings.max_len, settings.factors)
        self.dropout = nn.Dropout(settings.dropout)
        block = nn.TransformerEncoderLayer(
            settings.factors, settings.heads, dim_feedforward=settings.factors, dropout=settings.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(block, settings.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(settings.factors)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Right-padded ``batch x len`` item indices -> ``batch x len x factors`` states, each
        read from its position and the ones before it."""
        lengths = (sequences != PAD).sum(dim=1, keepdim=True)
        back = (lengths - 1 - torch.arange(sequences.shape[1])).clamp(min=0)
        hidden = self.dropout(self.items(sequences) * self.items.embedding_dim**0.5 + self.positions(back))
        # Right padding and a causal mask: a real position never attends to padding.
        causal = nn.Transformer.generate_square_subsequent_mask(sequences.shape[1])
        return self.norm(self.encoder(hidden, mask=causal, is_causal=True))

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """States -> logits of the next item over the catalog (index 0, padding, included)."""
        return states @ self.items.weight.T


def sequences_of(events: pd.DataFrame, users: np.ndarray, space: ItemSpace, max_len: int) -> torch.Tensor:
    """``users`` x ``max_len`` right-padded item indices: each user's last ``max_len`` known
    items in time order (ties by item id); unknown items are dropped."""
    events = events[events["user_id"].isin(users)]
    events = events.assign(index=events["item_id"].map(space.index)).dropna(subset=["index"])
    events = events.sort_values(["user_id", "ts", "item_id"], kind="stable")
    events = events.groupby("user_id").tail(max_len)
    place = events.groupby("user_id").cumcount().to_numpy()
    rows = pd.Series(np.arange(len(users)), index=users)[events["user_id"]].to_numpy()
    sequences = np.full((len(users), max_len), PAD, dtype=np.int64)
    sequences[rows, place] = events["index"].to_numpy(dtype=np.int64) + 1
    return torch.from_numpy(sequences)


def next_item_pairs(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (each sequence without its newest item) and targets (the item after each input
    position), both right-padded: a sequence of L items gives L - 1 training positions, the
    last one at "newest" like a user's history at recommendation time."""
    lengths = (sequences != PAD).sum(dim=1)
    sequences = sequences[lengths >= 2]  # a single item has no next item
    inputs = sequences.clone()
    inputs[torch.arange(len(sequences)), (sequences != PAD).sum(dim=1) - 1] = PAD
    return inputs[:, :-1], sequences[:, 1:]


def train(model: Sasrec, sequences: torch.Tensor, settings: SasrecSettings) -> None:
    """Softmax loss of the next item at every position of every training sequence."""
    inputs, targets = next_item_pairs(sequences)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    shuffle = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(inputs), generator=shuffle).split(settings.batch_size):
            # Only the batch's longest sequence wide, and logits only where there is a target:
            # most of a max_len window is padding, and the catalog-wide softmax is the cost.
            width = int((inputs[batch] != PAD).sum(dim=1).max())
            batch_targets = targets[batch, :width]
            states = model(inputs[batch, :width])[batch_targets != PAD]
            loss = nn.functional.cross_entropy(model.logits(states), batch_targets[batch_targets != PAD])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def next_item_probabilities(model: Sasrec, sequences: torch.Tensor) -> np.ndarray:
    """``users x items`` softmax over the catalog after each sequence's newest item (0 without one)."""
    model.eval()
    lengths = (sequences != PAD).sum(dim=1)
    if len(sequences) == 0:
        return np.zeros((0, model.items.num_embeddings - 1), dtype=np.float32)
    newest = model(sequences)[torch.arange(len(sequences)), (lengths - 1).clamp(min=0)]
    logits = model.logits(newest)[:, 1:]
    probabilities = torch.softmax(logits, dim=1)
    probabilities[lengths == 0] = 0.0
    return probabilities.numpy()


def sasrec(inputs: BaselineInputs, n: int, settings: SasrecSettings) -> pd.DataFrame:
    with torch_threads(settings.threads):
        return fit_and_rank(inputs, n, settings)


def fit_and_rank(inputs: BaselineInputs, n: int, settings: SasrecSettings) -> pd.DataFrame:
    space = ItemSpace.of(popularity(inputs.training))
    torch.manual_seed(settings.seed)  # weight init and dropout
    model = Sasrec(len(space.item_ids), settings)
    training_users = np.sort(inputs.training["user_id"].unique())
    train(model, sequences_of(inputs.training, training_users, space, settings.max_len + 1), settings)
    blocks = []
    # At least one (possibly empty) block, so that no users still give a frame with the columns.
    for start in range(0, max(len(inputs.users), 1), USER_BLOCK):
        users = inputs.users[start : start + USER_BLOCK]
        scores = next_item_probabilities(model, sequences_of(inputs.histories, users, space, settings.max_len))
        blocks.append(rank_by_scores(scores, users, space, n))
    return pd.concat(blocks, ignore_index=True)
