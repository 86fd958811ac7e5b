"""Self KD with BYOT exits (paper Alg. 3, Eq. 4) and spaced self KD (paper Alg. 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import models
from ..batches import BatchSpec
from ..config import TrainConfig
from ..losses import feature_loss, feature_loss_name, soft_loss
from .base import Method, Networks, Update
from .online import _arch_kwargs
from .registry import METHODS
from .seeding import seeded
from .spacing import SpacedSchedule


def feature_exits(num_exits: int, rule: str) -> list[int]:
    """Shallow exits (1 = next to the deepest, …, num_exits−1 = shallowest) with a feature term.

    ``code``: BYOT's official code skips exit 1 (``if index != 1``) despite its comment;
    ``all``: every shallow exit.
    """
    return [i for i in range(1, num_exits) if rule == "all" or i != 1]


@METHODS.register("self")
class SelfKD(Method):
    """Deepest exit = teacher, shallower exits = students, one network, one optimizer.

    L = CE(z_0, y) + Σ_{i≥1} [α·soft(z_i, z_0.detach(), T) + (1−α)·CE(z_i, y)]
        + β·Σ_{i ∈ feature_exits} ‖adapt_i(h_i) − h_0.detach()‖   (BYOT; α=0.3, T=3, β=0.03)
    """

    augment_family = "self"

    @classmethod
    def build(cls, cfg: TrainConfig, num_classes: int, mean, std) -> Networks:
        kw = _arch_kwargs(cfg.arch, num_classes, mean, std, multi_exit=True, cfg=cfg)
        net = seeded(cfg.seed, lambda: models.create(**kw))
        return Networks({"student": net}, {"student": ["student"]}, {"student": kw})

    def __init__(self, cfg, nets, interval_steps):
        super().__init__(cfg, nets, interval_steps)
        self.soft = soft_loss(cfg.selfkd.loss, faithful=False)
        net = nets.modules["student"]
        self.feature_exits = feature_exits(net.num_exits, cfg.selfkd.feature_exits)
        self.feature = feature_loss(cfg.kd.feature_loss, cfg.kd.faithful)

    def schedule(self, spec: BatchSpec) -> list[Update]:
        return [Update("student", "self", spec)]

    def loss(self, role, x, y):
        return self_distillation_loss(self.nets.modules["student"], x, y, self.cfg, self.soft,
                                      self.feature_exits, self.feature)

    @torch.no_grad()
    def test_metrics(self, loader, device) -> dict[str, float]:
        """Top-1 accuracy of every shallow exit (``exit_<k>_test_acc``, k = 1 next to the deepest)
        and of the exit ensemble (``ensemble_test_acc``: arg-max of the mean of all exits'
        logits, as BYOT's validation reports it); the deepest exit is ``student_test_acc``."""
        net = self.nets.modules["student"]
        was_training = net.training
        net.eval()
        correct, total = [0] * (net.num_exits + 1), 0
        for x, y in loader:
            logits = net.forward_exits(x.to(device))[0]
            preds = [z.argmax(1).cpu() for z in logits] + [torch.stack(logits).mean(0).argmax(1).cpu()]
            correct = [c + int((p == y).sum()) for c, p in zip(correct, preds)]
            total += len(y)
        net.train(was_training)
        row = {f"exit_{k}_test_acc": correct[k] / total for k in range(1, net.num_exits)}
        row["ensemble_test_acc"] = correct[-1] / total
        return row

    def options(self) -> dict:
        return {"kd_loss": self.cfg.selfkd.loss, "feature_exits": self.feature_exits,
                "feature_loss": feature_loss_name(self.cfg.kd.feature_loss, self.cfg.kd.faithful),
                "deep_forward": self.cfg.selfkd.deep_forward}


def self_distillation_loss(net, x, y, cfg: TrainConfig, soft, feat_exits: list[int], feature):
    """The BYOT objective above (``feature``: a registered feature loss); returns (total, logs)."""
    sk = cfg.selfkd
    logits, feats = net.forward_exits(x)
    ce_deep = F.cross_entropy(logits[0], y)
    t_logits, t_feat = logits[0].detach(), feats[0].detach()
    total, logs = ce_deep, {"ce_deep": ce_deep.item()}
    for i in range(1, len(logits)):
        kd = soft(logits[i], t_logits, cfg.kd.temperature)
        ce = F.cross_entropy(logits[i], y)
        total = total + sk.alpha * kd + (1 - sk.alpha) * ce
        logs[f"kd_{i}"], logs[f"ce_{i}"] = kd.item(), ce.item()
        if i in feat_exits:
            feat = feature(net.adapt(i, feats[i]), t_feat)
            total = total + sk.feature_weight * feat
            logs[f"feat_{i}"] = feat.item()
    logs["loss"] = total.item()
    return total, logs


@METHODS.register("spaced-self")
class SpacedSelfKD(SpacedSchedule, SelfKD):
    """Paper Alg. 4: between replays only the deep path trains, on CE; when ``s`` steps have been
    buffered the network replays those batches with the full self-KD loss. This takes extra
    optimizer steps (recorded in the checkpoint next to accuracy)."""

    default_interval = 4.0
    advance = ("student", "deep")
    replay = ("student", "self")

    def loss(self, role, x, y):
        if role == "deep":
            net = self.nets.modules["student"]
            # full: every exit runs (their BN statistics update) as in the official code; only
            # the deepest exit's CE is back-propagated. backbone: the deep path alone.
            logits = net.forward_exits(x)[0][0] if self.cfg.selfkd.deep_forward == "full" else net(x)
            loss = F.cross_entropy(logits, y)
            return loss, {"ce_deep": loss.item(), "loss": loss.item()}
        return super().loss(role, x, y)
