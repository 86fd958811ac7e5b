"""The spacing schedule shared by spaced online KD (Alg. 2) and spaced self KD (Alg. 4).

Each incoming batch is first used for the "advance" update (teacher step / deep-path step) and its
spec is buffered; when ``interval_steps`` specs are buffered, the replay updates run on exactly
those specs in order and the buffer is cleared. ``interval_steps == 0`` falls back to the
non-spaced parent method. What is left at the end is dropped or distilled (``spaced.leftover``).
"""
from __future__ import annotations

from ..batches import BatchSpec
from .base import Update


class SpacedSchedule:
    """Mixin placed before a Method subclass; set ``advance`` and ``replay`` (optimizer, role)."""

    advance: tuple[str, str]
    replay: tuple[str, str]

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.buffer: list[BatchSpec] = []

    def schedule(self, spec: BatchSpec) -> list[Update]:
        if self.interval_steps == 0:
            return super().schedule(spec)
        self.buffer.append(spec)
        updates = [Update(*self.advance, spec)]
        if len(self.buffer) == self.interval_steps:
            updates += self._replay()
        return updates

    def finish(self) -> list[Update]:
        if self.buffer and self.cfg.spaced.leftover == "distil":
            return self._replay()
        self.buffer = []
        return []

    def _replay(self) -> list[Update]:
        self.replay_steps.append(self.buffer[-1].step)
        updates = [Update(*self.replay, s) for s in self.buffer]
        self.buffer = []
        return updates

    def state_dict(self) -> dict:
        return {**super().state_dict(), "buffer": [s.to_plain() for s in self.buffer]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.buffer = [BatchSpec.from_plain(r) for r in state.get("buffer", [])]

    def options(self) -> dict:
        return {**super().options(), "leftover": self.cfg.spaced.leftover}
