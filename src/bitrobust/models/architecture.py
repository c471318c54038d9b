"""What it takes to rebuild a network: the model's name and options, sized for a dataset.

An :class:`Architecture` is plain data (JSON in a checkpoint's header, :mod:`bitrobust.checkpoint`)
that :meth:`Architecture.build` turns into a fresh module through the registry of
:mod:`bitrobust.models`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bitrobust.data import dataset_info
from bitrobust.models import build_model


@dataclass(frozen=True)
class Architecture:
    """What ``build_model`` needs to rebuild a network, and the dataset it was trained on."""

    model: str
    dataset: str
    in_channels: int
    image_size: int
    num_classes: int
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build_model(
            self.model,
            in_channels=self.in_channels,
            image_size=self.image_size,
            num_classes=self.num_classes,
            input_mean=self.input_mean,
            input_std=self.input_std,
            **self.options,
        )

    @classmethod
    def for_dataset(
        cls, model: str, dataset: str, options: dict[str, Any] | None = None
    ) -> Architecture:
        """Model ``model`` sized for ``dataset`` (channels, image size, classes, input stats)."""
        info = dataset_info(dataset)
        return cls(
            model=model,
            dataset=info.name,
            in_channels=info.in_channels,
            image_size=info.image_size,
            num_classes=info.num_classes,
            input_mean=tuple(info.mean),
            input_std=tuple(info.std),
            options=dict(options or {}),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        data = dict(data)
        for key in ("input_mean", "input_std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)
