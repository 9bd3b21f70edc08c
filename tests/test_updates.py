"""The Monte Carlo mean of one policy-gradient update equals the exact expected update,
summed over all of ``Y^N`` (PAPER.md §3).

One fixed context ``x`` (a task whose every context is ``x``), random weights ``w``, a
constant step with ``lr = 1``: then ``w_after − w_before`` is exactly the ascent
direction ``g`` that :class:`lpg.PolicyGradient` follows. Its mean over 20000 keys
(``vmap``) is compared with ``E[g]`` computed in float64 NumPy from the definitions:
``E_{y~q}[ρ(y) A(y) ∇ log p_w(y|x)]`` for outcome rewards and
``E_{y~q}[Σ_i r_i ∇ log p_w(y_i|x, y_<i)]`` for process rewards, with the bigram gradient
``∇_{W1} = outer(x, e_y − p)``, ``∇_{W2}[prev] = e_y − p`` written out by hand.
Tolerance: 5 Monte Carlo standard errors per coordinate (max-abs), fixed seed."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    FixedContextTask,
    all_responses,
    assert_mean_matches,
    flat,
    flat_batch,
    np_bigram_grad,
    np_bigram_log_prob,
    np_token_steps,
    xla_optimisations,
)

import lpg
from lpg.policy import token_steps_reference

pytestmark = pytest.mark.usefixtures("fast_compile")

K, N, D = 3, 3, 3
N_MC = 20000


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    x = np.array([1.0, -1.0, 0.5], np.float32)
    W1 = (0.6 * rng.standard_normal((D, K))).astype(np.float32)
    W2 = (0.6 * rng.standard_normal((K, K))).astype(np.float32)
    B1 = (0.8 * rng.standard_normal((D, K))).astype(np.float32)  # a base model q0
    B2 = (0.8 * rng.standard_normal((K, K))).astype(np.float32)
    ys = all_responses(K, N)
    p = np.exp([np_bigram_log_prob(W1, W2, x, y) for y in ys])
    y_star = ys[np.argsort(p)[len(p) // 2]]  # a response of middling probability
    task = FixedContextTask(jnp.asarray(x), jnp.asarray(y_star, jnp.int32), N, K)
    base = lpg.BigramParams(jnp.asarray(B1), jnp.asarray(B2))
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(0), n_test=1, base=base)
    return dict(x=x, W1=W1, W2=W2, B1=B1, B2=B2, ys=ys, p=p, y_star=y_star, problem=problem)


def _grad(s, y, coef):
    g1, g2 = np_bigram_grad(s["W1"], s["W2"], s["x"], y, coef)
    return np.concatenate([g1.ravel(), g2.ravel()])


def _prefix_rewards(y, y_star):
    return np.array([float(np.array_equal(y[: i + 1], y_star[: i + 1])) for i in range(len(y))])


def _mc_updates(alg, problem, w0, zeta=np.inf, seed=0, n=N_MC):
    h = lpg.hyper(lr=1.0, zeta=zeta)

    @jax.jit
    def run(keys):
        state = alg.init(w0, h)
        return jax.vmap(lambda k: jax.tree_util.tree_map(jnp.subtract, alg.step(state, k, problem, h)[0].w, w0))(keys)

    g = run(jax.random.split(jax.random.PRNGKey(seed), n))
    return np.concatenate([np.asarray(a, np.float64).reshape(n, -1) for a in g], axis=1)


def _w0(s):
    return lpg.BigramParams(jnp.asarray(s["W1"]), jnp.asarray(s["W2"]))


def _exact(s, weight, coef_of):
    """``Σ_y weight(y) · grad(y, coef_of(y))`` over all of ``Y^N``."""
    return sum(weight(i, y) * _grad(s, y, coef_of(y)) for i, y in enumerate(s["ys"]))


@pytest.mark.parametrize(
    "reward,signed,path",
    [("outcome", False, "event"), ("outcome", False, "sample"), ("outcome", True, "sample"),
     ("process", False, "event"), ("process", False, "sample"), ("process", True, "sample")],
)
def test_on_policy_expected_update(setup, reward, signed, path):
    s = setup
    alg = lpg.PolicyGradient(lpg.rewards.by_name(reward, signed), batch_size=1, optimizer="constant", event_path=(path == "event"))
    mc = _mc_updates(alg, s["problem"], _w0(s), seed=10 * (reward == "process") + 2 * signed + (path == "sample"))

    def rewards_of(y):
        if reward == "outcome":
            r = np.full(N, float(np.array_equal(y, s["y_star"])))  # the same on every token
        else:
            r = _prefix_rewards(y, s["y_star"])
        return 2 * r - 1 if signed else r

    exact = _exact(s, lambda i, y: s["p"][i], rewards_of)
    se = assert_mean_matches(mc, exact, what=f"{reward} signed={signed} {path}")
    assert np.abs(exact).max() > 10 * se.max()  # the comparison has power
    if reward == "process":
        # Reward-to-go (Σ_{j≥i} r_j) instead of the prefix reward is a different update,
        # and this test tells them apart.
        rtg = _exact(s, lambda i, y: s["p"][i], lambda y: np.cumsum(rewards_of(y)[::-1])[::-1])
        assert np.max(np.abs(rtg - exact) / (se + 1e-12)) > 20


def _pair_exact(s, adv_fn):
    """Exact ``E[(1/G) Σ_j A_j ∇ log p(y_j)]`` for a group of ``G = 2`` i.i.d. on-policy
    samples with ±1 outcome rewards, enumerating all ``(k^N)²`` pairs."""
    grads = [_grad(s, y, np.ones(N)) for y in s["ys"]]
    r = np.array([2.0 * np.array_equal(y, s["y_star"]) - 1 for y in s["ys"]])
    total = 0.0
    for a, b in itertools.product(range(len(s["ys"])), repeat=2):
        A = adv_fn(np.array([r[a], r[b]]))
        total = total + s["p"][a] * s["p"][b] * 0.5 * (A[0] * grads[a] + A[1] * grads[b])
    return total


@pytest.mark.parametrize("baseline", ["batch_mean", "rloo", "grpo"])
def test_baseline_expected_update(setup, baseline):
    s = setup
    alg = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage=baseline, batch_size=1, group_size=2, optimizer="constant")
    mc = _mc_updates(alg, s["problem"], _w0(s), seed=11)

    def adv(r):
        if baseline == "batch_mean":
            return r - r.mean()
        if baseline == "rloo":
            return r - r[::-1]  # leave-one-out mean of a pair is the other sample
        return (r - r.mean()) / (r.std() + 1e-8)

    exact = _pair_exact(s, adv)
    se = assert_mean_matches(mc, exact, what=baseline)
    assert np.abs(exact).max() > 10 * se.max()
    # RLOO is unbiased: its expectation is the plain E[r ∇ log p]; the batch mean of a
    # pair halves it.
    plain = _exact(s, lambda i, y: s["p"][i], lambda y: np.full(N, 2.0 * np.array_equal(y, s["y_star"]) - 1))
    if baseline == "rloo":
        np.testing.assert_allclose(exact, plain, atol=1e-12)
    if baseline == "batch_mean":
        np.testing.assert_allclose(exact, 0.5 * plain, atol=1e-12)


@pytest.mark.parametrize("path", ["event", "sample"])
def test_off_policy_clipped_importance_expected_update(setup, path):
    # Behaviour q = ½q0 + ½Unif(Y^N); ratio p/q clipped to [1/ζ, ζ] with ζ = 1.5.
    s, zeta = setup, 1.5
    alg = lpg.PolicyGradient("outcome", behaviour="mixture", importance=True, batch_size=1, optimizer="constant", event_path=(path == "event"))
    mc = _mc_updates(alg, s["problem"], _w0(s), zeta=zeta, seed=21)
    q0 = np.exp([np_bigram_log_prob(s["B1"], s["B2"], s["x"], y) for y in s["ys"]])
    q = 0.5 * q0 + 0.5 / K**N
    ratio = np.clip(s["p"] / q, 1 / zeta, zeta)
    assert ratio.min() < 1 < ratio.max() and np.any(ratio == zeta)  # the clip is active
    i_star = int(np.flatnonzero((s["ys"] == s["y_star"]).all(1))[0])
    exact = q[i_star] * ratio[i_star] * _grad(s, s["y_star"], np.ones(N))
    assert_mean_matches(mc, exact, what=f"importance {path}")


@pytest.mark.parametrize("behaviour,path", [("base", "event"), ("mixture", "event"), ("mixture", "sample")])
def test_off_policy_process_expected_update(setup, behaviour, path):
    # Frozen behaviour q (q0, or ½q0 + ½Unif(Y^N) over whole responses), no ratio:
    # E_{y~q}[Σ_i r_i ∇ log p_w(y_i|x, y_<i)].
    s = setup
    alg = lpg.PolicyGradient("process", behaviour=behaviour, batch_size=1, optimizer="constant", event_path=(path == "event"))
    mc = _mc_updates(alg, s["problem"], _w0(s), seed=31 + (path == "sample"))
    q = np.exp([np_bigram_log_prob(s["B1"], s["B2"], s["x"], y) for y in s["ys"]])
    if behaviour == "mixture":
        q = 0.5 * q + 0.5 / K**N
    exact = _exact(s, lambda i, y: q[i], lambda y: _prefix_rewards(y, s["y_star"]))
    assert_mean_matches(mc, exact, what=f"process {behaviour} {path}")


def test_token_loss_norm_divides_by_length(setup):
    # loss_norm="token": the same update divided by the length N (deterministic check
    # with the same keys).
    s = setup
    kw = dict(batch_size=1, optimizer="constant")
    prm = lpg.rewards.Process(signed=True)
    seq = _mc_updates(lpg.PolicyGradient(prm, **kw), s["problem"], _w0(s), seed=3, n=64)
    tok = _mc_updates(lpg.PolicyGradient(prm, loss_norm="token", **kw), s["problem"], _w0(s), seed=3, n=64)
    assert np.abs(seq).max() > 0.1
    np.testing.assert_allclose(tok, seq / N, rtol=1e-4, atol=1e-6)


def test_sgd_update_is_the_log_likelihood_gradient(setup):
    # SGD follows ∇ log p_w(y*|x) exactly (no sampling), and the adaptive step scales it
    # by 1/(4 + 2‖g‖²).
    s = setup
    g = _grad(s, s["y_star"], np.ones(N))
    for opt, scale in [("constant", 1.0), ("adaptive", 1.0 / (4 + 2 * g @ g))]:
        alg = lpg.SGD(optimizer=opt)
        h = lpg.hyper(lr=1.0)
        w1 = jax.jit(lambda k: alg.step(alg.init(_w0(s), h), k, s["problem"], h)[0].w)(jax.random.PRNGKey(0))
        np.testing.assert_allclose(flat(w1) - flat(_w0(s)), scale * g, rtol=1e-4, atol=1e-6)


def _np_token_steps(W1, W2, x, y):
    """Algorithm 2's token steps in float64 NumPy: one walk over ``y``, each position in
    order, ``g`` recomputed after every step."""
    W1, W2 = W1.astype(np.float64), W2.astype(np.float64)
    for i in range(len(y)):
        g1, g2 = np_bigram_grad(W1, W2, x, y, np.eye(len(y))[i])
        eta = 1.0 / (4.0 + 2.0 * (np.sum(g1 * g1) + np.sum(g2 * g2)))
        W1, W2 = W1 + eta * g1, W2 + eta * g2
    return np.concatenate([W1.ravel(), W2.ravel()])


@pytest.mark.parametrize("path", ["event", "sample"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_algorithm2_takes_one_adaptive_step_per_verified_token(setup, path, batch_size):
    # With m so large that every position's walk verifies (ρ ≥ 1/(2k) per draw), the
    # prefix is the whole of y*, and the update is deterministic. "token": one adaptive
    # step per token in order, each at the weights the previous one left (a NumPy loop);
    # "response": one step G/(4 + 2‖G‖²) on G = Σ_i g_i. Both average over the batch
    # (here copies of one context), so batch 2 moves w as far as batch 1.
    s = setup
    G = _grad(s, s["y_star"], np.ones(N))
    want = {"token": _np_token_steps(s["W1"], s["W2"], s["x"], s["y_star"]) - flat(_w0(s)),
            "response": G / (4 + 2 * G @ G)}
    h = lpg.hyper(lr=1.0, m=10**4)
    for unit, delta in want.items():
        alg = lpg.TokenBestOfM(event_path=(path == "event"), step_unit=unit, batch_size=batch_size)
        run = jax.jit(jax.vmap(lambda k: alg.step(alg.init(_w0(s), h), k, s["problem"], h)[0].w))
        w1 = run(jax.random.split(jax.random.PRNGKey(3), 4))
        np.testing.assert_allclose(flat_batch(w1) - flat(_w0(s))[None], np.broadcast_to(delta, (4, delta.size)),
                                   rtol=1e-4, atol=1e-6)
    # the sequential steps are not the sum of steps taken at the starting weights
    at_start = sum(g / (4 + 2 * g @ g) for g in (_grad(s, s["y_star"], np.eye(N)[i]) for i in range(N)))
    assert np.abs(want["token"] - at_start).max() > 1e-2


@pytest.mark.parametrize("steps", [lambda fmap, *a: fmap.token_steps(*a), token_steps_reference])
def test_token_steps_average_the_batch_per_position_at_the_current_weights(steps):
    # Distinct contexts and responses, walks truncated at different lengths (c = 0 past
    # them, and one token weighted 0.5), against a float64 NumPy loop over positions:
    # W += mean_b c_{b,i} g_b/(4 + 2‖g_b‖²), every g_b at the weights after position i−1.
    rng = np.random.default_rng(11)
    d, k, n, B = 3, 4, 5, 3
    W1, W2 = rng.standard_normal((d, k)), rng.standard_normal((k, k))
    xs, ys = rng.standard_normal((B, d)), rng.integers(0, k, (B, n))
    coef = (np.arange(n)[None] < np.array([[5], [2], [0]])).astype(float)
    coef[0, 3] = 0.5
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    got = jax.jit(steps, static_argnums=0)(lpg.Bigram(d, k), lpg.BigramParams(f32(W1), f32(W2)), f32(xs),
                                                 jnp.asarray(ys, jnp.int32), f32(coef))
    np.testing.assert_allclose(flat(got), np_token_steps(W1, W2, xs, ys, coef), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------
# jit vs un-jitted, vmap vs a loop, same seed → same result, padding
# ---------------------------------------------------------------------------------


def _teacher_problem(N, length=None):
    task = lpg.make_teacher(jax.random.PRNGKey(5), d=3, k=2, N=N)  # A, B do not depend on N
    rng = np.random.default_rng(2)
    base = lpg.BigramParams(
        jnp.asarray(0.5 * rng.standard_normal((3, 2)), jnp.float32), jnp.asarray(0.5 * rng.standard_normal((2, 2)), jnp.float32)
    )
    return lpg.make_problem(task, key=jax.random.PRNGKey(6), n_test=8, base=base, length=length)


def _steps(alg, problem, h, key, n_steps):
    """``n_steps`` steps of ``alg`` from the base model (a scan; no evaluation)."""
    state = alg.init(problem.base_weights(), h)
    step = lambda st, k: alg.step(st, k, problem, h)  # noqa: E731
    return jax.lax.scan(step, state, jax.random.split(key, n_steps))


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_train_jit_unjitted_vmap_loop_and_reproducible():
    # The Figure 1 post-training set-up in miniature (±1 outcome rewards, batch-mean
    # baseline, Adagrad). Checked: (a) plain call (chex's "without jit": ops dispatched one
    # by one outside the scans) vs jax.jit; (b) vmap over seeds vs a Python loop of single
    # jitted runs; (c) re-running a seed. (a) and (b): integer-valued outputs (steps,
    # query counts) identical, floats within float32 rounding (XLA may fuse and batch the
    # arithmetic differently); (c) bit-identical.
    with xla_optimisations(True):
        _jit_unjitted_vmap_loop()


def _jit_unjitted_vmap_loop():
    alg = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage="batch_mean", batch_size=4, optimizer="adagrad")
    problem, h = _teacher_problem(4), lpg.hyper(lr=0.1)
    run = lambda k: lpg.train(alg, problem, h, k, steps=4, log_every=2)  # noqa: E731
    one = jax.jit(run)
    keys = jax.random.split(jax.random.PRNGKey(9), 3)
    _assert_trees_close(run(keys[0]), one(keys[0]))
    batched = jax.jit(jax.vmap(run))(keys)
    for i, k in enumerate(keys):
        single = one(k)
        _assert_trees_close(jax.tree_util.tree_map(lambda a: a[i], batched), single)
        np.testing.assert_array_equal(
            np.round(np.exp(np.asarray(batched.curves.log_queries[i]))), np.round(np.exp(np.asarray(single.curves.log_queries)))
        )
        again = one(k)
        for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(again)):
            np.testing.assert_array_equal(a, b)
    # the seeds really differ, and training moved the weights
    assert not np.allclose(batched.curves.track_log_lik[0], batched.curves.track_log_lik[1])
    assert not np.allclose(flat(batched.state.w), 0.0)


def test_padding_equals_shorter_task():
    # N = 5 with length 3 against N = 3: same y* prefix, log-likelihoods, rewards, query
    # counts and trajectories. With batch size 1 the random streams line up (draws of
    # shape (N,) agree on their first 3 entries), so runs match seed for seed.
    padded, short = _teacher_problem(5, length=3), _teacher_problem(3)
    np.testing.assert_array_equal(padded.test_y[:, :3], short.test_y)
    np.testing.assert_array_equal(padded.test_x, short.test_x)
    rng = np.random.default_rng(4)
    w = lpg.BigramParams(jnp.asarray(rng.standard_normal((3, 2)), jnp.float32), jnp.asarray(rng.standard_normal((2, 2)), jnp.float32))
    ev = jax.jit(lambda p: lpg.evaluate(p, w))
    _assert_trees_close(ev(padded), ev(short))
    # rewards of random responses: padding positions carry nothing
    ys = jnp.asarray(rng.integers(0, 2, (64, 5)), jnp.int32)

    def rewards_of(y, y_star, length):
        return (
            lpg.rewards.outcome_reward(y, y_star, length, signed=True),
            lpg.rewards.process_rewards(y, y_star, length)[:3],
            lpg.rewards.correct_prefix_length(y, y_star, length),
        )

    star5, star3 = padded.test_y[0], short.test_y[0]
    r_pad = jax.jit(jax.vmap(lambda y: rewards_of(y, star5, padded.length)))(ys)
    r_short = jax.jit(jax.vmap(lambda y: rewards_of(y, star3, None)))(ys[:, :3])
    _assert_trees_close(r_pad, r_short)
    assert np.all(np.asarray(jax.vmap(lambda y: lpg.rewards.process_rewards(y, star5, padded.length))(ys))[:, 3:] == 0)

    algs = (lpg.PolicyGradient("process", batch_size=1, event_path=True), lpg.TokenBestOfM(batch_size=1, event_path=True))
    h = lpg.hyper(lr=1.0, m=5)

    @jax.jit
    def runs(problem, key):
        return [_steps(a, problem, h, key, 6) for a in algs]

    for key in jax.random.split(jax.random.PRNGKey(0), 2):
        for (st_p, m_p), (st_s, m_s) in zip(runs(padded, key), runs(short, key)):
            _assert_trees_close(st_p.w, st_s.w)
            np.testing.assert_allclose(m_p.log_queries, m_s.log_queries, rtol=1e-6)
            np.testing.assert_array_equal(m_p.success, m_s.success)


def test_typed_and_raw_keys_give_the_same_run():
    # The sampled path splits keys into a (B, G) grid; typed keys have shape ().
    task = lpg.make_teacher(jax.random.PRNGKey(0), d=4, k=3, N=4)
    problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=8)
    alg = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), batch_size=2, group_size=2, advantage="rloo")
    run = lambda key: lpg.train(alg, problem, lpg.hyper(), key, steps=2, log_every=1).curves.test_error  # noqa: E731
    np.testing.assert_array_equal(run(jax.random.key(3)), run(jax.random.PRNGKey(3)))
