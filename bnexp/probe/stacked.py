"""Init-time probes of many replicates in one pass: per-seed models stacked and run under ``torch.func.vmap``.

At ``optim.epochs = 0`` the network engine builds every replicate's model exactly as the per-seed loop does
(``make_model`` with its own seed), then :func:`probe_stacked`

1. stacks the models' parameters and buffers along a new leading replicate dimension
   (``torch.func.stack_module_state``, or :class:`StackBuilder`);
2. runs ``forward_features`` of all of them in one pass: ``vmap`` over the stacked parameters, buffers and
   probe batches of ``torch.func.functional_call`` on the first model's structure, so each Linear is one
   ``bmm`` over replicates instead of one ``mm`` per replicate;
3. takes one ``torch.autograd.grad`` of the *sum* of the per-replicate mean cross-entropies with respect to
   the stacked weights: replicates share nothing, so slice r of each gradient is replicate r's own gradient;
   with ``probe.alignment``, m more backward passes give every replicate's per-sample gradients at once
   (:func:`bnexp.probe.gradients.per_sample_cosine`);
4. hands the stacked tensors to the one assembly (:func:`bnexp.probe.assemble.assemble`) that the single-model
   probe uses too.

The items per replicate are those of ``probe.probe`` on that replicate's model, in the same order, and the
numbers agree up to float rounding (``bmm`` against ``mm``). Buffers (BN running statistics) are updated only
in the stacked copies, which are discarded: the models themselves are never changed. Train mode at
initialisation normalises with batch statistics, so the running statistics never affect the outputs.

Building the stacked weights (``StackBuilder``): when construction randomness survives initialisation (Linear
biases keep PyTorch's construction-time draws) every seed's model is constructed and initialised as
``make_model`` does and the models are stacked. When it does not (no biases: every tensor a construction
seed changes is a weight that ``init_weights`` redraws), one model is constructed and each seed's
initialisation writes straight into its slice of the stacked tensors: the same ``init_weights`` calls with the
same generator, hence the same numbers, without building a module tree per seed. Either way the
initialisations run on worker threads (each seed with its own generator; the QRs and draws release the GIL).

Memory: a pass holds the autograd graph of every replicate in it, about ``depth · n · width · 8`` numbers
per replicate plus its weights (and m copies of the weights' gradients with the alignment), so
:func:`seeds_per_pass` splits the seeds into passes of at most ``MEMORY_BUDGET`` bytes.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from bnexp.errors import ConfigError
from bnexp.probe.assemble import Item, ProbeTensors, assemble
from bnexp.probe.gradients import norms_of, per_sample_cosine, sample_losses
from bnexp.probe.single import dropout_off, readout_inputs
from bnexp.probe.spec import ProbeSpec, layer_indices

__all__ = ["BATCH_SEEDS", "MEMORY_BUDGET", "Stack", "StackBuilder", "check_batch_seeds", "probe_stacked",
           "seeds_per_pass", "stack"]

BATCH_SEEDS = ("auto", True, False)
MEMORY_BUDGET = 2 * 2**30  # bytes of activations, autograd graph and weights per vmapped pass
GRAPH_FACTOR = 10  # (n, width) tensors kept per hidden layer and replicate (features, saved for backward)


def check_batch_seeds(setting) -> str | bool:
    """``runtime.batch_seeds``: ``auto`` (batch at epochs = 0 when n_seeds ≥ 2, else or when vmap fails the
    per-seed loop), ``true`` (always batch at epochs = 0; a vmap failure is an error) or ``false``."""
    if setting == "auto" or isinstance(setting, bool):
        return setting
    raise ConfigError("runtime.batch_seeds", setting, BATCH_SEEDS)


def seeds_per_pass(n_seeds: int, depth: int, width: int, batch: int, d_in: int, itemsize: int,
                   budget: int | None = None, *, samples: int = 0) -> int:
    """How many replicates one pass holds within ``budget`` bytes (default ``MEMORY_BUDGET``; at least 1, at
    most ``n_seeds``); ``samples``: the per-sample gradients the alignment keeps (m copies of the weights)."""
    budget = MEMORY_BUDGET if budget is None else budget
    graph = (depth + 2) * batch * width * GRAPH_FACTOR
    weights = (depth * width * width + d_in * width) * (1 + samples) + d_in * batch
    return max(1, min(n_seeds, budget // max(1, (graph + weights) * itemsize)))


class _Features(nn.Module):
    """``forward`` = ``net.forward_features``, so that ``functional_call`` returns the features too."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor):
        return self.net.forward_features(x)


@dataclass
class Stack:
    """R models of one structure as stacked ``(R, ...)`` parameters and buffers (keys prefixed ``net.``)."""

    wrapper: _Features
    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    weight_keys: list[str]  # the keys of model.weight_layers()' weights, in that order
    size: int


def stack(models: Sequence[nn.Module]) -> Stack:
    """Stack ``models`` (same class, config and mode; e.g. one per seed). The models are not modified."""
    models = list(models)
    params, buffers = stack_module_state(models)
    base = models[0]
    names = {id(module): name for name, module in base.named_modules()}
    keys = [f"net.{names[id(m)]}.weight" for m in base.weight_layers()]
    return Stack(_Features(base), {f"net.{k}": v for k, v in params.items()},
                 {f"net.{k}": v for k, v in buffers.items()}, keys, len(models))


def stack_tensors(structure: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]) -> Stack:
    """A :class:`Stack` of already stacked ``(R, ...)`` tensors keyed as ``structure``'s own names."""
    names = {id(module): name for name, module in structure.named_modules()}
    keys = [f"net.{names[id(m)]}.weight" for m in structure.weight_layers()]
    size = next(iter(params.values())).shape[0]
    return Stack(_Features(structure), {f"net.{k}": v for k, v in params.items()},
                 {f"net.{k}": v for k, v in buffers.items()}, keys, size)


# The layers whose weight ``bnexp.nn.init.init_weights`` redraws (its documented contract); every other
# tensor keeps its construction value.
REDRAWN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _redrawn_names(model: nn.Module) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if isinstance(module, REDRAWN)}


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


class StackBuilder:
    """Stacks of per-seed models equal to ``initialise(construct(seed), seed)``, built on ``pool``'s threads.

    ``construct(seed)`` builds the module (using torch's global generator: only ever called from one thread at
    a time) and ``initialise(model, seed)`` redraws its weights in place from the seed's own generator. Two
    constructions (two seeds) decide whether construction randomness outlives initialisation (see the module
    doc); ``shared`` says it does not, and then seeds are initialised into slices of one set of tensors.
    """

    def __init__(self, construct: Callable[[int], nn.Module], initialise: Callable[[nn.Module, int], None],
                 seeds: Sequence[int], pool: Executor, workers: int):
        self.construct, self.initialise, self.pool = construct, initialise, pool
        first = construct(seeds[0])
        second = seeds[1] if len(seeds) > 1 else seeds[0] + 1
        other = construct(second)
        state, redrawn = _state(other), _redrawn_names(first)
        self.shared = all(name in redrawn or (name in state and torch.equal(t, state[name]))
                          for name, t in _state(first).items()) and len(state) == len(_state(first))
        self.structure = first.train()  # the main thread's functional_call module: only the main thread uses it
        self.base = ({name: p.detach().clone() for name, p in first.named_parameters()},
                     {name: b.detach().clone() for name, b in first.named_buffers()})
        self.templates: queue.Queue[nn.Module] = queue.Queue()
        self.built: dict[int, nn.Module] = {}  # constructed models not yet used (not shared)
        if not self.shared:
            self.built = {seeds[0]: copy.deepcopy(first), second: other}
        else:
            self.templates.put(other)
            for _ in range(max(0, workers - 1)):
                self.templates.put(copy.deepcopy(other))

    def _init_slice(self, params: dict[str, Tensor], r: int, seed: int) -> None:
        template = self.templates.get()
        try:
            for name, param in template.named_parameters():
                param.data = params[name][r]
            self.initialise(template, seed)
        finally:
            self.templates.put(template)

    def build(self, seeds: Sequence[int], device: torch.device | str) -> Stack:
        """The stack of ``seeds``' models, on ``device``, in train mode."""
        if not self.shared:
            jobs = []
            for seed in seeds:
                model = self.built.pop(seed, None) or self.construct(seed)
                jobs.append((model, self.pool.submit(self.initialise, model, seed)))
            for _, job in jobs:
                job.result()
            return stack([model.to(device).train() for model, _ in jobs])
        count = len(seeds)
        with torch.no_grad():
            params = {name: p.unsqueeze(0).repeat(count, *[1] * p.dim()) for name, p in self.base[0].items()}
            buffers = {name: b.unsqueeze(0).repeat(count, *[1] * b.dim()) for name, b in self.base[1].items()}
        for job in [self.pool.submit(self._init_slice, params, r, seed) for r, seed in enumerate(seeds)]:
            job.result()
        params = {name: t.to(device).requires_grad_() for name, t in params.items()}
        buffers = {name: t.to(device) for name, t in buffers.items()}
        return stack_tensors(self.structure, params, buffers)


def probe_stacked(st: Stack, x: Tensor, y: Tensor, spec: ProbeSpec, *, weights: bool = True) -> list[list[Item]]:
    """``probe.probe`` of every stacked model r on its batch ``(x[r], y[r])``, in one vmapped pass.

    ``x``: ``(R, n, ...)``, ``y``: ``(R, n)``. Returns per replicate the items ``probe.probe`` returns (same
    metrics, same order). Dropout is off, as in ``probe.probe``. Raises what vmap raises for a model it cannot
    batch (e.g. data-dependent Python control flow).
    """
    chosen: list[int] = []
    m = min(spec.alignment_samples, x.shape[1])
    net = st.wrapper.net
    with readout_inputs(net, spec.alignment) as captured, dropout_off(net), \
            torch.set_grad_enabled(spec.grad_norms or spec.alignment):

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], xb: Tensor, yb: Tensor):
            captured.clear()
            logits, features = functional_call(st.wrapper, (params, buffers), (xb,), strict=True)
            chosen[:] = layer_indices(spec.layers, len(features))
            reps = [features[layer][spec.point] for layer in chosen]
            if not spec.alignment and spec.loss == "ce":
                return F.cross_entropy(logits, yb), reps
            losses = sample_losses(logits, yb, spec.loss)
            if not spec.alignment:
                return losses.mean(), reps
            return losses.mean(), reps, losses[:m], captured[-1][:m].flatten(1)

        out = vmap(one, randomness="error")(st.params, st.buffers, x, y)
        loss, reps = out[0], out[1]
        weights_in = [st.params[key] for key in st.weight_keys]
        norms = cosine = None
        if spec.grad_norms:
            grads = torch.autograd.grad(loss.sum(), weights_in, allow_unused=True, retain_graph=spec.alignment)
            norms = norms_of(grads, weights_in, 1)  # (R, K)
        if spec.alignment:
            cosine = per_sample_cosine(out[2], [p for p in st.params.values() if p.requires_grad], stacked=True)
    tensors = ProbeTensors(
        reps=list(zip(chosen, (h.detach() for h in reps))), loss=loss.detach(),
        inputs=x.flatten(2) if spec.input else None, grad_norms=norms,
        readout_input=out[3].detach() if spec.alignment else None, grad_cosine=cosine,
        weights=[w.detach() for w in weights_in] if weights else None,
    )
    del out, reps
    return assemble(tensors, spec)
