"""Optimisers: the paper's adaptive step and the optax transformations the algorithms
follow (PAPER.md §3; claim C1).

* :func:`adaptive_scale` is *the* adaptive step, ``η = s/(4 + 2‖g‖²)``: the optax
  transformation :func:`adaptive_step`, Algorithm 2's per-token steps
  (:meth:`lpg.features.AbstractFeatureMap.token_steps`) and its bigram kernel all call it.
* :func:`make` turns a name (``"adaptive"``, ``"constant"``, ``"adagrad"``, ``"adam"``) or
  any optax factory ``learning_rate -> GradientTransformation`` into one
  ``optax.GradientTransformation`` with an injectable learning rate, built once and
  stored by an algorithm (:func:`warmup` makes such a factory with a linear learning-rate
  warm-up).
  The learning rate has one source, ``Hyper.lr``: an algorithm's
  ``init`` writes it into the optimiser state (:func:`init_state`), where every step
  reads it (:func:`learning_rate`), so sweeping it is a ``vmap``, not a recompile.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

Factory = Callable[..., optax.GradientTransformation]


def adaptive_scale(sq_norm: Float[Array, "*b"], scale=1.0) -> Float[Array, "*b"]:
    """The paper's adaptive step ``scale/(4 + 2‖g‖²)`` from ``‖g‖²`` (PAPER.md §3)."""
    return scale / (4.0 + 2.0 * sq_norm)


def adaptive_step(learning_rate: float = 1.0) -> optax.GradientTransformation:
    """The adaptive step ``η_t = lr/(4 + 2‖g_t‖²)`` as an optax transformation. Incoming
    ``updates`` are loss gradients ``−g``; the output is ``η_t·g`` (``lr`` is 1 in the
    paper)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        eta = adaptive_scale(optax.tree_utils.tree_norm(updates, squared=True), learning_rate)
        return jax.tree_util.tree_map(lambda u: -eta * u, updates), state

    return optax.GradientTransformation(init, update)


def torch_adagrad(learning_rate) -> optax.GradientTransformation:
    """Adagrad with ``torch.optim.Adagrad``'s defaults (the authors' optimiser): no initial
    accumulator, ``eps = 1e-10``."""
    return optax.adagrad(learning_rate, initial_accumulator_value=0.0, eps=1e-10)


def warmup(factory: Factory, steps: int) -> Factory:
    """``factory`` with a linear learning-rate warm-up: the update of step ``t`` (from 0)
    is scaled by ``min(1, (t + 1)/steps)`` (an optax schedule), so the first step moves
    the weights by ``1/steps`` of a full one."""
    if steps < 1:
        raise ValueError(f"warm-up steps must be an integer >= 1, got {steps!r}")

    def schedule(count):
        return jnp.minimum(1.0, (count + 1.0) / steps)

    def warmed(learning_rate) -> optax.GradientTransformation:
        return optax.chain(factory(learning_rate), optax.scale_by_schedule(schedule))

    return warmed


OPTIMIZERS: dict[str, Factory] = {
    "adaptive": adaptive_step,
    "constant": optax.sgd,
    "adagrad": torch_adagrad,
    "adam": optax.adam,
}
"""The optimiser names the CLI and the convenience spellings accept."""


def make(spec: str | Factory) -> optax.GradientTransformation:
    """One transformation for ``spec``: a name of :data:`OPTIMIZERS` or an optax factory
    taking ``learning_rate`` (e.g. ``optax.adam``). Its learning rate is injected
    (``optax.inject_hyperparams``) and set by :func:`init_state`."""
    if isinstance(spec, str):
        if spec not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))} or an optax factory "
                             f"learning_rate -> GradientTransformation, got {spec!r}")
        factory = OPTIMIZERS[spec]
    elif callable(spec) and not isinstance(spec, optax.GradientTransformation):
        factory = spec
    else:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))} or an optax factory "
                         f"learning_rate -> GradientTransformation, got {spec!r}")
    return optax.inject_hyperparams(factory)(learning_rate=1.0)


def is_adaptive(spec: str | Factory) -> bool:
    """Whether ``spec`` names the paper's adaptive step."""
    return spec == "adaptive" or spec is adaptive_step


def init_state(tx: optax.GradientTransformation, w0, lr):
    """``tx``'s state for weights ``w0`` with learning rate ``lr`` (traced or not), in the
    weights' dtype as ``optax.inject_hyperparams`` stores it."""
    state = tx.init(w0)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(w0))
    return state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.asarray(lr, dtype)})


def learning_rate(opt_state) -> Array:
    """The learning rate stored in an optimiser state made by :func:`init_state`."""
    return opt_state.hyperparams["learning_rate"]


def ascend(tx: optax.GradientTransformation, w, opt_state, g):
    """One step of ``tx`` along the ascent direction ``g`` (a gradient of a
    log-likelihood objective): ``(new weights, new optimiser state)``."""
    updates, opt_state = tx.update(jax.tree_util.tree_map(jnp.negative, g), opt_state, w)
    return optax.apply_updates(w, updates), opt_state
