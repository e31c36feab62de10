"""The public trainer API: determinism, vmapped seeds and hparams, errors, NaN guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment
from users_emitter import compile_as_users_do

import envs
import jaxpg

SMALL = {
    "reinforce": dict(num_envs=4, num_steps=64, total_timesteps=4 * 64 * 3, hidden_sizes=(16,)),
    "ppo": dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 3, hidden_sizes=(16,)),
}


@pytest.fixture(scope="module")
def cartpole():
    return envs.make("CartPole-v1")


@pytest.fixture(scope="module")
def trainers(cartpole):
    """One trainer per algorithm for the whole module, so compiled programs are reused."""
    return {algo: jaxpg.make_trainer(algo, *cartpole, **config) for algo, config in SMALL.items()}


def leaves(tree):
    """Leaves as arrays, PRNG keys as their raw data."""
    return [jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            for x in jax.tree.leaves(tree)]


def trees_close(a, b, **tol):
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **tol)


@pytest.mark.integration
@pytest.mark.parametrize("algo", ["reinforce", "ppo"])
def test_same_key_same_result_and_vmapped_seed_equals_single_run(algo, trainers):
    trainer = trainers[algo]
    keys = jax.random.split(jax.random.key(7), 3)
    first = trainer.train(keys[1])
    again = trainer.train(keys[1])
    for x, y in zip(leaves(first), leaves(again)):
        assert np.array_equal(np.asarray(x), np.asarray(y))  # bit-identical
    batched_state, batched_metrics = jax.jit(jax.vmap(trainer.train))(keys)
    single_state, single_metrics = first
    trees_close(jax.tree.map(lambda x: x[1], batched_metrics), single_metrics, rtol=1e-4, atol=1e-5)
    trees_close(jax.tree.map(lambda x: x[1], batched_state.params), single_state.params, rtol=1e-4, atol=1e-5)
    assert batched_metrics["episode_return"].shape == (3, trainer.total_iterations)


@pytest.mark.integration
def test_hparams_are_traced_leaves_that_vmap(trainers):
    trainer = trainers["reinforce"]
    assert {"lr", "gamma", "ent_coef", "vf_coef", "max_grad_norm"} <= set(trainer.hparams)
    assert all(v.shape == () and v.dtype == jnp.float32 for v in trainer.hparams.values())
    lrs = jnp.array([1e-4, 3e-3])
    key = jax.random.key(7)
    state, _ = jax.jit(jax.vmap(lambda lr: trainer.train(key, {"lr": lr})))(lrs)
    np.testing.assert_allclose(state.hparams["lr"], lrs)
    single, _ = trainer.train(key, {"lr": 3e-3})
    trees_close(jax.tree.map(lambda x: x[1], state.params), single.params, rtol=1e-4, atol=1e-5)
    assert not np.allclose(*[np.asarray(jax.tree.leaves(state.params)[0][i]) for i in range(2)])


def test_step_init_act_evaluate(trainers):
    trainer = trainers["ppo"]
    state = trainer.init(jax.random.key(0))
    state, metrics = trainer.step(state)
    assert int(state.iteration) == 1
    for name in ("episode_return", "episode_length", "policy_loss", "value_loss", "entropy", "grad_norm",
                 "approx_kl", "clip_fraction", "explained_variance", "learning_rate", "env_steps"):
        assert np.isfinite(float(metrics[name])), name
    obs = jnp.zeros((5, 4))
    actions = trainer.act(state, obs, jax.random.key(1))
    assert actions.shape == (5,) and set(np.asarray(actions).tolist()) <= {0, 1}
    assert trainer.act(state, obs[0], deterministic=True).shape == ()
    returns = jaxpg.evaluate(trainer, state, jax.random.key(2), num_episodes=7)
    assert returns.shape == (7,) and bool((returns >= 1).all())


def test_iterate_is_steps_bit_for_bit(trainers):
    """`iterate(state, 2)` is two `step`s, state and metrics to the bit: the chunking that `fit`,
    resume and `train` rely on (tests/test_fit.py checks `train` itself under -m integration)."""
    trainer = trainers["ppo"]
    start = trainer.init(jax.random.key(3))
    step = compile_as_users_do(trainer.step, start)
    iterate = compile_as_users_do(trainer.iterate, start, 2, static_argnums=1)
    stepped, first = step(start)
    stepped, second = step(stepped)
    iterated, metrics = iterate(start)
    for x, y in zip(leaves(stepped), leaves(iterated)):
        assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
    for name in metrics:
        joined = np.stack([first[name], second[name]])
        assert np.array_equal(np.asarray(metrics[name]), joined, equal_nan=True), name


def test_bad_input_is_rejected_before_compiling(cartpole, trainers):
    env, params = cartpole
    cases = [
        (dict(algo="sac"), "unknown algorithm 'sac'; accepted: reinforce, ppo, grpo"),
        (dict(num_envs=0), "num_envs=0 must be a positive integer"),
        (dict(num_steps=-3), "num_steps=-3 must be a positive integer"),
        (dict(lr=0.0), r"lr=0 is out of range; accepted: \(0.0, inf\)"),
        (dict(lr=-1e-3), "lr=-0.001 is out of range"),
        (dict(gamma=1.5), r"gamma=1.5 is out of range; accepted: \(0.0, 1.0\]"),
        (dict(gamma=0.0), "gamma=0 is out of range"),
        (dict(hidden_sizes=(64, 0)), "hidden_sizes"),
        (dict(activation="sigmoid"), "activation='sigmoid' is unknown; accepted: tanh"),
        (dict(baseline="median"), "baseline='median' is unknown; accepted: none, mean, value"),
        (dict(algo="reinforce", baseline="moving_average"),
         r"baseline='moving_average' changes nothing with normalize_returns=True"),
        (dict(distribution="beta"), "distribution='beta' needs a continuous"),
        (dict(policy="linear"), "policy='linear'"),
        (dict(learning_rate=1e-3), r"unknown option\(s\) \['learning_rate'\]"),
    ]
    for options, message in cases:
        options = dict(options)
        algo = options.pop("algo", "reinforce")
        with pytest.raises(ValueError, match=message):
            jaxpg.make_trainer(algo, env, params, **options)
    with pytest.raises(ValueError, match="num_minibatches=3 must divide"):
        jaxpg.make_trainer("ppo", env, params, num_minibatches=3)
    with pytest.raises(ValueError, match="clip_eps=1 is out of range"):
        jaxpg.make_trainer("ppo", env, params, clip_eps=1.0)
    trainer = trainers["reinforce"]
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['clip_eps'\]"):
        trainer.train(jax.random.key(0), {"clip_eps": 0.1})
    with pytest.raises(ValueError, match="gamma=2 is out of range"):
        trainer.train(jax.random.key(0), {"gamma": 2.0})
    pendulum = envs.make("Pendulum-v1")
    with pytest.raises(ValueError, match="distribution='categorical' needs a Discrete"):
        jaxpg.make_trainer("ppo", *pendulum, distribution="categorical")


class NaNRewardCartPole(envs.cartpole.CartPole):
    """CartPole whose reward is NaN with probability 1/2000 per step."""

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = super().step_env(key, state, action, params)
        poisoned = jax.random.uniform(jax.random.fold_in(key, 1)) < 1 / 2000
        return obs, state, jnp.where(poisoned, jnp.nan, reward), terminated, info

    @property
    def name(self):
        return "NaNRewardCartPole"


@pytest.mark.integration
def test_nan_updates_are_skipped_reported_and_nothing_is_lost():
    env = NaNRewardCartPole()
    # CartPole's fast step passes the whole key to reset; this test env needs its own stream.
    env.step = lambda key, state, action, params=None: environment.Environment.step(env, key, state, action, params)
    trainer = jaxpg.make_trainer(
        "ppo", env, env.default_params, num_envs=4, num_steps=128, total_timesteps=512 * 40
    )
    with pytest.warns(RuntimeWarning, match="non-finite loss, gradient or parameter at .* update"):
        state, metrics = trainer.train(jax.random.key(0))
    skipped = np.asarray(metrics["nonfinite"])
    assert 0 < skipped.sum() < len(skipped)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state.params))
    assert np.isfinite(np.asarray(metrics["episode_length"])).all()
    assert np.isfinite(np.asarray(metrics["grad_norm"])[~skipped]).all()
