"""StableKD ("StableKD: Breaking Inter-block Optimization Entanglement") and its Table 4 ablation.

Teacher T (a pretrained flatkd checkpoint, frozen, eval mode) and student S are split into the
same k blocks (:func:`flatkd.models.blocks.split`; a ResNet: the stem with the first stage, one
block per later stage, the classifier). The blocks are partitioned into consecutive *groups*.

* **Decomposition** (Eq. 4–8): a group of blocks a … b is fed the teacher's output of block
  a − 1 (the image for a = 1) and runs the student's blocks a … b; a group ending before the
  classifier is trained on MSE(S-output, T-output of block b) (Eq. 6, 7), the last group on
  CE + λ·KL (Eq. 4, 5), its prediction computed from the teacher's preceding features. Every
  group trains at once on the sum (Eq. 8); since each group's input is a detached teacher
  feature, a group's loss reaches only its own blocks.
* **Recomposition** R (Definition 1): groups (1, 2), (3, 4), … merge, ⌈g/2⌉ groups remain
  (k = 5: 5 → 3 → 2 → 1; k = 4: 4 → 2 → 1). StableKD-k/n runs n + 1 stages, stage c with the
  groups after c recompositions, for ``stablekd.stage_epochs`` epochs each (default the paper's
  ⌊e/(n+1)⌋ each, the rest to the last). A single group is vanilla KD: CE + λ·KL end to end.
* **Width mismatch** (Table 6): where the student's channels at block boundary i differ from
  the teacher's, a 1×1 convolution P_i (training only, never part of the evaluated student)
  (+ BatchNorm + ReLU: normalised and non-negative like a stage output, so the target's scale
  cannot drift) maps the teacher's output T_i to the student's width. P_i(T_i) is the next
  group's input and — detached — the target of the student block's MSE, so block i learns to emit what
  block i + 1 is trained to consume and the blocks chain at inference (a projector on the
  student's side instead would leave block i + 1 trained on inputs block i never produces).
  P_i learns only through the groups it feeds.

``kd-mse`` (Table 4, "KD + MSE"): the ablation without independence — the student runs end to
end on its own features, with an MSE on every block output plus CE + λ·KL; under a width
mismatch the student's output passes a 1×1 regressor to the teacher's width (FitNets-style),
since there the projector feeds nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FlatkdError
from ...models.blocks import Block, natural_count, split
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import kd_kl
from .frozen import FrozenTeacher
from .online import PROJECTOR_SEED_OFFSET
from .registry import METHODS
from .seeding import seeded

Groups = list[tuple[int, ...]]


def recompose(groups: Groups) -> Groups:
    """Definition 1: merge groups (i, i + 1) for every odd i ≤ g − 1 (1-based); an odd last
    group stays alone. [(1,), (2,), (3,), (4,), (5,)] → [(1, 2), (3, 4), (5,)]."""
    return [sum(groups[i:i + 2], ()) for i in range(0, len(groups), 2)]


def layout(k: int, n: int) -> list[Groups]:
    """The groups of each of the n + 1 stages of StableKD-k/n: stage 0 has k single blocks,
    stage c the result of c recompositions."""
    stages = [[(i,) for i in range(1, k + 1)]]
    for _ in range(n):
        stages.append(recompose(stages[-1]))
    return stages


def last_group_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, lam: float,
                    T: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4 + 5 (the last group's part of Eq. 8): (total, ce, kl) with total = CE(s, y) +
    λ·T²·KL(softmax(t/T) ‖ softmax(s/T)), batch means; logits s, t [N, C], labels y [N].
    Against Eq. 3's vanilla KD (1 − α)·CE + α·KL it is (1 + λ)× that loss at α = λ/(1 + λ)."""
    ce = F.cross_entropy(s, y)
    kl = kd_kl(s, t.detach(), T)
    return ce + lam * kl, ce, kl


def block_mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 6 / 7: mean over all elements of (s − t)² for a student block's output s and the
    teacher block's output t (both [N, C, H, W], mapped to one width), t detached."""
    return F.mse_loss(s, t.detach())


def conv1x1(c_in: int, c_out: int, activation: bool) -> nn.Module:
    """The Table 6 projector: a 1×1 convolution c_in → c_out; with ``activation`` followed by
    BatchNorm and ReLU, so its output is normalised and non-negative like a stage's output."""
    if not activation:
        return nn.Conv2d(c_in, c_out, 1)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Adapters(nn.Module):
    """A 1×1 convolution per block boundary i whose widths differ: ``to_student`` = True maps
    the teacher's output to the student's width (StableKD), False the student's output to the
    teacher's (kd-mse's regressor); ``map(i, x)`` applies it (identity at equal widths)."""

    def __init__(self, student: list[Block], teacher: list[Block], to_student: bool):
        super().__init__()
        self.maps = nn.ModuleDict()
        for s, t in zip(student[:-1], teacher[:-1]):
            if s.channels != t.channels:
                c_in, c_out = (t.channels, s.channels) if to_student else (s.channels, t.channels)
                self.maps[f"p{s.index}"] = conv1x1(c_in, c_out, activation=to_student)

    def map(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.maps[f"p{i}"](x) if f"p{i}" in self.maps else x

    def describe(self) -> dict:
        convs = {name: next(c for c in m.modules() if isinstance(c, nn.Conv2d))
                 for name, m in self.maps.items()}
        return {name: f"1x1 conv {c.in_channels}->{c.out_channels}"
                + (" + BN + ReLU" if len(self.maps[name]._modules) else "")
                for name, c in convs.items()}


def block_count(cfg: TrainConfig, student: nn.Module, teacher: nn.Module) -> int:
    """k: ``stablekd.blocks`` or the architecture's own count; student and teacher must split
    into the same units."""
    n_s, n_t = natural_count(student), natural_count(teacher)
    if n_s != n_t:
        raise FlatkdError(f"StableKD pairs blocks: the student {cfg.arch} has {n_s - 1} stages, "
                          f"the teacher {n_t - 1}; use a teacher with {n_s - 1} stages (e.g. "
                          f"{cfg.arch} with teacher_width=2)")
    k = cfg.stablekd.blocks or n_s
    if k > n_s:
        raise FlatkdError(f"stablekd.blocks={k}: {cfg.arch} splits into at most {n_s} blocks; "
                          f"valid: 1 … {n_s}")
    return k


@METHODS.register("stablekd")
class StableKD(FrozenTeacher):
    """StableKD-k/n (Alg. 1): decomposition into k blocks, n recompositions, a frozen pretrained
    teacher (``teacher_ckpt``). The paper's recipe: ``optim.schedule=triangular2`` (one lr cycle
    per stage), max lr 0.5, batch 128, weight decay 5e-4 (``presets/paper/stablekd-*.yaml``)."""

    @classmethod
    def stages(cls, cfg: TrainConfig) -> int:
        return len(cls.stage_epochs(cfg))

    @classmethod
    def stage_epochs(cls, cfg: TrainConfig) -> list[int]:
        n, e, given = cfg.stablekd.recompositions, cfg.epochs, cfg.stablekd.stage_epochs
        if given is None:
            lengths = [e // (n + 1)] * n + [e - n * (e // (n + 1))]
        elif len(given) != n + 1 or sum(given) != e:
            raise FlatkdError(f"stablekd.stage_epochs={given} must list {n + 1} stages "
                              f"(recompositions + 1) summing to epochs={e}")
        else:
            lengths = list(given)
        if min(lengths) < 1:
            raise FlatkdError(f"StableKD-k/{n} over {e} epochs gives stages of {lengths} epochs; "
                              f"every stage needs ≥ 1: use epochs ≥ {n + 1}, fewer "
                              "recompositions, or set stablekd.stage_epochs")
        return lengths

    to_student: bool = True          # projectors map teacher features to the student's width

    @classmethod
    def extra(cls, cfg: TrainConfig, student, teacher) -> dict:
        k = block_count(cfg, student, teacher)
        return {"projector": seeded(cfg.seed + PROJECTOR_SEED_OFFSET, lambda: Adapters(
            split(student, k), split(teacher, k), cls.to_student))}

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        mods = nets.modules
        self.k = block_count(cfg, mods["student"], mods["teacher"])
        self.s_blocks, self.t_blocks = split(mods["student"], self.k), split(mods["teacher"], self.k)
        self.stages_groups = self.layout(cfg, self.k)

    @classmethod
    def layout(cls, cfg: TrainConfig, k: int) -> list[Groups]:
        """The groups of each stage."""
        return layout(k, cfg.stablekd.recompositions)

    def aligned(self, groups: Groups) -> set[int]:
        """Blocks whose output carries an MSE term: each group's last block (decomposition)."""
        return {g[-1] for g in groups}

    def groups_of(self, spec: BatchSpec) -> Groups:
        return self.stages_groups[self.stage_of(spec)]

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x, T-block 1 output, …, T-block k output (logits)], teacher in eval mode."""
        teacher = self.nets.modules["teacher"]
        was = teacher.training
        teacher.eval()
        outs = [x]
        for block in self.t_blocks:
            outs.append(block.run(outs[-1]))
        teacher.train(was)
        return outs

    def mse_pair(self, i: int, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(student side, target) of block i's MSE at one width: the projected teacher output
        is both the next group's input and, detached, the target."""
        return s, self.nets.modules["projector"].map(i, t)

    def group_losses(self, x: torch.Tensor, y: torch.Tensor, groups: Groups
                     ) -> tuple[list[torch.Tensor], dict]:
        """Eq. 8 split by group: each group's loss (a list, in order) and float logs."""
        projector = self.nets.modules["projector"]
        t_out = self.teacher_outputs(x)
        aligned, sk = self.aligned(groups), self.cfg.stablekd
        terms, logs = [], {}
        for group in groups:
            a = group[0]
            h = x if a == 1 else projector.map(a - 1, t_out[a - 1])
            term = h.new_zeros(())
            for i in group:
                h = self.s_blocks[i - 1].run(h)
                if i == self.k:
                    total, ce, kl = last_group_loss(h, t_out[i], y, sk.kl_weight, sk.temperature)
                    term = term + total
                    logs |= {"ce": ce.item(), "kd": kl.item()}
                elif i in aligned:
                    mse = block_mse(*self.mse_pair(i, h, t_out[i]))
                    term = term + mse
                    logs[f"mse{i}"] = mse.item()
            terms.append(term)
        return terms, logs

    def loss(self, role, x, y):
        groups = self.groups_of(self.update.spec)
        terms, logs = self.group_losses(x, y, groups)
        total = torch.stack(terms).sum()
        return total, {"loss": total.item(), **logs}

    def test_metrics(self, loader, device) -> dict:
        """metrics.csv columns: the stage (0-based) the epoch trained in and its group count."""
        stage = self.stage_of(self.update.spec)
        return {"stage": stage, "groups": len(self.stages_groups[stage])}

    def options(self) -> dict:
        cfg, sk = self.cfg, self.cfg.stablekd
        lengths = self.stage_epochs(cfg)
        o = cfg.optim
        peaks = [o.lr * 0.5 ** c if o.schedule == "triangular2" else o.lr for c in range(len(lengths))]
        return {"blocks": self.k, "recompositions": sk.recompositions,
                "stage_epochs": lengths,
                "stage_first_epoch": [1 + sum(lengths[:c]) for c in range(len(lengths))],
                "groups": [[list(g) for g in gs] for gs in self.stages_groups],
                "stage_lr": {"schedule": o.schedule, "peak": peaks, "floor": o.min_lr},
                "kl_weight": sk.kl_weight, "temperature": sk.temperature,
                "projectors": self.nets.modules["projector"].describe(),
                "teacher": self.teacher_source()}


@METHODS.register("kd-mse")
class FeatureAlignedKD(StableKD):
    """Table 4's "KD + MSE": vanilla KD plus the MSE on every block output (through the same
    projectors), trained end to end — the student's blocks take the student's own features.
    Loss CE + λ·KL + Σ_{i<k} MSE(R_i(S_i), T_i), R_i a 1×1 regressor to the teacher's width
    where widths differ; one stage of ``epochs``."""

    to_student = False

    def mse_pair(self, i, s, t):
        return self.nets.modules["projector"].map(i, s), t

    @classmethod
    def stage_epochs(cls, cfg: TrainConfig) -> list[int]:
        return [cfg.epochs]

    @classmethod
    def layout(cls, cfg: TrainConfig, k: int) -> list[Groups]:
        return [[tuple(range(1, k + 1))]]

    def aligned(self, groups: Groups) -> set[int]:
        return set(range(1, self.k))

    def options(self) -> dict:
        opts = super().options()
        for key in ("recompositions", "stage_first_epoch"):
            opts.pop(key)
        return opts
