"""``autoaugment-cutout``: the official self-KD (BYOT) CIFAR training pipeline, replayable.

Source: BYOT's ``train.py`` (ArchipLab-LinfengZhang/pytorch-self-distillation-final, which the
Spaced-KD code builds on) always trains with ``--autoaugment`` (default ``True``)::

    RandomCrop(32, padding=4, fill=128) → RandomHorizontalFlip() → CIFAR10Policy()
    → ToTensor() → Cutout(n_holes=1, length=16) → Normalize(CIFAR mean, std)

flatkd keeps that order and those constants, on float ``[C, H, W]`` images in [0, 1]:

1. pad 4 px with 128/255, crop back to H×W at an offset uniform in {0..8}² (+ flip, p = 0.5,
   where the dataset allows it; + RandomRotation(15) when ``rotation`` is on — the official
   BYOT pipeline has none — nearest, fill 128/255): :class:`~flatkd.datasets.augment.Augment`;
2. quantise to uint8 (``round(255·x)``; exact for CIFAR, whose pixels are k/255 — the official
   policy works on 8-bit PIL images too);
3. AutoAugment, CIFAR-10 policy: torchvision's table (the same 25 sub-policies, probabilities
   and magnitude bins as the PIL ``CIFAR10Policy`` the official code ships), torchvision's op
   kernels, fill 128 (as the official code's ``fillcolor``), nearest interpolation
   (torchvision's default). The PIL implementation differs in pixel details only: bicubic
   shears, sub-pixel translations, an unsigned rotation, solarize threshold 256·m instead of
   255·m. Draws mirror ``torchvision.transforms.v2.AutoAugment.forward`` (a test compares);
4. back to float ``/255`` (ToTensor);
5. Cutout (DeVries & Taylor 2017, ``util/cutout.py`` — the ``Cutout(n_holes, length)`` class
   BYOT imports): hole centre (y, x) uniform over the H×W pixel grid, hole rows
   [y − 8, y + 8) and columns [x − 8, x + 8) clipped to the image (16×16 when inside, smaller
   at the borders), pixels × 0. The official Cutout runs *after* ToTensor and *before*
   Normalize, so the hole is 0 in [0, 1] space (black) — exactly what flatkd stores, since
   its models normalise inside (the hole reaches the network as −mean/std, as in BYOT).

Random draws per call, in order (all from the given generator): crop top, left (2 integers),
flip (1 uniform, if the dataset allows flips), angle (1 uniform, if ``rotation``), sub-policy
index (1 integer in [0, 25)), for each of its 2 ops: apply? (1 uniform ≤ p) and, if applied and
signed, sign (1 uniform ≤ 0.5 → negative), then the Cutout centre y, x (2 integers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .augment import PADDING, Augment, one_intra_op_thread
from .torchvision_compat import TorchvisionAutoAugment

PAD_FILL = 128 / 255  # BYOT: RandomCrop(32, padding=4, fill=128) on 8-bit images
POLICY_FILL = 128     # BYOT's CIFAR10Policy(fillcolor=(128, 128, 128)), uint8
CUTOUT_LENGTH = 16    # BYOT: Cutout(n_holes=1, length=16)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float ``[C, H, W]`` in [0, 1] → uint8 ``round(255·x)`` (exact inverse of ``/255``)."""
    return img.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class Cutout:
    """One square hole of side ``length`` px, centre uniform over the image, clipped; = ``fill``.

    Semantics of DeVries & Taylor's ``Cutout(n_holes=1, length)``: centre ``y`` uniform in
    {0..H−1}, ``x`` in {0..W−1}; rows ``[max(y − length//2, 0), min(y + length//2, H))``, the
    same for columns; the hole is set to ``fill`` (0: their mask multiplies by 0 before
    Normalize). Draws: 2 integers (y, then x).
    """

    length: int = CUTOUT_LENGTH
    fill: float = 0.0

    def params(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int]:
        """The hole centre (y, x) in pixels."""
        y = int(torch.randint(0, height, (), generator=generator))
        x = int(torch.randint(0, width, (), generator=generator))
        return y, x

    def box(self, height: int, width: int, centre: tuple[int, int]) -> tuple[int, int, int, int]:
        """The hole as (top, bottom, left, right), bottom/right exclusive, clipped to the image."""
        y, x = centre
        half = self.length // 2
        return max(y - half, 0), min(y + half, height), max(x - half, 0), min(x + half, width)

    def apply(self, img: torch.Tensor, centre: tuple[int, int]) -> torch.Tensor:
        """A copy of ``img`` ``[C, H, W]`` with the hole at ``centre`` set to ``fill``."""
        top, bottom, left, right = self.box(img.shape[-2], img.shape[-1], centre)
        out = img.clone()
        out[..., top:bottom, left:right] = self.fill
        return out


@dataclass(frozen=True)
class AutoAugmentCutout:
    """BYOT's CIFAR training augmentation as a pure function of (image, generator).

    ``img``: float ``[C, H, W]`` in [0, 1] (C = 3). Returns float32 ``[C, H, W]`` in [0, 1],
    on the 1/255 grid. ``params`` draws everything (see the module docstring for the order);
    ``apply`` is deterministic given them.
    """

    hflip: bool = True
    rotation: float = 0.0
    padding: int = PADDING
    cutout: Cutout = field(default_factory=Cutout)
    policy: TorchvisionAutoAugment = field(
        default_factory=lambda: TorchvisionAutoAugment(fill=[POLICY_FILL] * 3),
        compare=False, repr=False)
    needs_original = False  # class attribute: works on the dataset's items as they are

    @property
    def crop(self) -> Augment:
        """Steps 1: pad (128/255) and crop, flip, optional rotation."""
        return Augment(padding=self.padding, hflip=self.hflip, rotation=self.rotation,
                       fill=PAD_FILL)

    def draw_policy(self, height: int, width: int, generator: torch.Generator) -> dict:
        """Sub-policy ``subpolicy`` (index into the table), the ``applied`` positions (0, 1)
        and their ``ops`` [(op name, signed magnitude; 0.0 for ops without one)], drawn as
        ``torchvision.transforms.v2.AutoAugment.forward`` draws them."""
        table = self.policy.sub_policies
        index = int(torch.randint(len(table), (), generator=generator))
        applied, ops = [], []
        for position, (op, probability, magnitude_bin) in enumerate(table[index]):
            if not torch.rand((), generator=generator) <= probability:
                continue
            magnitude, signed = self.policy.magnitude(op, magnitude_bin, height, width)
            if magnitude is None:
                magnitude = 0.0
            elif signed and torch.rand((), generator=generator) <= 0.5:
                magnitude = -magnitude
            applied.append(position)
            ops.append((op, magnitude))
        return {"subpolicy": index, "applied": tuple(applied), "ops": tuple(ops)}

    def params(self, height: int, width: int, generator: torch.Generator) -> dict:
        """All draws: ``top``, ``left``, ``flip``, ``angle``, ``subpolicy``, ``applied``, ``ops``,
        ``cutout`` (centre y, x)."""
        p = self.crop.params(height, width, generator)
        p.update(self.draw_policy(height, width, generator))
        p["cutout"] = self.cutout.params(height, width, generator)
        return p

    def apply(self, img: torch.Tensor, params: dict) -> torch.Tensor:
        """The pipeline with given parameters (deterministic)."""
        with one_intra_op_thread():
            out = to_uint8(self.crop.apply(img, params))
            for op, magnitude in params["ops"]:
                out = self.policy.apply(out, op, magnitude)
            out = out.to(torch.float32).div_(255.0)
            return self.cutout.apply(out, params["cutout"])

    def __call__(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if img.ndim != 3:
            raise ValueError(f"augmentation expects one image [C, H, W], got shape {tuple(img.shape)}")
        return self.apply(img, self.params(img.shape[1], img.shape[2], generator))

    def describe(self) -> str:
        parts = [f"RandomCrop(input size, padding={self.padding}, fill=128/255)"]
        if self.hflip:
            parts.append("RandomHorizontalFlip(p=0.5)")
        if self.rotation > 0:
            parts.append(f"RandomRotation({self.rotation:g}, nearest, fill=128/255)")
        parts.append(f"AutoAugment(CIFAR10 policy, torchvision ops, nearest, fill={POLICY_FILL})")
        parts.append(f"Cutout(1 hole, {self.cutout.length} px, fill={self.cutout.fill:g} in [0,1])")
        return " + ".join(parts)
