"""Streamed random-matrix chains, batched over replicates (``bnexp simulate``; rank Eqs. 1, 6; markov Eq. 5).

Paper notation: ``H ∈ R^{d×N}``, ``M(H) = H Hᵀ/N``, one step ``H ← BN(H + γ W F(H))``. In code a representation
is ``(N samples, d features)`` and R replicates are stacked into ``h`` of shape ``(R, N, d)``, so the paper's
``W H`` is ``h @ Wᵀ`` and ``(I + γW) H`` is ``h @ (I + γW)ᵀ``. Recurrences (γ = inf means "no skip"):

* ``act_order=branch``:     ``H ← N(H + γ W F(H))``;  γ = inf: ``H ← N(W F(H))``
* ``act_order=after_norm``: ``H ← F(N(H + γ W H))``;  γ = inf: ``H ← F(N(W H))`` (rank paper Fig 2 code)
* ``space=M`` (linear, code-faithful for rank Fig 3): ``M ← D A M Aᵀ D``, ``A = I + γW`` (γ = inf: ``A = W``),
  ``D = (diag(A M Aᵀ) + eps)^{-1/2}``, symmetrised every step. Same W and X as the H chain, so
  ``M_ℓ(M-space) = M(H_ℓ)`` up to rounding; H-space is the default (M-space loses PSD near rank one).

``N`` is the normalisation: ``bn_theory`` ``x/sqrt(mean_batch(x²) + eps)`` per feature (``diag(M)^{-1/2}H``);
``bn_center`` ``(x − μ)/sqrt(var_biased + eps)``; ``none`` (vanilla) the identity, followed when
``renormalize`` is set by a rescale to ``‖H‖_F² = dN`` per replicate (scale-free metrics are unaffected;
``renorm_to=d`` rescales to ``‖H‖_F² = d`` instead, used for markov/table1, which
matters only for a saturating F such as tanh: its vanilla chain collapses at that scale, not at dN).
The input is ``H_0 = N(X)``, so every measured layer lives in the same space.

``sampler=gram`` draws ``W F(H)`` without W: its columns (code orientation) are i.i.d. ``N(0, G Gᵀ)`` with
``G = F(H)`` (N×d), and ``Gᵀ = QR`` gives ``G Gᵀ = RᵀR``, so ``Rᵀ Z`` with ``Z`` ``(min(N, d), d)`` i.i.d.
N(0, 1) has exactly that law (QR instead of a matrix square root: same law, no eigh, no
squared condition number). Cost O(d N²) and N·d normals per layer instead of O(d² N) and d².

RNG contract. Replicate r has seed ``seeds[r]`` and its own ``torch.Generator`` seeded with it. It draws its
input first (float64), then its weights in blocks of ``B`` layers (``B·(numbers per layer) ≥ 2^17``; B depends
on the width, the batch for ``gram``, never on R, dtype, depth or norm). Weights are drawn as float32 and cast
to the chain dtype: on CPU ``normal_`` is ~5× faster in float32, the law is N(0, 1) (or U[-√3, √3]) rounded to
float32, and float32 and float64 chains with the same seed see the same weights. Hence replicate s gives
bit-identical results alone or batched (every batched op here is batch-invariant), and runs that differ only
in ``norm`` (or ``act``, ``act_order``, ``dtype``, ``space``) see the same W sequence. ``chain_inputs`` returns
that X and W sequence.

Execution (CPU). Work is cut into tasks: *draw* (one block of weights for a chunk of replicates; serial per
generator, GIL released inside ``normal_``) and *step* (B layers of one lane, i.e. a group of replicates stepped
by one ``bmm`` per layer). ``threads`` worker threads (the caller's thread among them) run whichever task is
ready with torch's intra-op threads set to 1, so the draws of different generators and the matmuls of
different lanes overlap on all cores, and small matrices are never split over BLAS threads (25–100× slower on
2 cores). ``threads="auto"`` (measured in docs/performance.md): one thread when one layer's
weights over all replicates are fewer than 1000 numbers (≈ 4 µs of draws, less than what a second thread
costs the step in GIL contention), else every core. Lanes: one, unless a step's
matmul costs more than drawing its weights (then ``threads`` lanes: the matmuls are the critical path). Never
BLAS threads: they gain ≤ 1.3× for one large chain on a quiet machine but lose 3–22× as soon as another process
holds a core (docs/performance.md, "Threads"); the plan is written to run.json (``thread_plan``). On CUDA
everything runs in the caller's thread, on the device, with one host transfer
per measured layer.
"""

from bnexp.chains.draws import chain_inputs
from bnexp.chains.engine import run, simulate, states
from bnexp.chains.params import ChainParams

__all__ = ["ChainParams", "chain_inputs", "run", "simulate", "states"]
