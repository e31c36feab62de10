"""REINFORCE and GRPO defects shared with the trainer: rollout length, the KL reference."""

import pytest

import envs
import jaxpg


@pytest.mark.parametrize("algo, option", [("reinforce", "num_steps"), ("grpo", "max_steps")])
def test_rollout_length_follows_max_episode_steps(algo, option):
    env, env_params = envs.make("LQR-v0")
    assert int(env_params.max_steps_in_episode) == 200
    per_iteration = 16 * 20
    trainer = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=20, total_timesteps=per_iteration * 10,
                                 **({"num_envs": 16} if algo == "reinforce" else {"num_groups": 4, "group_size": 4}))
    assert getattr(trainer.config, option) == 20 and trainer.config.num_steps == 20
    assert trainer.steps_per_iteration == per_iteration and trainer.total_iterations == 10
    # A limit above the env's own leaves the env's.
    longer = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=500)
    assert getattr(longer.config, option) == 200
    # An explicit rollout length still wins.
    explicit = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=20, **{option: 50})
    assert getattr(explicit.config, option) == 50
