"""No knob does nothing: every traced hyperparameter of every algorithm changes what is trained.

For each algorithm, a few tiny setups (static options under which a hyperparameter can act:
`lr_end` needs a schedule, `baseline_decay` a moving-average baseline, `clip_eps` a second update on
the same batch) train one vmapped program in which run 0 and run 1 use the defaults and run i + 2
changes hyperparameter i alone. Every hyperparameter the algorithm declares must move the run's
parameters in at least one setup; a new hyperparameter falls under the guard without being listed.
Settings that would make a hyperparameter act on nothing are refused when the trainer is built
(tests/test_config.py); this guard covers the traced ones.
Runs 0 and 1 must agree bit for bit, or the comparison would prove nothing.
"""

import math

import jax
import numpy as np
import pytest

import envs
import jaxpg

TINY = dict(hidden_sizes=(8,), lr=1e-2, lr_schedule="linear")
SETUPS = {
    "ppo": [dict(num_envs=4, num_steps=8, update_epochs=2, num_minibatches=2, total_timesteps=4 * 8 * 3)],
    "reinforce": [
        dict(num_envs=4, num_steps=20, baseline="value", total_timesteps=4 * 20 * 3),
        # A scalar baseline acts only without the batch standardisation, which would subtract it.
        dict(num_envs=4, num_steps=20, baseline="moving_average", normalize_returns=False, total_timesteps=4 * 20 * 3),
    ],
    "grpo": [dict(num_groups=2, group_size=2, max_steps=20, num_iterations=2, total_timesteps=4 * 20 * 3)],
}


def other_value(name, default, spec):
    """A valid value of `name` far enough from its default to matter."""
    low, high, _, high_inclusive = spec.interval
    if default is None or math.isnan(default) or math.isinf(default):
        return {"clip_eps_high": 0.01, "delta": 1.0001}[name]  # the options that are off by default
    if default == 0.0:
        return {"lr_end": 5e-3}.get(name, 0.5)
    if name in ("max_grad_norm", "clip_eps"):
        return 1e-3  # tight enough to act on the first updates of a tiny run
    changed = default * 0.5
    return changed if changed > low else (default + high) / 2 if math.isfinite(high) else default * 2


@pytest.mark.parametrize("algo", list(SETUPS))
def test_every_traced_hyperparameter_changes_the_run(algo):
    env, params = envs.make("CartPole-v1")
    moved = set()
    for setup in SETUPS[algo]:
        trainer = jaxpg.make_trainer(algo, env, params, **TINY, **setup)
        names = list(trainer.hparams)
        specs = trainer.Config.specs()
        columns = {name: [float(trainer.hparams[name])] * (len(names) + 2) for name in names}
        for i, name in enumerate(names):
            columns[name][i + 2] = other_value(name, float(trainer.hparams[name]), specs[name])
        hparams = {name: np.asarray(values, np.float32) for name, values in columns.items()}
        state, _ = jax.jit(jax.vmap(lambda hp: trainer.train(jax.random.key(0), hp)))(hparams)
        final = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
        same = lambda a, b: all(np.array_equal(leaf[a], leaf[b]) for leaf in final)
        assert same(0, 1), "two runs with the same hyperparameters differ: the guard cannot compare"
        moved |= {name for i, name in enumerate(names) if not same(0, i + 2)}
    dead = sorted(set(jaxpg.ALGORITHMS[algo].Config.hparam_names()) - moved)
    assert not dead, f"{algo}: these hyperparameters changed nothing in any setup: {dead}"


# Every environment a user can make by name, at sizes that compile quickly. LQR's state bound is
# tightened so that a rollout of a few steps reaches it and its penalty acts. SearchRanking runs its
# multi-session MDP, where every field acts: in one-session episodes, which always end after their
# one step, max_steps_in_episode and the return-visit weights have nothing to act on.
# The control tasks run in the unit tier; SearchRanking and the token tasks, whose programs compile
# slowly, under -m integration.
ENVIRONMENTS = [("CartPole-v1", {}), ("LQR-v0", {"state_bound": 1.0})] + [
    pytest.param(env_id, options, marks=pytest.mark.integration) for env_id, options in (
        ("SearchRanking-v0", {"n_products": 50, "multi_session": True}), ("Copy-v0", {}), ("Addition-v0", {}),
        ("DropZeros-v0", {}))]


def scalar_fields(env_params):
    """The numeric scalar fields `--env-grid` can sweep: leaves of the params pytree."""
    leaves = jax.tree_util.tree_flatten_with_path(env_params)[0]
    return [path[0].name for path, leaf in leaves
            if len(path) == 1 and np.ndim(leaf) == 0 and np.issubdtype(np.asarray(leaf).dtype, np.number)]


def other_env_value(name, value):
    """A value that acts within a few steps: an episode cut at 3 steps, a threshold or bound 100
    times closer, any other number scaled."""
    if name == "max_steps_in_episode":
        return 3
    if isinstance(value, (bool, np.bool_)) or np.issubdtype(np.asarray(value).dtype, np.integer):
        return value + 1
    return value * 0.01 if value else 0.5


@pytest.mark.parametrize("env_id, options", ENVIRONMENTS, ids=lambda value: value if isinstance(value, str) else "")
def test_every_environment_field_a_sweep_accepts_changes_the_run(env_id, options):
    """A field `--env-grid` accepts either changes what is trained (the trajectories, rewards or
    parameters of a tiny run) or is refused by the sweep, which traces training and refuses the
    fields no program reads (LQR's `gamma`)."""
    from jaxpg.run.sweep import unread_env_fields

    env, params = envs.make(env_id, **options)
    trainer = jaxpg.make_trainer("reinforce", env, params, num_envs=16, num_steps=8, total_timesteps=16 * 8 * 2,
                                 hidden_sizes=(8,), lr=1e-2)
    unread = unread_env_fields(trainer, params, scalar_fields(params))
    fields = [name for name in scalar_fields(params) if name not in unread]
    runs = [params, params] + [params.replace(**{n: other_env_value(n, getattr(params, n))}) for n in fields]
    batch = jax.tree.map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *runs)
    state, metrics = jax.jit(jax.vmap(lambda p: trainer.train(jax.random.key(0), None, p)))(batch)
    final = [np.asarray(leaf) for leaf in jax.tree.leaves((state.params, state.obs, metrics))]
    same = lambda a, b: all(np.array_equal(leaf[a], leaf[b], equal_nan=True) for leaf in final)
    assert same(0, 1)
    dead = [name for i, name in enumerate(fields) if same(0, i + 2)]
    assert not dead, f"{env_id}: these parameters are read by training but changed nothing: {dead}"
