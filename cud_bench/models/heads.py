"""The trainable networks: what an architecture builds and the training loop updates.

Each module maps the tensors its architecture's inputs yield for a batch to
logits of shape (n, C). Weights are initialised from torch's global generator,
so an architecture seeds it before building one (see
:meth:`cud_bench.models.architectures.Architecture.build`).
"""

from __future__ import annotations

import torch
from torch import nn

from cud_bench.models.dropout import Dropout
from cud_bench.models.features import mean_pool


class MLPHead(nn.Module):
    """One hidden ReLU layer with dropout on frozen sentence features (n, in_dim) -> (n, C).

    Its dropout is :class:`~cud_bench.models.dropout.Dropout`: the same masks on every CPU."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class HashedBagClassifier(nn.Module):
    """Mean of hashed n-gram embeddings, then a linear layer (fastText-style, no encoder).

    ``forward(ids, offsets)`` takes the ``nn.EmbeddingBag`` layout: the bucket ids of
    every text of the batch concatenated, and where each text starts. The embedding
    table is sparse (``sparse=True``): a step touches only the rows of the n-grams in
    the batch, which is what makes a 2**17-row table cheap to train on a CPU. A text
    with no tokens embeds to zeros, so its logits are the classifier's bias.
    """

    def __init__(self, n_buckets: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(n_buckets, dim, mode="mean", sparse=True)
        # fastText's initialisation: small uniform rows, so that a mean over a few
        # n-grams starts near zero rather than at the N(0, 1) default's scale.
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(ids, offsets))


class MeanPoolClassifier(nn.Module):
    """A transformers encoder, mean pooling over real tokens, dropout and a linear layer.

    ``forward(input_ids, attention_mask)`` takes (n, L) tensors; padded positions
    (mask 0) do not enter the mean. The pooling is the frozen features' own
    (:func:`~cud_bench.models.features.mean_pool`), the one the sentence encoders
    were trained with, so fine-tuning starts from their embedding space.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
