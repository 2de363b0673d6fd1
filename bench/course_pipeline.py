"""A faithful re-implementation of the course sample's data pipeline and model (NTU ML 2021 HW4).

Used only as the baseline in benchmarks: a ``Dataset`` that ``torch.load``s one file per item and crops
128 random frames, a ``DataLoader(batch_size=32, shuffle=True, drop_last=True, num_workers=2)`` with
``pad_sequence(padding_value=-20)``, and the seed's ``Classifier``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset


class CourseDataset(Dataset):
    def __init__(self, data_dir: Path, segment_len: int = 128) -> None:
        self.data_dir, self.segment_len = data_dir, segment_len
        mapping = json.loads((data_dir / "mapping.json").read_text())["speaker2id"]
        metadata = json.loads((data_dir / "metadata.json").read_text())["speakers"]
        self.data = [[u["feature_path"], mapping[s]] for s, utts in metadata.items() for u in utts]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        feat_path, speaker = self.data[index]
        mel = torch.load(os.path.join(self.data_dir, feat_path), weights_only=True)
        if len(mel) > self.segment_len:
            start = random.randint(0, len(mel) - self.segment_len)
            mel = torch.FloatTensor(mel[start : start + self.segment_len])
        else:
            mel = torch.FloatTensor(mel)
        return mel, torch.FloatTensor([speaker]).long()


def collate_batch(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    mel, speaker = zip(*batch, strict=True)
    return pad_sequence(mel, batch_first=True, padding_value=-20), torch.FloatTensor(speaker).long()


def course_loader(data_dir: Path, workers: int = 2) -> DataLoader:
    return DataLoader(CourseDataset(data_dir), batch_size=32, shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=False, collate_fn=collate_batch, persistent_workers=workers > 0)


class Classifier(nn.Module):
    """The seed's Simple model."""

    def __init__(self, d_model: int = 80, n_spks: int = 600, dropout: float = 0.1) -> None:
        super().__init__()
        self.prenet = nn.Linear(40, d_model)
        self.encoder_layer = nn.TransformerEncoderLayer(d_model=d_model, dim_feedforward=256, nhead=2,
                                                        dropout=dropout)
        self.pred_layer = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_spks))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        out = self.prenet(mels).permute(1, 0, 2)
        out = self.encoder_layer(out).transpose(0, 1)
        return self.pred_layer(out.mean(dim=1))
