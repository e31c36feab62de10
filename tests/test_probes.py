"""Each algorithm gets the probe environments' values and policies right within seconds.

Every probe (tests/probe_envs.py) trains with one compiled program per algorithm, run once per
probe: the probe is a field of `env_params`, an argument of the program. (A vmapped program over
the probes takes about twice as long to compile as this one takes to compile and run six times.)
The thresholds sit far below what a correct learner reaches and far above
what a broken one does (a value that ignores the reward, a baseline that sees the wrong return,
a policy gradient with the wrong sign).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import probe_envs as probes
import pytest

import jaxpg

ENV = probes.Probe()
GAMMA = 0.9
SMALL = {"hidden_sizes": (16,), "lr_schedule": "constant", "ent_coef": 0.0, "gamma": GAMMA}
OPTIONS = {
    "ppo": {**SMALL, "num_envs": 16, "num_steps": 4, "num_minibatches": 2, "update_epochs": 4, "lr": 3e-2,
            "gae_lambda": 1.0, "total_timesteps": 16 * 4 * 60},
    "reinforce": {**SMALL, "num_envs": 32, "baseline": "value", "lr": 3e-2, "total_timesteps": 32 * 2 * 80},
    "grpo": {**SMALL, "num_groups": 8, "group_size": 4, "lr": 3e-2, "total_timesteps": 32 * 2 * 60},
}


@functools.cache
def train_probes(algo):
    trainer = jaxpg.make_trainer(algo, ENV, ENV.default_params, **OPTIONS[algo])
    keys = jax.random.split(jax.random.key(0), len(probes.KINDS))
    batch = probes.all_probes()
    states = [trainer.train(keys[kind], None, jax.tree.map(lambda x: x[kind], batch))[0] for kind in probes.KINDS]
    return trainer, lambda kind: states[kind]


def values(trainer, state, observations):
    obs = jnp.asarray(observations, jnp.float32).reshape(-1, 1)
    return np.asarray(trainer.value(state.params, state.obs_stats, obs))


def action_one_probability(trainer, state, observations):
    obs = jnp.asarray(observations, jnp.float32).reshape(-1, 1)
    logits, _ = trainer.policy_outputs(state.params, state.obs_stats, obs)
    return np.asarray(jax.nn.softmax(logits)[:, 1])


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_value_is_right_on_the_value_probes(algo):
    trainer, run = train_probes(algo)
    np.testing.assert_allclose(values(trainer, run(probes.CONSTANT), [0.0]), [1.0], atol=0.05)
    np.testing.assert_allclose(values(trainer, run(probes.OBSERVATION), [-1.0, 1.0]), [-1.0, 1.0], atol=0.1)
    # The delay: the first step's value is the discounted reward of the second.
    np.testing.assert_allclose(values(trainer, run(probes.DELAYED), [0.0, 1.0]), [GAMMA, 1.0], atol=0.05)


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "grpo"])
def test_policy_is_right_on_the_action_probes(algo):
    trainer, run = train_probes(algo)
    assert action_one_probability(trainer, run(probes.ACTION), [0.0])[0] > 0.95
    p = action_one_probability(trainer, run(probes.OBSERVATION_ACTION), [-1.0, 1.0])
    assert p[0] < 0.05 and p[1] > 0.95, p
    if algo != "grpo":
        np.testing.assert_allclose(values(trainer, run(probes.ACTION), [0.0]), [1.0], atol=0.15)
