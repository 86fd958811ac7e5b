"""Constant-ahead teacher (paper Table 11, App. A.6): the naive spacing baseline."""
from __future__ import annotations

from ..batches import BatchSpec
from .base import Update
from .online import OnlineKD, SpacedOnlineKD
from .registry import METHODS


@METHODS.register("constant-ahead")
class ConstantAheadKD(SpacedOnlineKD):
    """The teacher is pre-trained k = ⌊s × batches/epoch⌋ steps once, then teacher and student
    step together with the teacher always exactly k steps ahead (default s = 1.5 epochs).

    The paper gives no code for it; flatkd's reading:

    * One data stream B_1, B_2, … (the run's shuffles). The teacher trains on CE on each batch
      as it arrives, so its first k steps (B_1 … B_k) are the pre-training.
    * The student follows the *same* batches k steps behind: after the teacher's step on
      B_{t+k}, the student takes its t-th step on B_t, distilling (online-KD loss) from the
      teacher's outputs on B_t computed by the current teacher φ_{t+k} (under ``no_grad``, its
      BatchNorm in ``spaced.teacher_bn`` mode). So at every student step the teacher has taken
      exactly student steps + k steps — spaced KD's teacher is ⌈t/s⌉·s ≥ t steps ahead and
      frozen over each interval; this one is ahead by a constant and never frozen.
    * The last k batches: the teacher has finished, the student is k behind. With
      ``spaced.leftover=distil`` (this method's default) it takes them against the final
      teacher (the lead shrinks from k to 1), so its student takes every batch of the stream —
      as many optimizer steps, on the same batches, as online KD's and spaced-online's
      students; the teacher's head start is counted inside the run's budget (the teacher
      also takes one step per batch, the first k before the student's first). With ``drop`` the
      student never takes them (total − k steps, an unequal budget the report flags).
    * s = 0 is online KD (the same updates, bit for bit).
    """

    config_defaults = {"spaced.leftover": "distil"}
    critical_period = False          # the teacher is always ahead: no window to open or close

    def schedule(self, spec: BatchSpec) -> list[Update]:
        if self.interval_steps == 0:
            return OnlineKD.schedule(self, spec)
        self.buffer.append(spec)
        updates = [Update(*self.advance, spec)]
        if len(self.buffer) > self.interval_steps:
            updates.append(Update(*self.replay, self.buffer.pop(0)))
        return updates

    def finish(self) -> list[Update]:
        left, self.buffer = self.buffer, []
        if left and self.cfg.spaced.leftover == "distil":
            return [Update(*self.replay, s) for s in left]
        return []

    def options(self) -> dict:
        opts = super().options()
        for key in ("start_epoch", "window_epochs"):      # no critical period here
            opts.pop(key, None)
        return {**opts, "lead_steps": self.interval_steps}
