"""Self-KD teachers combined with (spaced) online KD, paper App. A.3: PS-KD and DLB.

A.3: "we initiate a student network identical to the teacher. We train the teacher model
utilizing PSKD or DLB, and the student model is trained either online or in a spaced style";
w/o KD = the teacher (``pskd``, ``dlb``: the self-distilled network alone), w/ KD = the online
student (``online-pskd``, ``online-dlb``), w/ Ours = the spaced student (``spaced-pskd``,
``spaced-dlb``). The student's loss is the online-KD objective (paper Eq. 2 + feature term,
kd.alpha, kd.temperature, kd.feature_weight) against the teacher's pre-update outputs (online)
or its frozen state s steps ahead (spaced), on the same batches.

Pure losses (logits [N, C], labels [N]):

* :func:`pskd_alpha`, :func:`pskd_target`, :func:`pskd_loss` — Kim et al., ICCV 2021, Eq. 6–8.
* :func:`dlb_loss` — Shen et al., CVPR 2022, Eq. 3–5.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import FlatkdError
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import kd_kl
from .base import Method, Networks, Update
from .kdutil import PerSampleBuffer, make_net, soft_ce
from .online import OnlineKD, SpacedOnlineKD
from .registry import METHODS


# ---------------------------------------------------------------------------- PS-KD
def pskd_alpha(epoch0: int, epochs: int, alpha_T: float = 0.8) -> float:
    """α_e = α_T·(e + 1)/E for 0-based epoch e of E (PS-KD: α grows linearly to α_T)."""
    return alpha_T * (epoch0 + 1) / epochs


def pskd_target(onehot: torch.Tensor, previous: torch.Tensor, alpha: float) -> torch.Tensor:
    """q = (1 − α)·onehot(y) + α·P[idx], P = the network's predictions of the previous epoch."""
    return (1 - alpha) * onehot + alpha * previous


def pskd_loss(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """−Σ_c q_c log softmax(z)_c, batch mean (T = 1)."""
    return soft_ce(z, q)


class PSKDTeacher:
    """Mixin: the network ``self.pskd_net`` trains on PS-KD's progressive targets.

    Buffer P (one row per training sample, keyed by dataset index) holds the network's softmax
    prediction from its previous visit; a sample not yet visited reads its one-hot label
    (PS-KD fills P with one-hot labels during epoch 0). Order per step: read P[idx], build the
    target, forward, then write P[idx] ← softmax(z) of this forward (detached). Placed before
    the host method in the bases, it also creates, saves and restores the buffer around the
    host's own state.
    """

    pskd_net: str

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.pskd_init()

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.pskd_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pskd_load(state)

    def pskd_init(self) -> None:
        self.predictions: PerSampleBuffer | None = None
        self.visited: PerSampleBuffer | None = None

    def pskd_step(self, x, y) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(loss, logits, logs) of one PS-KD step on batch ``self.update``."""
        spec = self.update.spec
        net = self.nets.modules[self.pskd_net]
        logits, feat = net.forward_features(x)
        C = logits.shape[1]
        if self.predictions is None:
            self.predictions = PerSampleBuffer((), (C,)).to(logits.device)
            self.visited = PerSampleBuffer((), ()).to(logits.device)
        idx = list(spec.indices)
        onehot = F.one_hot(y, C).to(logits.dtype)
        seen = self.visited.get(idx).bool().unsqueeze(1)
        previous = torch.where(seen, self.predictions.get(idx), onehot)
        alpha = pskd_alpha(spec.epoch - 1, self.cfg.epochs, self.cfg.pskd.alpha_T)
        loss = pskd_loss(logits, pskd_target(onehot, previous, alpha))
        self.predictions.set(idx, F.softmax(logits.detach(), 1))
        self.visited.set(idx, torch.ones(len(idx)))
        self._pskd_feat = feat
        return loss, logits, {"pskd_alpha": alpha}

    def pskd_state(self) -> dict:
        if self.predictions is None:
            return {}
        return {"pskd_predictions": self.predictions.state(), "pskd_visited": self.visited.state()}

    def pskd_load(self, state: dict) -> None:
        if "pskd_predictions" in state:
            device = next(self.nets.modules[self.pskd_net].parameters()).device
            p = torch.as_tensor(state["pskd_predictions"])
            self.predictions = PerSampleBuffer((), (p.shape[-1],)).to(device)
            self.visited = PerSampleBuffer((), ()).to(device)
            self.predictions.load(p)
            self.visited.load(state["pskd_visited"])


@METHODS.register("pskd")
class PSKD(PSKDTeacher, Method):
    """Progressive self-knowledge distillation (Kim et al. 2021) of one network: CE toward
    (1 − α_e)·onehot + α_e·(its own prediction from the previous epoch), α_e = α_T·(e+1)/E
    (``pskd.alpha_T``). The A.3 "w/o KD" column for PS-KD."""

    pskd_net = "student"

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        net, kw = make_net(cfg, cfg.seed, num_classes, mean, std)
        return Networks({"student": net}, {"student": ["student"]}, {"student": kw})

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update("student", "student", spec)]

    def loss(self, role, x, y):
        loss, _, logs = self.pskd_step(x, y)
        return loss, {"loss": loss.item(), **logs}

    def options(self) -> dict:
        return {"alpha_T": self.cfg.pskd.alpha_T}


@METHODS.register("online-pskd")
class OnlinePSKD(PSKDTeacher, OnlineKD):
    """A.3 "w/ KD" for PS-KD: the teacher trains with PS-KD while a student (identical
    architecture) distils from its pre-update outputs every step (online KD, Alg. 1)."""

    pskd_net = "teacher"

    def loss(self, role, x, y):
        if role != "teacher":
            return super().loss(role, x, y)
        loss, logits, logs = self.pskd_step(x, y)
        self._teacher_out = (logits.detach(), self._pskd_feat.detach())
        return loss, {"teacher_loss": loss.item(), **logs}

    def options(self) -> dict:
        return {**super().options(), "teacher_objective": "pskd", "alpha_T": self.cfg.pskd.alpha_T}


@METHODS.register("spaced-pskd")
class SpacedPSKD(SpacedOnlineKD, OnlinePSKD):
    """A.3 "w/ Ours" for PS-KD: the PS-KD teacher trains ``s`` steps ahead; frozen, it teaches
    the student on exactly those batches (Alg. 2). s = 0 is online-pskd."""


# ---------------------------------------------------------------------------- DLB
def dlb_loss(prev_now: torch.Tensor, prev_then: torch.Tensor, cur: torch.Tensor,
             y_prev: torch.Tensor, y_cur: torch.Tensor, T: float, alpha: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DLB's objective on the rows of the last batch (``prev_now``: their logits now, another
    augmented view) and the new batch (``cur``):
    CE([prev_now; cur], [y_prev; y_cur]) (mean over all rows) + α·T²·KL(softmax(prev_then/T) ‖
    softmax(prev_now/T)) (batch mean over the last batch), ``prev_then`` = the logits of the
    last batch at the previous iteration (a constant). Returns (total, ce, consistency)."""
    ce = F.cross_entropy(torch.cat([prev_now, cur]), torch.cat([y_prev, y_cur]))
    kd = kd_kl(prev_now, prev_then.detach(), T)
    return ce + alpha * kd, ce, kd


def pair_spec(prev: BatchSpec | None, cur: BatchSpec) -> tuple[BatchSpec, int]:
    """The batch DLB trains on at ``cur``: the previous batch's samples, then ``cur``'s — and
    how many rows come first. ``cur``'s samples keep their own augmentation seeds (the pixels
    every other network sees at this step); the previous samples get other draws (seeds
    cur.seed − n_prev … cur.seed − 1, used by no other batch): DLB's second augmented view."""
    if prev is None:
        return cur, 0
    n = len(prev.indices)
    return BatchSpec(cur.step, cur.epoch, tuple(prev.indices) + tuple(cur.indices), cur.seed - n), n


class DLBTeacher:
    """Mixin: the network ``self.dlb_net`` trains with DLB. Half of each of its batches repeats
    the previous iteration's samples (another augmentation) and is distilled toward the soft
    predictions made for them at the previous iteration; the pairing carries over epoch
    boundaries and is checkpointed (previous batch spec + its logits) around the host method's
    own state (place the mixin before the host in the bases)."""

    dlb_net: str

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.dlb_init()

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.dlb_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.dlb_load(state)

    def dlb_init(self) -> None:
        self.prev_spec: BatchSpec | None = None
        self.prev_logits: torch.Tensor | None = None
        self._pairs: dict[int, tuple[BatchSpec, int]] = {}

    def dlb_update(self, optimizer: str, role: str, spec: BatchSpec) -> Update:
        """The update of the DLB network for incoming batch ``spec`` (on the paired batch)."""
        paired, n_prev = pair_spec(self.prev_spec, spec)
        self._pairs[id(paired)] = (spec, n_prev)
        return Update(optimizer, role, paired)

    def dlb_step(self, x, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """(loss, logits of the new batch, its pooled features, logs)."""
        cur_spec, n_prev = self._pairs.pop(id(self.update.spec))
        net = self.nets.modules[self.dlb_net]
        logits, feat = net.forward_features(x)
        c = self.cfg.dlb
        if n_prev:
            loss, ce, kd = dlb_loss(logits[:n_prev], self.prev_logits.to(logits.device),
                                    logits[n_prev:], y[:n_prev], y[n_prev:], c.temperature, c.alpha)
            logs = {"dlb_ce": ce.item(), "dlb_kd": kd.item()}
        else:
            loss, logs = F.cross_entropy(logits, y), {}          # first step: no last batch
        self.prev_spec, self.prev_logits = cur_spec, logits[n_prev:].detach().clone()
        return loss, logits[n_prev:], feat[n_prev:], logs

    def dlb_state(self) -> dict:
        if self.prev_spec is None:
            return {}
        return {"dlb_prev_spec": self.prev_spec.to_plain(),
                "dlb_prev_logits": self.prev_logits.detach().cpu().clone()}

    def dlb_load(self, state: dict) -> None:
        if "dlb_prev_spec" in state:
            self.prev_spec = BatchSpec.from_plain(state["dlb_prev_spec"])
            device = next(self.nets.modules[self.dlb_net].parameters()).device
            self.prev_logits = torch.as_tensor(state["dlb_prev_logits"]).to(device)


def _check_dlb(cfg: TrainConfig) -> None:
    c = cfg.dlb
    if not (c.temperature > 0 and c.alpha >= 0):
        raise FlatkdError(f"dlb.temperature must be > 0 and dlb.alpha ≥ 0, got {c.temperature}, {c.alpha}")


@METHODS.register("dlb")
class DLB(DLBTeacher, Method):
    """Self-distillation from the last mini-batch (Shen et al. 2022) of one network: every
    step trains on [previous batch (second view); new batch] with CE on all rows + α·T²·KL
    from the previous batch's logits of the last iteration (``dlb.temperature``, ``dlb.alpha``).
    Costs about two CE steps (2B images forward and backward). The A.3 "w/o KD" column.

    T and α are required arguments of DLB's official script with no defaults, and the paper's
    values could not be checked here; the defaults T = 3, α = 1 are those third-party runs of
    the official script use on CIFAR-100 (options, recorded)."""

    dlb_net = "student"

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        _check_dlb(cfg)
        net, kw = make_net(cfg, cfg.seed, num_classes, mean, std)
        return Networks({"student": net}, {"student": ["student"]}, {"student": kw})

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [self.dlb_update("student", "student", spec)]

    def loss(self, role, x, y):
        loss, _, _, logs = self.dlb_step(x, y)
        return loss, {"loss": loss.item(), **logs}

    def options(self) -> dict:
        return {"temperature": self.cfg.dlb.temperature, "alpha": self.cfg.dlb.alpha}


@METHODS.register("online-dlb")
class OnlineDLB(DLBTeacher, OnlineKD):
    """A.3 "w/ KD" for DLB: the teacher trains with DLB while a student (identical
    architecture) distils every step from the teacher's pre-update outputs on the new half of
    the teacher's batch — the same samples and pixels the student trains on."""

    dlb_net = "teacher"

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        _check_dlb(cfg)
        return super().build(cfg, num_classes, mean, std)

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [self.dlb_update("teacher", "teacher", spec), Update("student", "student", spec)]

    def loss(self, role, x, y):
        if role != "teacher":
            return super().loss(role, x, y)
        loss, logits, feat, logs = self.dlb_step(x, y)
        self._teacher_out = (logits.detach(), feat.detach())
        return loss, {"teacher_loss": loss.item(), **logs}

    def options(self) -> dict:
        return {**super().options(), "teacher_objective": "dlb",
                "dlb_temperature": self.cfg.dlb.temperature, "dlb_alpha": self.cfg.dlb.alpha}


@METHODS.register("spaced-dlb")
class SpacedDLB(SpacedOnlineKD, OnlineDLB):
    """A.3 "w/ Ours" for DLB: the DLB teacher trains ``s`` steps ahead; frozen, it teaches the
    student on exactly those batches (the new halves, same pixels). s = 0 is online-dlb."""

    def advance_updates(self, spec: BatchSpec) -> list[Update]:
        return [self.dlb_update("teacher", "teacher", spec)]
