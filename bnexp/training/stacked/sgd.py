"""``StackedSGD``: R replicates of one architecture trained by SGD with momentum as one stacked model.

Replicate r has its own learning rate η_r, weight decay λ_r, minibatches, momentum buffer and divergence flag;
all share the architecture, the batch size, the momentum μ and the step schedule factor(t) (MultiStepLR:
γ^k after k milestone epochs; or any ``bnexp.training.optim.LRFactor``). Step t (t = 0 first), PyTorch's SGD
(dampening 0, no Nesterov) per replicate with the torch weight-decay convention::

    g_r = ∇ L_r(p_r; batch_r(t)) + λ_r · p_r        (λ_r only on ≥ 2-dim parameters with wd_on="weights_only")
    buf_r ← μ · buf_r + g_r                         (buf_r = 0 before the first step, so the first buf_r = g_r)
    p_r ← p_r − η_r · factor(t) · buf_r

L_r is the mean over replicate r's B samples of the cross-entropy (or of the per-sample mean squared error
against one-hot labels, ``loss="mse"``). The R losses are summed for one backward: replicates share no
parameter, so row r of the gradient is replicate r's own.

Divergence: a replicate whose loss or gradient is non-finite at a step is frozen *before* that step is applied:
its parameters, running statistics and momentum buffer keep their last finite values, ``diverged[r]`` is set
and ``diverged_at[r]`` records the step t; the others go on, nothing raises. On the CPU the flags are read on
the host (free there) and each live replicate's row is updated with its own Python scalars, exactly the
operations of ``torch.optim.SGD`` (frozen rows are skipped); on CUDA one masked (``torch.where``) whole-tensor
update runs instead, so that no step syncs with the host.

Layout (:mod:`bnexp.training.stacked.flat`): all parameters are one ``(R, P)`` tensor, the BN running
statistics one ``(R, S)`` tensor, the gradients and the momentum buffers one ``(R, P)`` tensor each, so the
update and the divergence check never loop over layers. ``models()`` writes the state back into the
replicates' own ``nn.Module`` s (parameters, running statistics, ``num_batches_tracked``) so that every
per-model measurement runs on them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.training.optim import LRFactor
from bnexp.training.stacked.flat import FlatLayout
from bnexp.training.stacked.forward import Pass, stacked_forward

__all__ = ["StackedSGD"]

_STAT_SUFFIXES = (".running_mean", ".running_var")


def _stats(model: nn.Module) -> dict[str, Tensor]:
    return {n: b for n, b in model.named_buffers() if n.endswith(_STAT_SUFFIXES)}


def _column(values: Sequence[float], R: int, like: Tensor, key: str) -> Tensor:
    values = [float(v) for v in values]
    if len(values) != R:
        raise ValueError(f"{key}: one value per replicate ({R}), got {len(values)}")
    return torch.tensor(values, dtype=like.dtype, device=like.device).unsqueeze(1)  # (R, 1)


class StackedSGD:
    """Trains ``models`` (R replicates of one architecture, already initialised, on one device and dtype) on
    ``(x_train, y_train)``; see the module docstring.

    ``lrs``, ``weight_decays``: one per replicate (torch convention: the ``weight_decay`` handed to
    ``torch.optim.SGD``, i.e. ``OptimSpec.torch_weight_decay``). The schedule: ``lr_factor(t)`` when given,
    else γ^k after ``milestones`` (epochs, with ``steps_per_epoch`` steps each). ``step(idx)`` takes the
    ``(R, b)`` minibatch indices of the step (:class:`~bnexp.training.stacked.batches.StackedBatches`).
    """

    def __init__(self, models: Sequence[nn.Module], x_train: Tensor, y_train: Tensor, *, lrs: Sequence[float],
                 weight_decays: Sequence[float], momentum: float = 0.0, milestones: Sequence[int] = (),
                 gamma: float = 0.1, steps_per_epoch: int | None = None,
                 lr_factor: Callable[[int], float] | None = None, loss: str = "ce", wd_on: str = "all"):
        if not models:
            raise ValueError("StackedSGD needs at least one replicate")
        if loss not in ("ce", "mse") or wd_on not in ("all", "weights_only"):
            raise ValueError(f"loss must be ce or mse, wd_on all or weights_only (got {loss}, {wd_on})")
        self._models = list(models)
        R = len(self._models)
        named = [dict(m.named_parameters()) for m in self._models]
        self.layout = FlatLayout(named[0])
        for r, params in enumerate(named):
            self.layout.check(params, str(r))
        first = next(iter(named[0].values()))
        self.flat = self.layout.stack(named, first.dtype, first.device)  # (R, P), updated in place
        self.grad = torch.zeros_like(self.flat)  # (R, P), every entry rewritten by each backward
        self.params, self.grads = self.layout.views(self.flat), self.layout.views(self.grad)
        self.token = torch.zeros((), dtype=first.dtype, device=first.device, requires_grad=True)
        stats = [_stats(m) for m in self._models]
        self.stat_layout = FlatLayout(stats[0])
        self.stat_flat = self.stat_layout.stack(stats, first.dtype, first.device)  # (R, S)
        bn = {n: m for n, m in self._models[0].named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        self.stat_momentum = torch.tensor(
            [bn[s.name.rsplit(".", 1)[0]].momentum for s in self.stat_layout.slots for _ in range(s.stop - s.start)],
            dtype=first.dtype, device=first.device)  # (S,)
        self._tracked = [{n: int(b) for n, b in m.named_buffers() if n.endswith(".num_batches_tracked")}
                         for m in self._models]
        self.forward = stacked_forward(self._models[0])
        self.x, self.y = x_train, y_train
        self.momentum, self.loss = float(momentum), loss
        self.lr = _column(lrs, R, self.flat, "lrs")
        self.wd = _column(weight_decays, R, self.flat, "weight_decays")
        self._lr, self._wd = [float(v) for v in lrs], [float(v) for v in weight_decays]  # the CPU rows' scalars
        if wd_on == "weights_only":  # λ_r on the columns of ≥ 2-dim parameters only: an (R, P) coefficient
            mask = torch.zeros(self.layout.width, dtype=first.dtype, device=first.device)
            for s in self.layout.slots:
                mask[s.start:s.stop] = float(len(s.shape) >= 2)
            self.wd = self.wd * mask
        self.decay = bool((self.wd != 0).any())
        self.buf = torch.zeros_like(self.flat) if self.momentum else None
        if lr_factor is None:
            if milestones and not steps_per_epoch:
                raise ValueError("milestones need steps_per_epoch")
            lr_factor = LRFactor("step" if milestones else "constant", 0, int(steps_per_epoch or 1),
                                 tuple(int(m) for m in milestones), float(gamma))
        self.lr_factor = lr_factor
        self.diverged = torch.zeros(R, dtype=torch.bool, device=first.device)
        self.diverged_at = torch.full((R,), -1, dtype=torch.long, device=first.device)
        self.steps_taken = torch.zeros(R, dtype=torch.long, device=first.device)
        self.iteration = 0
        self.sync_free = first.device.type != "cpu"  # CUDA: never read a flag back in the step

    @property
    def replicates(self) -> int:
        return self.flat.shape[0]

    # ------------------------------------------------------------------ the step

    def _losses(self, out: Tensor, y: Tensor) -> Tensor:
        """(R,) mean loss per replicate of logits ``out`` (R, b, k) against ``y`` (R, b)."""
        R, b, k = out.shape
        if self.loss == "mse":
            return (out - F.one_hot(y, k).to(out.dtype)).square().mean(-1).mean(-1)
        return F.cross_entropy(out.reshape(R * b, k), y.reshape(-1), reduction="none").view(R, b).mean(1)

    def step(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """One SGD step of every replicate on its minibatch ``idx[r]`` (``idx``: (R, b) indices into the training
        set). Returns the (R,) losses of the step (before the update) and the (R,) counts of correctly
        classified samples, both detached and on the device."""
        x, y = self.x[idx], self.y[idx]  # (R, b, d), (R, b)
        stats: dict[str, Tensor] | None = {} if self.stat_layout.slots else None
        with torch.enable_grad():
            out = self.forward(Pass(self.params, self.grads, self.token, stats), x)
            losses = self._losses(out, y)
            torch.autograd.grad(losses.sum(), self.token, allow_unused=True)  # fills self.grad
        grad = self.grad
        with torch.no_grad():
            finite = torch.isfinite(losses) & torch.isfinite(grad.sum(1))  # a sum is non-finite iff an entry is
            new_stats = torch.cat([stats[n] for n in self.stat_layout.names], 1) if stats else None
            if self.sync_free:
                self._masked_update(grad, new_stats, finite)
            else:
                self._update_rows(grad, new_stats, finite)
            correct = (out.detach().argmax(-1) == y).sum(1)
        self.iteration += 1
        return losses.detach(), correct

    def _update_rows(self, g: Tensor, new_stats: Tensor | None, finite: Tensor) -> None:
        """CPU: the flags are read on the host (free there) and each live replicate's row is updated with its
        own scalars, exactly as ``torch.optim.SGD`` does: g ← g + λp, buf ← μ buf + g, p ← p − η factor(t) buf.
        A row (≈ P numbers) stays in cache through its three passes, which the whole (R, P) tensor does not."""
        newly = (~finite & ~self.diverged).tolist()
        if any(newly):
            flags = torch.tensor(newly, device=self.diverged.device)
            self.diverged_at[flags] = self.iteration
            self.diverged |= flags
        live = (~self.diverged).tolist()
        factor = self.lr_factor(self.iteration)
        for r in (r for r, ok in enumerate(live) if ok):
            gr, pr = g[r], self.flat[r]
            if self.decay and self.wd.shape[1] > 1:  # wd_on=weights_only: λ_r times the column mask
                gr.addcmul_(pr, self.wd[r])
            elif self.decay:
                gr.add_(pr, alpha=self._wd[r])
            if self.buf is not None:
                gr = torch.add(gr, self.buf[r], alpha=self.momentum, out=self.buf[r])
            pr.add_(gr, alpha=-self._lr[r] * factor)
        if new_stats is not None:
            if all(live):
                self.stat_flat.lerp_(new_stats, self.stat_momentum)
            else:
                keep = torch.tensor(live, device=self.stat_flat.device)[:, None]
                self.stat_flat.copy_(torch.where(keep, self.stat_flat.lerp(new_stats, self.stat_momentum),
                                                 self.stat_flat))
        self.steps_taken += torch.tensor(live, device=self.steps_taken.device)

    def _masked_update(self, g: Tensor, new_stats: Tensor | None, finite: Tensor) -> None:
        """The same update applied only to the replicates that are live and finite at this step; the others are
        (or become) frozen."""
        newly = ~finite & ~self.diverged
        self.diverged_at.copy_(torch.where(newly, self.iteration, self.diverged_at))
        self.diverged |= newly
        live = (~self.diverged)[:, None]  # (R, 1)
        g = torch.where(live, g, torch.zeros((), dtype=g.dtype, device=g.device))
        if self.decay:
            g.addcmul_(self.flat, self.wd)
        if self.buf is not None:
            self.buf.copy_(torch.where(live, torch.add(g, self.buf, alpha=self.momentum), self.buf))
            g = self.buf
        self.flat.addcmul_(g, self.lr * self.lr_factor(self.iteration) * live, value=-1.0)
        if new_stats is not None:
            self.stat_flat.copy_(torch.where(live, self.stat_flat.lerp(new_stats, self.stat_momentum),
                                             self.stat_flat))
        self.steps_taken += live[:, 0]

    def freeze(self, r: int) -> None:
        """Take no more steps for replicate r (its run has ended: diverged or stopped early). Its parameters,
        statistics and momentum buffer keep their values; ``diverged_at`` is left as it is."""
        self.diverged[r] = True

    # ------------------------------------------------------------------ the replicates and the state

    def models(self) -> list[nn.Module]:
        """The replicates' own modules with the stacked state written into them (parameters, BN running
        statistics, ``num_batches_tracked`` advanced by the steps each took), ready for per-model
        measurements."""
        taken = self.steps_taken.tolist()
        for r, model in enumerate(self._models):
            self.layout.unstack(self.flat, r, dict(model.named_parameters()))
            self.stat_layout.unstack(self.stat_flat, r, _stats(model))
            for name, b in model.named_buffers():
                if name in self._tracked[r]:
                    b.fill_(self._tracked[r][name] + taken[r])
        return self._models

    def state_dict(self) -> dict:
        return {
            "params": self.flat.clone(),
            "stats": self.stat_flat.clone(),
            "momentum_buffer": self.buf.clone() if self.buf is not None else None,
            "lrs": list(self._lr),
            "weight_decays": list(self._wd),
            "lr": self.lr.clone(),
            "wd": self.wd.clone(),
            "diverged": self.diverged.clone(),
            "diverged_at": self.diverged_at.clone(),
            "steps_taken": self.steps_taken.clone(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.flat.copy_(state["params"])
            self.stat_flat.copy_(state["stats"])
            if self.buf is not None:
                self.buf.copy_(state["momentum_buffer"])
        self.lr, self.wd = state["lr"].to(self.flat.device), state["wd"].to(self.flat.device)
        self._lr, self._wd = list(state["lrs"]), list(state["weight_decays"])
        self.decay = bool((self.wd != 0).any())
        for name in ("diverged", "diverged_at", "steps_taken"):
            getattr(self, name).copy_(state[name])
        self.iteration = int(state["iteration"])
