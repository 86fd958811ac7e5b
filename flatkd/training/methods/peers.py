"""Peer-group online KD with and without spacing: DML (App. A.3) and TSB (paper Table 4).

Pure losses (logits [N, C], labels [N]):

* :func:`dml_loss` — Zhang et al., CVPR 2018, Eq. 10: CE(z_k, y) + 1/(K−1)·Σ_{l≠k} KL(p_l ‖ p_k), T = 1.
* :func:`accumulate` / :func:`fold` — TSB's temporal accumulator (flatkd's reading, below).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import FlatkdError
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import kd_kl
from .base import Method, Networks, Update
from .kdutil import PerSampleBuffer, bn_frozen, frozen_forward, kd_kl_prob, make_net
from .online import teacher_seed
from .registry import METHODS
from .spacing import SpacedSchedule

PEER_SEED_STRIDE = 100        # peer k of a group (k ≥ 1 beyond the first) is built from seed + 100·k


# ---------------------------------------------------------------------------- DML
def dml_loss(z_k: torch.Tensor, others: list[torch.Tensor], y: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peer k's DML loss CE(z_k, y) + mean_{l≠k} KL(softmax(z_l) ‖ softmax(z_k)) (batch mean,
    T = 1; the peers' predictions are constants). Returns (total, ce, kl). The official code
    sums over the peers instead of averaging — the same for two peers."""
    ce = F.cross_entropy(z_k, y)
    kl = torch.stack([kd_kl(z_k, z_l.detach(), 1.0) for z_l in others]).mean()
    return ce + kl, ce, kl


def _peer_names(k: int) -> list[str]:
    """DML peers: the reported network ``student``, the one that runs ahead in spaced DML
    ``teacher``, then ``peer2`` … for larger groups."""
    return ["student", "teacher"] + [f"peer{i}" for i in range(2, k)]


@METHODS.register("dml")
class DML(Method):
    """Deep mutual learning (Zhang et al. 2018): K peers, all trained from scratch, each on
    CE + mean KL toward the others' predictions; one optimizer step per peer per batch.

    ``dml.update=simultaneous`` (official code): every peer's prediction comes from one forward
    pass on the batch and every peer steps on them. ``sequential`` (the paper's algorithm):
    peers step in turn (``teacher``, ``peer2`` …, ``student`` last), each against the others'
    predictions recomputed after the previous peer's step (those extra forwards leave BatchNorm
    running statistics untouched). ``student`` is the peer the report evaluates; ``teacher`` is
    built under ``kd.teacher_init`` (``teacher_arch``, ``teacher_width``), further peers from
    seed + 100·k.
    """

    official_rotation = True

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        if cfg.dml.peers < 2:
            raise FlatkdError(f"dml.peers must be ≥ 2, got {cfg.dml.peers}")
        names = _peer_names(cfg.dml.peers)
        mods, archs = {}, {}
        for i, name in enumerate(names):
            if name == "student":
                net, kw = make_net(cfg, cfg.seed, num_classes, mean, std)
            else:
                net, kw = make_net(cfg, teacher_seed(cfg) + PEER_SEED_STRIDE * (i - 1), num_classes,
                                   mean, std, cfg.teacher_arch, cfg.teacher_width)
            mods[name], archs[name] = net, kw
        return Networks(mods, {n: [n] for n in names}, archs)

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.peers = [n for n in _peer_names(cfg.dml.peers)]
        self.order = self.peers[1:] + ["student"]            # the reported peer steps last
        self._spec: BatchSpec | None = None
        self._logits: dict[str, torch.Tensor] = {}
        self._stepped: set[str] = set()

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update(p, p, spec) for p in self.order]

    def _batch(self, x) -> None:
        """Start of a new batch: forget the previous batch's predictions."""
        if self._spec is not self.update.spec:
            self._spec, self._logits, self._stepped = self.update.spec, {}, set()

    def loss(self, role, x, y):
        self._batch(x)
        nets = self.nets.modules
        if self.cfg.dml.update == "simultaneous":
            if not self._logits:
                self._logits = {p: nets[p](x) for p in self.peers}
            own = self._logits[role]
            others = [self._logits[p].detach() for p in self.peers if p != role]
        else:
            own = nets[role](x)
            others = []
            for p in self.peers:
                if p == role:
                    continue
                if p in self._stepped or p not in self._logits:      # (re)compute after a step
                    with bn_frozen(nets[p]), torch.no_grad():
                        self._logits[p] = nets[p](x)
                others.append(self._logits[p])
            self._stepped.add(role)
        total, ce, kl = dml_loss(own, others, y)
        key = "loss" if role == "student" else f"{role}_loss"
        return total, {key: total.item(), f"{role}_ce": ce.item(), f"{role}_kl": kl.item()}

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict:
        from ...accuracy import top1_accuracy
        return {f"{p}_test_acc": top1_accuracy(self.nets.modules[p], loader, device)
                for p in self.peers if p not in ("student", "teacher")}

    def options(self) -> dict:
        d = self.cfg.dml
        return {"peers": d.peers, "update": d.update, "teacher_init": self.cfg.kd.teacher_init}


@METHODS.register("spaced-dml")
class SpacedDML(SpacedSchedule, DML):
    """Spaced DML (flatkd's reading of App. A.3; the paper does not say which peer runs ahead):
    peer ``teacher`` trains ``s`` steps ahead on its DML loss against the *lagging*
    ``student`` (``dml.ahead_loss=ce``: cross-entropy only); then, frozen at φ_{t+s}, it
    teaches ``student``, which replays exactly those batches on CE + KL(p_teacher ‖ p_student).
    The lagging peer's predictions for the peer ahead use batch statistics without touching
    its running statistics (``dml.lagging_bn=batch``) or its running statistics (``eval``); the
    frozen peer's BatchNorm during replay follows ``spaced.teacher_bn``. s = 0 is ``dml``.
    """

    default_interval = 1.5
    advance = ("teacher", "ahead")
    replay = ("student", "replay")

    def __init__(self, cfg, nets, interval_steps):
        if cfg.dml.peers != 2 and interval_steps > 0:
            raise FlatkdError(f"spaced-dml runs two peers (one ahead, one replaying); "
                              f"got dml.peers={cfg.dml.peers}: set dml.peers=2")
        super().__init__(cfg, nets, interval_steps)

    def loss(self, role, x, y):
        nets = self.nets.modules
        if role == "ahead":
            own = nets["teacher"](x)
            if self.cfg.dml.ahead_loss == "ce":
                ce = F.cross_entropy(own, y)
                return ce, {"teacher_loss": ce.item()}
            lag = frozen_forward(nets["student"], x, self.cfg.dml.lagging_bn)
            total, ce, kl = dml_loss(own, [lag], y)
            return total, {"teacher_loss": total.item(), "teacher_kl": kl.item()}
        if role == "replay":
            target = frozen_forward(nets["teacher"], x, self.cfg.spaced.teacher_bn)
            total, ce, kl = dml_loss(nets["student"](x), [target], y)
            return total, {"loss": total.item(), "student_ce": ce.item(), "student_kl": kl.item()}
        return super().loss(role, x, y)

    def options(self) -> dict:
        d = self.cfg.dml
        return {**super().options(), "ahead_loss": d.ahead_loss, "lagging_bn": d.lagging_bn,
                "teacher_bn_during_replay": self.cfg.spaced.teacher_bn}


# ---------------------------------------------------------------------------- TSB
def accumulate(acc: torch.Tensor, count: torch.Tensor, p: torch.Tensor, beta: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal accumulator update A ← β·A + (1 − β)·p, n ← n + 1 (rows of samples in a batch;
    acc, p [..., N, C], count [N]). Returns the new (A, n)."""
    return beta * acc + (1 - beta) * p, count + 1


def fold(acc: torch.Tensor, count: torch.Tensor, beta: float) -> torch.Tensor:
    """Bias-corrected accumulator Â = A / (1 − β^n) (n ≥ 1 visits): a constant input p reads
    back as p after any number of updates (Adam-style correction)."""
    corr = 1 - beta ** count.to(acc.dtype)
    return acc / corr.unsqueeze(-1)


def integrate(folded: torch.Tensor, exclude: int | None = None) -> torch.Tensor:
    """Spatial integrator: the uniform average over peers of the folded accumulators
    ([K, N, C] → [N, C]); ``exclude``: leave that peer out (``tsb.integrate=others``)."""
    if exclude is None or folded.shape[0] == 1:
        return folded.mean(0)
    keep = [k for k in range(folded.shape[0]) if k != exclude]
    return folded[keep].mean(0)


@METHODS.register("tsb")
class TSB(Method):
    """Online KD by temporal-spatial boosting — flatkd's reading (Li, Wang & Qi, WACV 2022;
    no public code or formulas were found, so every choice below is an option or stated):

    * a peer group of ``tsb.peers`` networks (``peer0`` built under ``kd.teacher_init``,
      ``teacher_arch``/``teacher_width``; ``peer k`` from seed + 100·k) trains from scratch;
    * temporal accumulator: per peer and training sample (keyed by dataset index), an
      exponential average of the peer's softened predictions p = softmax(z/T) over its visits,
      A ← β·A + (1 − β)·p, read bias-corrected A / (1 − β^n);
    * spatial integrator: the uniform average of the peers' accumulators is the boosted target
      q (each peer's own target: all peers, or ``tsb.integrate=others``);
    * each peer steps on (1 − α)·CE + α·T²·KL(q ‖ softmax(z/T)) (kd.alpha, kd.temperature);
    * a separate student (same architecture, the run's seed) distils from q with the same
      objective — online: every step, from the peers' pre-update predictions folded into the
      accumulator ("w/ KD"). The student is what the report evaluates; peers are
      ``peer<k>_test_acc`` and their mean prediction ``group_test_acc``.

    The accumulator is checkpointed and restored bit-exactly.
    """

    official_rotation = True

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        t = cfg.tsb
        if t.peers < 1:
            raise FlatkdError(f"tsb.peers must be ≥ 1, got {t.peers}")
        if not 0 <= t.beta < 1:
            raise FlatkdError(f"tsb.beta must lie in [0, 1), got {t.beta}")
        student, s_kw = make_net(cfg, cfg.seed, num_classes, mean, std)
        mods, archs = {"student": student}, {"student": s_kw}
        for k in range(t.peers):
            net, kw = make_net(cfg, teacher_seed(cfg) + PEER_SEED_STRIDE * k, num_classes, mean,
                               std, cfg.teacher_arch, cfg.teacher_width)
            mods[f"peer{k}"], archs[f"peer{k}"] = net, kw
        return Networks(mods, {n: [n] for n in mods}, archs)

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.peers = [f"peer{k}" for k in range(cfg.tsb.peers)]
        self.num_classes = nets.modules["student"].fc.out_features \
            if hasattr(nets.modules["student"], "fc") else None
        self.acc: PerSampleBuffer | None = None
        self.count: PerSampleBuffer | None = None
        self._spec: BatchSpec | None = None
        self._logits: dict[str, torch.Tensor] = {}
        self._target: dict[str, torch.Tensor] = {}

    def _buffers(self, C: int, device) -> None:
        if self.acc is None:
            self.acc = PerSampleBuffer((len(self.peers),), (C,)).to(device)
            self.count = PerSampleBuffer((), (), dtype=torch.float64).to(device)

    def peer_updates(self, spec: BatchSpec) -> list[Update]:
        return [Update(p, p, spec) for p in self.peers]

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return self.peer_updates(spec) + [Update("student", "student", spec)]

    def _group_step(self, x) -> None:
        """First peer update of a batch: every peer's forward (with gradient), the accumulator
        update for the batch's samples, and the targets."""
        spec = self.update.spec
        if self._spec is spec:
            return
        T, beta = self.cfg.kd.temperature, self.cfg.tsb.beta
        logits = {p: self.nets.modules[p](x) for p in self.peers}
        probs = torch.stack([F.softmax(z.detach() / T, 1) for z in logits.values()])
        self._buffers(probs.shape[-1], probs.device)
        idx = list(spec.indices)
        prior = self.acc.get(idx), self.count.get(idx)
        self.visited(spec, *prior)
        acc, n = accumulate(*prior, probs, beta)
        self.acc.set(idx, acc)
        self.count.set(idx, n)
        folded = fold(acc, n, beta)
        others = self.cfg.tsb.integrate == "others"
        self._target = {p: integrate(folded, k if others else None) for k, p in enumerate(self.peers)}
        self._target["student"] = integrate(folded)
        self._spec, self._logits = spec, logits

    def visited(self, spec: BatchSpec, acc: torch.Tensor, count: torch.Tensor) -> None:
        """Called with the accumulator of ``spec``'s samples as it was before the peer group's
        visit is written ([peers, N, C], [N]); online TSB needs nothing of it."""

    def _objective(self, z, y, q):
        kd = self.cfg.kd
        ce = F.cross_entropy(z, y)
        soft = kd_kl_prob(z, q, kd.temperature)
        return (1 - kd.alpha) * ce + kd.alpha * soft, ce, soft

    def loss(self, role, x, y):
        if role in self.peers:
            self._group_step(x)
            total, ce, soft = self._objective(self._logits[role], y, self._target[role])
            return total, {f"{role}_loss": total.item(), f"{role}_kd": soft.item()}
        if role == "student":
            self._group_step(x)           # no-op unless the student runs alone on a batch
            q = self._target["student"]
        else:
            q = self.replay_target(x)
        total, ce, soft = self._objective(self.nets.modules["student"](x), y, q)
        return total, {"loss": total.item(), "ce": ce.item(), "kd": soft.item()}

    def replay_target(self, x) -> torch.Tensor:
        raise FlatkdError(f"unknown role for {self.cfg.method}")

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict:
        nets = [self.nets.modules[p] for p in self.peers]
        was = [n.training for n in nets]
        for n in nets:
            n.eval()
        correct, total = [0] * (len(nets) + 1), 0
        for x, y in loader:
            logits = [n(x.to(device)) for n in nets]
            preds = [z.argmax(1).cpu() for z in logits]
            preds.append(torch.stack([F.softmax(z, 1) for z in logits]).mean(0).argmax(1).cpu())
            correct = [c + int((p == y).sum()) for c, p in zip(correct, preds)]
            total += len(y)
        for n, w in zip(nets, was):
            n.train(w)
        row = {f"{p}_test_acc": c / total for p, c in zip(self.peers, correct)}
        row["group_test_acc"] = correct[-1] / total
        return row

    def state_dict(self) -> dict:
        st = super().state_dict()
        if self.acc is not None:
            st["accumulator"], st["visits"] = self.acc.state(), self.count.state()
        return st

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "accumulator" in state:
            acc = torch.as_tensor(state["accumulator"])
            device = next(self.nets.modules["student"].parameters()).device
            self._buffers(acc.shape[-1], device)
            self.acc.load(acc)
            self.count.load(state["visits"])

    def options(self) -> dict:
        t = self.cfg.tsb
        return {"reading": "flatkd (no public TSB code)", "peers": t.peers, "beta": t.beta,
                "integrate": t.integrate, "teacher_init": self.cfg.kd.teacher_init}


@METHODS.register("spaced-tsb")
class SpacedTSB(SpacedSchedule, TSB):
    """Spaced TSB ("w/ Ours", Table 4): the peer group (with its accumulator) trains ``s``
    steps ahead on B_t … B_{t+s−1}; then, frozen at φ_{t+s}, it teaches the student on exactly
    those batches. Each visit of a sample is counted once: online TSB's student target for B_t
    folds the peers' current predictions into the accumulator A_prev as it stood before B_t's
    visit; the replay target folds the *frozen* peers' predictions p into that same A_prev
    (kept from the advance step until the replay): q = mean_k (β·A_prev,k + (1 − β)·p_k) /
    (1 − β^{n_prev+1}). (Folding p into the accumulator after the advance step had written
    B_t's visit counted the interval twice.) BatchNorm of the frozen peers follows
    ``spaced.teacher_bn``. s = 0 is tsb.
    """

    default_interval = 1.5
    replay = ("student", "replay")

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.prior: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # step → (A, n) before

    def advance_updates(self, spec: BatchSpec) -> list[Update]:
        return self.peer_updates(spec)

    def visited(self, spec: BatchSpec, acc: torch.Tensor, count: torch.Tensor) -> None:
        if self.interval_steps and self.spacing_on(spec):     # a batch the student will replay
            self.prior[spec.step] = (acc, count)

    def finish(self) -> list[Update]:
        updates = super().finish()
        if not updates:                                # the leftover was dropped: no replay
            self.prior.clear()
        return updates

    def replay_target(self, x) -> torch.Tensor:
        T, beta = self.cfg.kd.temperature, self.cfg.tsb.beta
        bn = self.cfg.spaced.teacher_bn
        probs = torch.stack([F.softmax(frozen_forward(self.nets.modules[p], x, bn) / T, 1)
                             for p in self.peers])
        acc, n = accumulate(*self.prior.pop(self.update.spec.step), probs, beta)
        return integrate(fold(acc, n, beta))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "accumulator_before_visit": {
            str(step): [a.detach().cpu().clone(), n.detach().cpu().clone()]
            for step, (a, n) in self.prior.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        device = next(self.nets.modules["student"].parameters()).device
        self.prior = {int(step): (torch.as_tensor(a).to(device), torch.as_tensor(n).to(device))
                      for step, (a, n) in state.get("accumulator_before_visit", {}).items()}

    def options(self) -> dict:
        return {**super().options(), "teacher_bn_during_replay": self.cfg.spaced.teacher_bn}
