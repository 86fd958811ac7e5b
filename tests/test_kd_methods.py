"""Spacing as a plug-in (paper Table 4, App. A.3): loss add-ons LSKD / CTKD and the methods DML,
TSB, SHAKE, BAN, TAKD, DLB, PS-KD with their spaced variants. Hand-computed values are from
independent numpy computations of each paper's formula."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from flatkd import load_checkpoint
from flatkd.errors import FlatkdError
from flatkd.training import Trainer, resolve
from flatkd.training.addons import (CurriculumSoft, StandardisedSoft, ctkd_lambda, ctkd_ramp_epochs,
                                    ctkd_temperature, lskd_kl, zscore)
from flatkd.training.batches import BatchSpec
from flatkd.training.losses import distillation_objective, kd_kl
from flatkd.training.methods import METHODS, Update
from flatkd.training.methods.chain import ban_ensemble, ban_loss, takd_loss
from flatkd.training.methods.kdutil import kd_kl_prob
from flatkd.training.methods.peers import accumulate, dml_loss, fold, integrate
from flatkd.training.methods.selftargets import dlb_loss, pair_spec, pskd_alpha, pskd_loss, pskd_target
from flatkd.training.methods.shake import logit_norm, shake_losses

T1 = torch.tensor([[1.0, 2.0, 3.0]])       # "teacher" logits of the hand-computed cases
S1 = torch.tensor([[3.0, 2.0, 1.0]])       # "student" logits
TINY = {"train_subset": 32, "test_subset": 16, "batch_size": 8, "epochs": 1}     # 4 steps/epoch
#: a constant lr, so a resumed run may train more epochs than it was started with
GROWS = {"optim.schedule": "constant"}


def trainer(tmp_path, method, name="run", on_update=None, interval=None, **over):
    cfg = resolve(method, "resnet8", "digits", interval=interval, overrides={**TINY, **over})
    return Trainer(cfg, tmp_path / name, progress=False, on_update=on_update)


def weights(t: Trainer, names=None) -> dict:
    return {f"{n}.{k}": v.detach().clone() for n, m in t.method.nets.modules.items()
            if names is None or n in names for k, v in m.state_dict().items()}


def params(t: Trainer, names) -> dict:
    """Parameters only (a frozen teacher's BatchNorm statistics update during replay by default,
    spaced.teacher_bn=train, as in the official code)."""
    return {f"{n}.{k}": p.detach().clone() for n, m in t.method.nets.modules.items()
            if n in names for k, p in m.named_parameters()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)


def val(x) -> float:
    return float(x)


# ================================================================ LSKD
def test_lskd_values_unbiased_std_and_invariances():
    assert zscore(T1).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)      # unbiased std = 1
    assert val(lskd_kl(S1, T1, 2.0)) == pytest.approx(1.280626, abs=2e-6)
    assert val(lskd_kl(S1, T1, 2.0, ddof=0)) == pytest.approx(1.884365, abs=2e-6)  # population std
    assert val(lskd_kl(S1, torch.tensor([[2.0, 4.0, 6.0]]), 2.0)) == pytest.approx(1.280626, abs=2e-6)
    assert val(lskd_kl(S1 + 7, T1 * 3 - 1, 2.0)) == pytest.approx(1.280626, abs=2e-6)
    assert val(kd_kl(S1, torch.tensor([[2.0, 4.0, 6.0]]), 2.0)) == pytest.approx(2.541917, abs=2e-6)
    s, t = torch.tensor([[2.0, 2.0, 0.0]]), torch.tensor([[0.0, 1.0, 5.0]])
    assert val(lskd_kl(s, t, 2.0)) == pytest.approx(1.366918, abs=2e-6)
    assert val(lskd_kl(s, t, 2.0, ddof=0)) == pytest.approx(2.035813, abs=2e-6)
    assert val(kd_kl(s, t, 2.0)) == pytest.approx(4.383100, abs=2e-6)


def test_lskd_official_weights_replace_eq2_mixing():
    soft = StandardisedSoft(lambda s, t, T: kd_kl(s, t, T), 2.0, 1, (0.1, 9.0))
    total, ce, kd = distillation_objective(S1, T1, torch.tensor([2]), alpha=0.3, T=3.0, soft=soft)
    assert val(ce) == pytest.approx(2.407606, abs=2e-6)
    assert val(kd) == pytest.approx(1.280626, abs=2e-6)                 # host T = 3 is ignored
    assert val(total) == pytest.approx(11.766398, abs=2e-5)
    host = StandardisedSoft(soft.inner, 2.0, 1, None)                   # host weights (1 − α, α)
    total, _, _ = distillation_objective(S1, T1, torch.tensor([2]), alpha=0.3, T=3.0, soft=host)
    assert val(total) == pytest.approx(0.7 * 2.407606 + 0.3 * 1.280626, abs=2e-6)


# ================================================================ CTKD
def test_ctkd_temperature_and_lambda_schedule():
    assert val(ctkd_temperature(torch.tensor(1.0), 0.0)) == pytest.approx(15.621172, abs=1e-5)
    v = {e: -ctkd_lambda(e) for e in (1, 2, 5, 10, 11, 50)}
    assert v[1] == pytest.approx(-0.024472, abs=1e-6) and v[2] == pytest.approx(-0.095492, abs=1e-6)
    assert v[5] == pytest.approx(-0.5) and v[10] == v[11] == v[50] == pytest.approx(-1.0)
    tau = ctkd_temperature(torch.tensor(1.0), 1.0)
    assert val(kd_kl(S1, T1, tau)) == pytest.approx(1.332423, abs=2e-6)


def test_ctkd_gradient_is_reversed_and_scaled_by_lambda():
    theta = torch.tensor(math.log(1 / 19), requires_grad=True)          # τ = 2
    tau = ctkd_temperature(theta, 1.0)
    assert val(tau) == pytest.approx(2.0, abs=1e-6)
    loss = kd_kl(S1, T1, tau)
    assert val(loss) == pytest.approx(1.280627, abs=2e-6)
    loss.backward()
    assert val(theta.grad) == pytest.approx(-0.047509, abs=2e-6)        # true ∂/∂θ = +0.047509
    for lam in (0.0, 0.5):
        th = torch.tensor(math.log(1 / 19), requires_grad=True)
        kd_kl(S1, T1, ctkd_temperature(th, lam)).backward()
        assert val(th.grad) == pytest.approx(-lam * 0.047509, abs=2e-6)


def test_ctkd_temperature_trains_with_the_student_and_ascends_the_kd_loss(tmp_path):
    t = trainer(tmp_path, "online+ctkd", epochs=1)
    soft = t.method.soft
    assert isinstance(soft, CurriculumSoft)
    theta = t.method.nets.modules["temperature"].theta
    assert any(p is theta for g in t.optimizers["student"].param_groups for p in g["params"])
    assert all(p is not theta for g in t.optimizers["teacher"].param_groups for p in g["params"])
    # one SGD step on the student's loss moves θ up the soft loss (plain SGD, no momentum)
    x = torch.rand(8, 3, 32, 32)
    t.method.begin(Update("student", "student", BatchSpec(1, 11, tuple(range(8)), 0)))   # λ = 1
    with torch.no_grad():
        teacher_logits = t.method.nets.modules["teacher"](x)
    s = t.method.nets.modules["student"](x).detach()
    th = theta.detach().clone().requires_grad_(True)
    plain = kd_kl(s, teacher_logits, 1 + 20 * torch.sigmoid(th))          # no reversal
    (true_grad,) = torch.autograd.grad(plain, th)
    total = soft(s, teacher_logits, 3.0)
    total.backward()
    assert math.copysign(1, theta.grad.item()) == -math.copysign(1, true_grad.item())
    opts = t.method.options()
    assert opts["addon"] == "ctkd" and opts["ctkd"]["lambda_epochs"] is None
    assert opts["ctkd"]["lambda_fraction"] == pytest.approx(1 / 24)
    assert opts["ctkd_ramp_epochs"] == pytest.approx(t.cfg.epochs / 24)     # the resolved length


def test_ctkd_ramp_is_a_fraction_of_the_run_unless_given_in_epochs(tmp_path):
    """CTKD's 10 of 240 epochs: 5 of a 120-epoch run, 0.5 of a 12-epoch one (λ = 1 from epoch
    1 on the per-epoch clock); lambda_epochs overrides the fraction."""
    def ramp(**over):
        return ctkd_ramp_epochs(resolve("online+ctkd", "resnet8", "digits", overrides=over))
    assert ramp(epochs=240) == pytest.approx(10) and ramp(epochs=120) == pytest.approx(5)
    assert ramp(epochs=12) == pytest.approx(0.5) and ctkd_lambda(1, ramp=0.5) == 1.0
    assert ramp(epochs=12, **{"ctkd.lambda_epochs": 10}) == 10
    assert ctkd_lambda(5, ramp=ramp(epochs=240)) == pytest.approx(0.5)
    with pytest.raises(FlatkdError, match="lambda_fraction"):
        trainer(tmp_path, "online+ctkd", **{"ctkd.lambda_fraction": -0.1})


def test_spaced_ctkd_moves_the_temperature_only_on_student_replays(tmp_path):
    seen = []

    def hook(tr, u, x, y):
        seen.append((u.role, tr.method.nets.modules["temperature"].theta.item()))

    t = trainer(tmp_path, "spaced-online+ctkd", interval=0.5, on_update=hook, epochs=2,
                **{"spaced.leftover": "distil"})
    t.run()
    seen.append(("end", t.method.nets.modules["temperature"].theta.item()))
    for (role, before), (_, after) in zip(seen, seen[1:]):
        if role == "teacher":
            assert before == after
    assert any(r == "replay" and b != a for (r, b), (_, a) in zip(seen, seen[1:]))
    assert "ctkd_temperature" in t.metrics[-1] and t.metrics[-1]["ctkd_lambda"] == pytest.approx(
        ctkd_lambda(2, ramp=ctkd_ramp_epochs(t.cfg)))


# ================================================================ add-on registration
def test_addon_variants_are_registered_recorded_and_spacing_zero_is_online(tmp_path):
    for host in ("online", "spaced-online", "self", "spaced-self"):
        assert f"{host}+lskd" in METHODS and f"{host}+ctkd" in METHODS
    a = trainer(tmp_path, "online+lskd", "a", epochs=2)
    a.run()
    b = trainer(tmp_path, "spaced-online+lskd", "b", interval=0.0, epochs=2)
    b.run()
    assert same(weights(a), weights(b))
    opts = load_checkpoint(a.ckpt_path).raw["state"]["options"]
    assert opts["addon"] == "lskd" and opts["lskd"]["temperature"] == 2.0 and opts["addon_weights"] == "host"
    assert load_checkpoint(a.ckpt_path).method == "online+lskd"
    with pytest.raises(FlatkdError, match="selfkd.alpha"):
        trainer(tmp_path, "self+lskd", "c", **{"lskd.ce_weight": 0.1, "lskd.kd_weight": 9.0})
    with pytest.raises(FlatkdError, match="set together"):
        trainer(tmp_path, "online+lskd", "d", **{"lskd.ce_weight": 0.1})


# ================================================================ DML
def test_dml_values_and_two_way_gradients():
    z1 = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    z2 = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([2])
    assert F.softmax(z1, 1).tolist()[0] == pytest.approx([0.090031, 0.244728, 0.665241], abs=1e-6)
    L1, ce1, kl1 = dml_loss(z1, [z2], y)
    L2, ce2, kl2 = dml_loss(z2, [z1], y)
    assert (val(ce1), val(ce2)) == pytest.approx((0.407606, 2.239545), abs=2e-6)
    assert (val(kl1), val(kl2)) == pytest.approx((1.422512, 1.227088), abs=2e-6)
    assert (val(L1), val(L2)) == pytest.approx((1.830118, 3.466633), abs=2e-6)
    g1 = torch.autograd.grad(L1, [z1, z2], allow_unused=True)
    assert g1[1] is None or not g1[1].abs().sum()          # peer 2 is a constant in peer 1's loss
    g2 = torch.autograd.grad(L2, [z1, z2], allow_unused=True)
    assert g2[0] is None or not g2[0].abs().sum()
    assert g1[0].abs().sum() > 0 and g2[1].abs().sum() > 0


@pytest.mark.parametrize("update", ["simultaneous", "sequential"])
def test_dml_each_peer_steps_on_the_other(tmp_path, update):
    log = []

    def params(t):      # (simultaneous: every peer's forward, BN statistics included, runs first)
        return {f"{n}.{k}": p.detach().clone() for n, m in t.method.nets.modules.items()
                for k, p in m.named_parameters()}

    def hook(t, u, x, y):
        log.append((u.role, params(t)))

    t = trainer(tmp_path, "dml", on_update=hook, **{"dml.update": update})
    t.run()
    log.append(("end", params(t)))
    assert [r for r, _ in log[:-1]] == ["teacher", "student"] * 4
    for (role, before), (_, after) in zip(log, log[1:]):
        other = "student" if role == "teacher" else "teacher"
        assert same({k: v for k, v in before.items() if k.startswith(other + ".")},
                    {k: v for k, v in after.items() if k.startswith(other + ".")})
    assert t.opt_steps == {"student": 4, "teacher": 4}


def test_spaced_dml_zero_interval_is_dml_and_teacher_frozen_in_replay(tmp_path):
    a = trainer(tmp_path, "dml", "a", epochs=2)
    a.run()
    b = trainer(tmp_path, "spaced-dml", "b", interval=0.0, epochs=2)
    b.run()
    assert same(weights(a), weights(b))
    frozen = []

    def hook(t, u, x, y):
        frozen.append((u.role, params(t, ["teacher"]), weights(t, ["student"])))

    c = trainer(tmp_path, "spaced-dml", "c", interval=0.5, on_update=hook, epochs=2)
    c.run()
    frozen.append(("end", params(c, ["teacher"]), weights(c, ["student"])))
    replays = [(a_, b_) for (r, a_, _), (_, b_, _) in zip(frozen, frozen[1:]) if r == "replay"]
    aheads = [(a_, b_) for (r, _, a_), (_, _, b_) in zip(frozen, frozen[1:]) if r == "ahead"]
    assert len(replays) == 8 and all(same(a_, b_) for a_, b_ in replays)
    assert len(aheads) == 8 and all(same(a_, b_) for a_, b_ in aheads)   # lagging peer untouched


# ================================================================ TSB
def test_tsb_accumulator_integrator_invariants():
    p = torch.tensor([[0.2, 0.3, 0.5]])
    acc, n = torch.zeros(1, 3), torch.zeros(1)
    for _ in range(3):
        acc, n = accumulate(acc, n, p, 0.6)
        assert fold(acc, n, 0.6).tolist()[0] == pytest.approx([0.2, 0.3, 0.5], abs=1e-6)
    assert n.item() == 3
    peers = torch.stack([p, p, p])
    assert integrate(peers).tolist()[0] == pytest.approx([0.2, 0.3, 0.5])
    assert integrate(torch.stack([p, 1 - p]), exclude=0).tolist()[0] == pytest.approx([0.8, 0.7, 0.5])
    z = torch.tensor([[0.3, -1.0, 2.0]])
    assert val(kd_kl_prob(z, F.softmax(z / 3, 1), 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert val(kd_kl_prob(S1, F.softmax(T1 / 3, 1), 3.0)) == pytest.approx(val(kd_kl(S1, T1, 3.0)), abs=1e-6)


def test_tsb_state_resumes_bit_exactly_and_spaced_zero_is_tsb(tmp_path):
    full = trainer(tmp_path, "tsb", "full", epochs=2, **GROWS)
    full.run()
    part = trainer(tmp_path, "tsb", "part", epochs=1, **GROWS)
    part.run()
    assert part.method.count.data[:32].eq(1).all() and not part.method.count.data[32:].any()
    cfg = resolve("tsb", "resnet8", "digits", overrides={**TINY, **GROWS, "epochs": 2})
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False)
    assert torch.equal(resumed.method.acc.data, part.method.acc.data)
    resumed.run()
    assert same(weights(full), weights(resumed))
    assert torch.equal(full.method.acc.data, resumed.method.acc.data)
    zero = trainer(tmp_path, "spaced-tsb", "zero", interval=0.0, epochs=2, **GROWS)
    zero.run()
    assert same(weights(full), weights(zero))


def test_spaced_tsb_peers_run_ahead_and_student_replays_against_frozen_peers(tmp_path):
    log = []

    def hook(t, u, x, y):
        log.append((u.role, u.spec.step, params(t, ["peer0", "peer1"])))

    t = trainer(tmp_path, "spaced-tsb", interval=0.5, on_update=hook, epochs=2)
    t.run()
    log.append(("end", None, params(t, ["peer0", "peer1"])))
    assert [r for r, _, _ in log[:6]] == ["peer0", "peer1"] * 2 + ["replay"] * 2
    assert [s for r, s, _ in log if r == "replay"] == list(range(1, 9))
    for (role, _, before), (_, _, after) in zip(log, log[1:]):
        if role == "replay":
            assert same(before, after)
    assert t.opt_steps == {"student": 8, "peer0": 8, "peer1": 8}


def test_spaced_tsb_counts_each_visit_once(tmp_path):
    """The replay target of B_t folds the frozen peers' predictions into the accumulator as it
    stood *before* the advance step visited B_t (written out here from the hook's own copies):
    q = mean_k (β·A_k + (1 − β)·p_k) / (1 − β^{n+1})."""
    import copy
    beta, T, peers = 0.6, 3.0, ("peer0", "peer1")
    before, expected, got = {}, {}, []

    def hook(t, u, x, y):
        idx = list(u.spec.indices)
        if u.role == "peer0":                              # before the group's visit is written
            m = t.method
            before[u.spec.step] = (m.acc.get(idx), m.count.get(idx)) if m.acc is not None \
                else (torch.zeros(2, len(idx), 10), torch.zeros(len(idx), dtype=torch.float64))
        if u.role == "replay":
            a, n = before[u.spec.step]
            with torch.no_grad():                          # copies: train-mode BN is not disturbed
                p = torch.stack([F.softmax(copy.deepcopy(t.method.nets.modules[k]).train()(x) / T, 1)
                                 for k in peers])
            expected[u.spec.step] = ((beta * a + (1 - beta) * p)
                                     / (1 - beta ** (n + 1)).to(a.dtype)[:, None]).mean(0)

    t = trainer(tmp_path, "spaced-tsb", interval=0.5, on_update=hook, epochs=2,
                **{"tsb.beta": beta, "kd.temperature": T})
    inner = t.method.replay_target
    t.method.replay_target = lambda x: got.append((t.method.update.spec.step, inner(x))) \
        or got[-1][1]
    t.run()
    assert [s for s, _ in got] == list(range(1, 9))
    for step, q in got:
        assert torch.allclose(q, expected[step], atol=1e-6), step
    assert t.method.prior == {}                             # nothing kept past its replay


class _Stop(Exception):
    pass


def test_spaced_tsb_resumes_mid_interval_bit_exactly(tmp_path):
    """4 steps per epoch, s = 0.75 epochs (3 steps): the run is stopped in epoch 2; its epoch-1
    checkpoint falls inside the second interval, with batch 4's accumulator-before-visit
    pending, and the resumed run ends where the uninterrupted one does."""
    full = trainer(tmp_path, "spaced-tsb", "full", interval=0.75, epochs=2)
    full.run()

    def stop(t, u, x, y):
        if u.spec.step == 7:
            raise _Stop

    with pytest.raises(_Stop):
        trainer(tmp_path, "spaced-tsb", "part", interval=0.75, epochs=2, on_update=stop).run()
    cfg = resolve("spaced-tsb", "resnet8", "digits", interval=0.75,
                  overrides={**TINY, "epochs": 2})
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False)
    assert sorted(resumed.method.prior) == [4]
    resumed.run()
    assert same(weights(full), weights(resumed))


# ================================================================ SHAKE
def test_shake_values():
    assert logit_norm(T1).tolist()[0] == pytest.approx([-3.847536, 0.0, 3.847536], abs=2e-6)
    t = shake_losses(S1, torch.tensor([[1.0, 3.0, 2.0]]), T1, torch.tensor([2]), T=4.0,
                     gamma=1.0, alpha=0.0, beta=1.0)
    assert val(t["ce_student"]) == pytest.approx(7.716625, abs=5e-6)
    assert val(t["kd_from_shadow"]) == pytest.approx(17.199433, abs=5e-5)
    assert val(t["kd_to_shadow"]) == pytest.approx(17.199433, abs=5e-5)
    assert val(t["ce_shadow"]) == pytest.approx(0.021553, abs=2e-6)
    assert val(t["mse_shadow"]) == pytest.approx(9.869021, abs=2e-5)
    assert val(t["student"] + t["shadow"]) == pytest.approx(52.006065, abs=1e-4)


def test_shake_parts_have_disjoint_gradients_like_the_official_loop():
    """Each shadow ↔ student KL detaches its target (lliai/SHAKE helper/loops.py): the student
    part reaches no shadow logit and the shadow part no student logit."""
    z_s, z_h = S1.clone().requires_grad_(), torch.tensor([[1.0, 3.0, 2.0]], requires_grad=True)
    t = shake_losses(z_s, T1, z_h, torch.tensor([2]), T=4.0, gamma=1.0, alpha=0.0, beta=1.0)
    g_s, g_h = torch.autograd.grad(t["student"], (z_s, z_h), allow_unused=True)
    assert g_h is None and g_s.abs().sum() > 0
    g_s, g_h = torch.autograd.grad(t["shadow"], (z_s, z_h), allow_unused=True)
    assert g_s is None and g_h.abs().sum() > 0


def test_shake_pretrains_its_teacher_then_freezes_it(tmp_path):
    snaps = []

    def hook(t, u, x, y):
        snaps.append((u.role, u.spec.epoch, weights(t, ["teacher"])))

    t = trainer(tmp_path, "shake", on_update=hook)
    assert t.stages == 2 and t.total_steps == 8
    t.run()
    snaps.append(("end", None, weights(t, ["teacher"])))
    assert [r for r, _, _ in snaps[:-1]] == ["teacher"] * 4 + ["shadow", "student"] * 4
    later = [w for r, _, w in snaps if r != "teacher"]
    assert all(same(later[0], w) for w in later)              # weights and BN buffers frozen
    assert (tmp_path / "run" / "stage-1.pt").exists() and (tmp_path / "run" / "stage-2.pt").exists()
    assert t.opt_steps == {"teacher": 4, "shadow": 4, "student": 4}


def test_shake_with_a_teacher_checkpoint_and_spaced_shake(tmp_path):
    base = trainer(tmp_path, "baseline", "teacher")
    base.run()
    t = trainer(tmp_path, "spaced-shake", "s", interval=0.5, teacher_ckpt=str(base.ckpt_path),
                **{"spaced.leftover": "distil"})
    assert t.stages == 1 and "teacher" not in t.optimizers
    before = weights(t, ["teacher"])
    t.run()
    assert same(before, weights(t, ["teacher"]))
    assert t.opt_steps == {"shadow": 4, "student": 4} and t.method.replay_steps == [2, 4]


# ================================================================ BAN / TAKD
def test_ban_and_takd_values():
    p_t = F.softmax(T1, 1)
    cross = -(p_t * F.log_softmax(S1, 1)).sum()
    assert val(cross) == pytest.approx(1.982816, abs=2e-6)
    total, ce, kd = ban_loss(S1, T1, torch.tensor([2]), 1.0, label_loss=False)
    assert val(kd) == pytest.approx(1.150421, abs=2e-6) and val(total) == val(kd)
    assert val(-(p_t * p_t.log()).sum()) == pytest.approx(0.832396, abs=2e-6)   # H = KL + H(p_t)
    assert val(ban_loss(S1, T1, torch.tensor([2]))[0]) == pytest.approx(2.407606 + 1.150421, abs=4e-6)
    assert ban_ensemble([T1, S1]).tolist()[0] == pytest.approx([0.377636, 0.244728, 0.377636], abs=1e-6)
    total, ce, kd = takd_loss(S1, T1, torch.tensor([2]), 0.5, 4.0)
    assert val(kd) / 16 == pytest.approx(0.082477, abs=1e-6)
    assert val(total) == pytest.approx(1.863618, abs=2e-6)
    assert val(takd_loss(S1, T1, torch.tensor([2]), 0.5, 4.0, "official")[0]) == pytest.approx(1.423741, abs=2e-6)


def test_takd_stages_hand_off_to_frozen_predecessors_and_resume_per_stage(tmp_path):
    log = []

    def hook(t, u, x, y):
        log.append((u.optimizer, u.spec.epoch, weights(t)))

    full = trainer(tmp_path, "takd", "full", on_update=hook)
    assert full.stages == 3 and full.total_steps == 12
    full.run()
    assert [(o, e) for o, e, _ in log] == [("teacher", 1)] * 4 + [("assistant", 2)] * 4 + [("student", 3)] * 4
    log.append((None, None, weights(full)))
    for (opt, _, before), (_, _, after) in zip(log, log[1:]):
        for net in ("teacher", "assistant", "student"):
            if net != opt:
                assert same({k: v for k, v in before.items() if k.startswith(net + ".")},
                            {k: v for k, v in after.items() if k.startswith(net + ".")}), (opt, net)
    assert [p.name for p in sorted((tmp_path / "full").glob("stage-*.pt"))] == \
        ["stage-1.pt", "stage-2.pt", "stage-3.pt"]
    assert load_checkpoint(tmp_path / "full" / "stage-1.pt").epoch == 1
    part = trainer(tmp_path, "takd", "part")                  # stop after stage 1 (one epoch)
    part._train_epoch(1)
    resumed = Trainer(part.cfg, tmp_path / "part", resume=True, progress=False)
    resumed.run()
    assert same(weights(full), weights(resumed))


def test_spaced_ban_cascade(tmp_path):
    order = []
    t = trainer(tmp_path, "spaced-ban", interval=0.5, epochs=2, **{"ban.generations": 2},
                on_update=lambda tr, u, x, y: order.append((u.optimizer, u.spec.step)))
    t.run()
    assert t.method.chain == ["teacher", "gen1", "student"]
    assert order[:6] == [("teacher", 1), ("teacher", 2), ("gen1", 1), ("gen1", 2),
                         ("student", 1), ("student", 2)]
    assert t.opt_steps == {"teacher": 8, "gen1": 8, "student": 8}
    assert {"gen1_test_acc", "ensemble_test_acc"} <= t.metrics[-1].keys()


# ================================================================ DLB
def test_dlb_value():
    total, ce, kd = dlb_loss(T1, S1, torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0]),
                             torch.tensor([1]), 3.0, 1.0)
    assert val(kd) == pytest.approx(1.309222, abs=2e-6)
    assert val(ce) == pytest.approx(1.479525, abs=2e-6)
    assert val(total) == pytest.approx(2.788747, abs=4e-6)


def test_dlb_pairs_each_batch_with_the_last_across_steps_and_epochs(tmp_path):
    teacher_specs, student = [], {}

    def hook(t, u, x, y):
        if u.role == "teacher":
            teacher_specs.append((u.spec, x.clone()))
        else:
            student[u.spec.step] = (u.spec, x.clone())

    t = trainer(tmp_path, "online-dlb", on_update=hook, epochs=2)
    t.run()
    assert len(teacher_specs) == 8
    assert teacher_specs[0][0] is student[1][0]                # first step: no last batch
    for (prev, _), (cur, x) in zip(teacher_specs, teacher_specs[1:]):
        s_spec, s_x = student[cur.step]
        n = len(cur.indices) - len(s_spec.indices)
        last = student[cur.step - 1][0]
        assert cur.indices[:n] == last.indices and cur.indices[n:] == s_spec.indices
        assert torch.equal(x[n:], s_x)                         # the new half = the student's pixels
        assert not torch.equal(x[:n], student[cur.step - 1][1])   # the repeated half: another view
    assert student[5][0].epoch == 2 and teacher_specs[4][0].indices[:8] == student[4][0].indices
    paired, n = pair_spec(student[4][0], student[5][0])
    assert n == 8 and paired.seed + 8 == student[5][0].seed


def test_dlb_and_pskd_resume_bit_exactly(tmp_path):
    for method in ("dlb", "pskd", "spaced-dlb"):
        interval = 0.5 if method.startswith("spaced") else None
        full = trainer(tmp_path, method, f"{method}-full", interval=interval, epochs=2, **GROWS)
        full.run()
        part = trainer(tmp_path, method, f"{method}-part", interval=interval, epochs=1, **GROWS)
        part.run()
        cfg = resolve(method, "resnet8", "digits", interval=interval,
                      overrides={**TINY, **GROWS, "epochs": 2})
        resumed = Trainer(cfg, tmp_path / f"{method}-part", resume=True, progress=False)
        resumed.run()
        assert same(weights(full), weights(resumed)), method


def test_spaced_dlb_and_pskd_zero_interval_equal_online(tmp_path):
    for host in ("dlb", "pskd"):
        a = trainer(tmp_path, f"online-{host}", f"{host}-a", epochs=2)
        a.run()
        b = trainer(tmp_path, f"spaced-{host}", f"{host}-b", interval=0.0, epochs=2)
        b.run()
        assert same(weights(a), weights(b)), host


# ================================================================ PS-KD
def test_pskd_alpha_schedule_and_target():
    assert pskd_alpha(0, 300) == pytest.approx(0.002667, abs=1e-6)
    assert pskd_alpha(149, 300) == pytest.approx(0.4) and pskd_alpha(299, 300) == pytest.approx(0.8)
    q = pskd_target(torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.7, 0.2, 0.1]]), 0.4)
    assert q.tolist()[0] == pytest.approx([0.88, 0.08, 0.04])
    assert val(pskd_loss(T1, q)) == pytest.approx(2.247606, abs=2e-6)


def test_pskd_reads_the_previous_prediction_then_writes_this_one(tmp_path):
    t = trainer(tmp_path, "pskd", epochs=4)
    m, net = t.method, t.method.nets.modules["student"]
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    idx = (5, 9, 2, 30)
    m.begin(Update("student", "student", BatchSpec(1, 1, idx, 0)))
    loss0, logs0 = m.loss("student", x, y)
    z0 = net(x).detach()
    assert logs0["pskd_alpha"] == pytest.approx(0.8 / 4)
    assert val(loss0) == pytest.approx(val(F.cross_entropy(z0, y)), rel=1e-5)      # one-hot target
    p0 = m.predictions.get(list(idx))
    assert torch.allclose(p0, F.softmax(z0, 1), atol=1e-6)
    m.begin(Update("student", "student", BatchSpec(2, 2, idx, 0)))
    loss1, logs1 = m.loss("student", x, y)
    alpha = 0.8 * 2 / 4
    q = (1 - alpha) * F.one_hot(y, 10).float() + alpha * p0
    assert val(loss1) == pytest.approx(val(pskd_loss(net(x), q)), rel=1e-5)


# ================================================================ every method from the CLI path
NEW_METHODS = ["dml", "spaced-dml", "tsb", "spaced-tsb", "shake", "spaced-shake", "ban",
               "spaced-ban", "takd", "spaced-takd", "dlb", "online-dlb", "spaced-dlb", "pskd",
               "online-pskd", "spaced-pskd", "online+lskd", "spaced-online+lskd", "online+ctkd",
               "spaced-online+ctkd", "self+lskd", "spaced-self+ctkd"]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_every_method_trains_and_its_student_evaluates(tmp_path, method):
    over = {"train_subset": 16, "test_subset": 8, "batch_size": 8, "epochs": 2,
            "checkpoint_networks": "student", "save_optimizer": False}
    if method.startswith("spaced"):
        over["spaced.leftover"] = "distil"
    cfg = resolve(method, "resnet8", "digits", interval=0.5 if method.startswith("spaced") else None,
                  overrides=over)
    t = Trainer(cfg, tmp_path / "r", progress=False)
    t.run()
    ck = load_checkpoint(t.ckpt_path)
    assert ck.method == method and ck.model_names == ["student"]
    with torch.no_grad():
        out = ck.build_model("student")(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert 0.0 <= t.metrics[-1]["student_test_acc"] <= 1.0


# ================================================================ paper presets (Table 4, A.3)
def test_table4_presets_resolve_for_their_methods():
    from importlib import resources
    root = resources.files("flatkd.presets").joinpath("paper")
    names = sorted(p.name for p in root.iterdir() if p.name.startswith("table4-"))
    columns = {n.split("-")[3].removesuffix(".yaml") for n in names}
    assert columns == {"tsb", "ctkd", "lskd", "ban", "takd", "dml", "shake", "dlb", "pskd"}
    for name in names:
        text = root.joinpath(name).read_text()
        block = text.split("# methods:")[1].split("# flatkd train")[0]
        methods = re.findall(r"([\w+-]+)\s*#?\s*\((?:w/o KD|w/ KD|w/ Ours)", block)
        assert len(methods) == 3, name
        with resources.as_file(root.joinpath(name)) as path:
            for method in methods:
                cfg = resolve(method, None, None, config_file=str(path))
                assert cfg.arch == "resnet18" and method in METHODS, (name, method)
    lskd = resolve("online+lskd", None, None,
                   config_file=str(root.joinpath("table4-cifar100-resnet18-lskd-official.yaml")))
    assert (lskd.lskd.ce_weight, lskd.lskd.kd_weight, lskd.lskd.temperature) == (0.1, 9.0, 2.0)
