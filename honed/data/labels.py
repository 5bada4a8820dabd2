"""The label map: class names <-> integer ids, saved with every model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from honed.errors import HonedError


@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Iterable[str], order: list[str] | None = None) -> LabelMap:
        seen = set(labels)
        names = [n for n in order if n in seen] if order else sorted(seen)
        return cls(tuple(names))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, labels: Iterable[str]) -> list[int]:
        index = self.index
        return [index[label] for label in labels]

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def save(self, folder: Path) -> None:
        (folder / "labels.json").write_text(json.dumps(list(self.names), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LabelMap:
        path = folder / "labels.json"
        if not path.is_file():
            raise HonedError(f"'{folder}' holds no labels.json; is it a model saved by honed?")
        return cls(tuple(json.loads(path.read_text(encoding="utf-8"))))
