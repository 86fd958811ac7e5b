"""The spacing schedule shared by spaced online KD (Alg. 2) and spaced self KD (Alg. 4).

Each incoming batch is first used for the "advance" update (teacher step / deep-path step) and its
spec is buffered; when ``interval_steps`` specs are buffered, the replay updates run on exactly
those specs in order and the buffer is cleared. ``interval_steps == 0`` falls back to the
non-spaced parent method. What is left at the end is dropped or distilled (``spaced.leftover``).

Critical period (paper Fig. 3): spacing runs only in epochs ``start_epoch + 1`` to
``start_epoch + window_epochs`` (``spaced.start_epoch``, ``spaced.window_epochs``; no window:
to the end); outside them each batch gets the parent method's updates (online / self KD).
Intervals are counted from the first spaced step, and a partial interval left when the window
closes is dropped or distilled like the leftover at the end of training.
"""
from __future__ import annotations

from ..batches import BatchSpec
from .base import Update


class SpacedSchedule:
    """Mixin placed before a Method subclass; set ``advance`` and ``replay`` (optimizer, role)."""

    advance: tuple[str, str]
    replay: tuple[str, str]
    critical_period = True

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.buffer: list[BatchSpec] = []

    # Methods with more than one network on either side override these two hooks rather than
    # copying the schedule (a peer group stepping ahead, a chain of learners replaying in turn).
    def advance_updates(self, spec: BatchSpec) -> list[Update]:
        """The teacher side's updates for the incoming batch (default: one ``advance`` update)."""
        return [Update(*self.advance, spec)]

    def replay_updates(self, specs: list[BatchSpec]) -> list[Update]:
        """The learner side's updates for one buffered interval, in order (default: one
        ``replay`` update per batch)."""
        return [Update(*self.replay, s) for s in specs]

    def spacing_on(self, spec: BatchSpec) -> bool:
        """Whether ``spec`` falls in the critical period (spaced.start_epoch, window_epochs)."""
        sp = self.cfg.spaced
        return spec.epoch > sp.start_epoch and (
            sp.window_epochs is None or spec.epoch <= sp.start_epoch + sp.window_epochs)

    def schedule(self, spec: BatchSpec) -> list[Update]:
        if self.interval_steps == 0:
            return super().schedule(spec)
        if not self.spacing_on(spec):
            return self.finish() + super().schedule(spec)     # finish(): a window just closed
        self.buffer.append(spec)
        updates = self.advance_updates(spec)
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
        updates = self.replay_updates(self.buffer)
        self.buffer = []
        return updates

    def state_dict(self) -> dict:
        return {**super().state_dict(), "buffer": [s.to_plain() for s in self.buffer]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.buffer = [BatchSpec.from_plain(r) for r in state.get("buffer", [])]

    def options(self) -> dict:
        sp = self.cfg.spaced
        return {**super().options(), "leftover": sp.leftover, "start_epoch": sp.start_epoch,
                "window_epochs": sp.window_epochs}
