"""Linear mode connectivity: loss and accuracy along θ(t) = (1 − t)·θ_A + t·θ_B, t ∈ [0, 1].

BatchNorm: interpolated weights do not match either end's running statistics, so by default
(``recompute``) they are recomputed at every point of the path over the first ``bn_samples``
training samples (:func:`flatkd.batchnorm.recalibrate_on`, the procedure of flatkd eval's
``bn=recalibrate``), then eval mode for the measurement (the endpoints are treated the same
way, so the path is consistent from end to end). ``interpolate`` interpolates the running
statistics like the weights instead.

Barrier heights (Frankle et al. 2020; Entezari et al. 2022): loss barrier
max_t [L(θ(t)) − ((1 − t) L(θ_A) + t L(θ_B))] and accuracy barrier
max_t [((1 − t) A(θ_A) + t A(θ_B)) − A(θ(t))], each with the t where it occurs.
"""
from __future__ import annotations

from torch import nn
from tqdm.auto import tqdm

from ..batchnorm import recalibrate_on
from ..errors import FlatkdError
from ..flatness.data import Batches
from ..flatness.perturbation import evaluate
from ..sharpness.params import restored
from .slices import finite


def check_compatible(a: nn.Module, b: nn.Module, what: str) -> None:
    """Refuse a partner whose parameters and buffers differ in name or shape."""
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    if sa != sb:
        diff = sorted(set(sa.items()) ^ set(sb.items()))[:3]
        raise FlatkdError(f"{what}: the two networks differ in their parameters (e.g. "
                          f"{', '.join(f'{k} {s}' for k, s in diff)}); a path needs the same "
                          "architecture")


def linear_path(model: nn.Module, partner: nn.Module, batches: Batches, bn_batches: Batches, *,
                points: int, bn: str, progress: bool = False) -> dict:
    """{"t", "loss", "accuracy", "bn", "barrier": {loss, loss_t, accuracy, accuracy_t}} from
    ``model`` (t = 0) to ``partner`` (t = 1); ``model`` comes back unchanged."""
    check_compatible(model, partner, "landscape.path_to")
    ts = [i / (points - 1) for i in range(points)]
    end_a = {k: v.detach().clone() for k, v in model.state_dict().items()}
    end_b = {k: v.detach().to(v.device).clone() for k, v in partner.state_dict().items()}
    device = next(model.parameters()).device
    losses, accs = [], []
    with restored(model):
        for t in tqdm(ts, desc="linear path", disable=not progress, leave=False):
            state = {}
            for k, va in end_a.items():
                vb = end_b[k].to(device)
                state[k] = (1 - t) * va + t * vb if va.is_floating_point() else va
            model.load_state_dict(state)
            if bn == "recompute":
                recalibrate_on(model, bn_batches)
            model.eval()
            loss, acc = finite(evaluate(model, batches))
            losses.append(loss)
            accs.append(acc)
    lin_a = [(1 - t) * accs[0] + t * accs[-1] for t in ts]
    gap_a = [b - v for v, b in zip(accs, lin_a)]
    ia = max(range(points), key=gap_a.__getitem__)
    barrier = {"loss": None, "loss_t": None, "accuracy": gap_a[ia], "accuracy_t": ts[ia]}
    if all(v is not None for v in losses):          # an overflowing loss has no barrier height
        lin_l = [(1 - t) * losses[0] + t * losses[-1] for t in ts]
        gap_l = [v - b for v, b in zip(losses, lin_l)]
        il = max(range(points), key=gap_l.__getitem__)
        barrier.update(loss=gap_l[il], loss_t=ts[il])
    return {"t": ts, "loss": losses, "accuracy": accs, "bn": bn, "barrier": barrier}
