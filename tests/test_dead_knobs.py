"""No knob does nothing: every traced hyperparameter of every algorithm changes what is trained.

For each algorithm, a few tiny setups (static options under which a hyperparameter can act:
`lr_end` needs a schedule, `baseline_decay` a moving-average baseline, `clip_eps` a second update on
the same batch) each compile one training program and run it once per hyperparameter setting: runs
0 and 1 use the defaults and run i + 2 changes hyperparameter i alone. (One program run several
times rather than one vmapped program: a vmapped program took about twice as long to compile, measured
once by hand.) Every hyperparameter the algorithm declares must move the run's parameters in at
least one setup; a new hyperparameter falls under the guard without being listed.
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
        changes = [None, None] + [
            {name: other_value(name, float(trainer.hparams[name]), specs[name])} for name in names]
        final = [[np.asarray(leaf) for leaf in jax.tree.leaves(trainer.train(jax.random.key(0), hparams)[0].params)]
                 for hparams in changes]
        same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(final[a], final[b]))
        assert same(0, 1), "two runs with the same hyperparameters differ: the guard cannot compare"
        moved |= {name for i, name in enumerate(names) if not same(0, i + 2)}
    dead = sorted(set(jaxpg.ALGORITHMS[algo].Config.hparam_names()) - moved)
    assert not dead, f"{algo}: these hyperparameters changed nothing in any setup: {dead}"


# Every environment a user can make by name, at sizes that compile quickly. LQR's state bound is
# tightened so that a rollout of a few steps reaches it and its penalty acts. SearchRanking runs its
# multi-session MDP, where every field acts: in one-session episodes, which always end after their
# one step, max_steps_in_episode and the return-visit weights have nothing to act on.
# CartPole runs in the unit tier; the others, whose fields are read by the same trainer code, under
# -m integration.
ENVIRONMENTS = [("CartPole-v1", {})] + [
    pytest.param(env_id, options, marks=pytest.mark.integration) for env_id, options in (
        ("LQR-v0", {"state_bound": 1.0}), ("SearchRanking-v0", {"n_products": 50, "multi_session": True}),
        ("Copy-v0", {}), ("Addition-v0", {}),
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
    changed = lambda n: np.asarray(other_env_value(n, getattr(params, n)), np.asarray(getattr(params, n)).dtype)
    runs = [params, params] + [params.replace(**{n: changed(n)}) for n in fields]
    # Every leaf an array of the default's dtype, so that one compiled program serves every run.
    runs = [jax.tree.map(np.asarray, p) for p in runs]
    final = [[np.asarray(leaf) for leaf in jax.tree.leaves((state.params, state.obs, metrics))]
             for state, metrics in (trainer.train(jax.random.key(0), None, p) for p in runs)]
    same = lambda a, b: all(np.array_equal(x, y, equal_nan=True) for x, y in zip(final[a], final[b]))
    assert same(0, 1)
    dead = [name for i, name in enumerate(fields) if same(0, i + 2)]
    assert not dead, f"{env_id}: these parameters are read by training but changed nothing: {dead}"
