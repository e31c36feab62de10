import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import envs
from envs.episodes import episode_returns

# A fresh interpreter, so that modules other tests imported do not hide an import of jaxpg.
_ISOLATED = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    import envs
    from envs.tokens.base import EOS

    made = {env_id: envs.make(env_id) for env_id in envs.ENV_IDS}
    env, params = made["Copy-v0"]
    eos_only = lambda obs: jnp.full(obs.shape[:-1], EOS, jnp.int32)
    accuracy = env.references(params, eos_only)["values"]["exact_match_accuracy"]
    for env_id in ("LQR-v0", "SearchRanking-v0"):
        made[env_id][0].references(made[env_id][1])
    envs.suites()  # finds the installed suites without importing any
    suites = ("brax", "mujoco_playground", "craftax", "jumanji", "xminigrid", "navix")
    print(accuracy, sorted(m for m in sys.modules if m.split(".")[0] in ("jaxpg", *suites)))
""")


@pytest.mark.integration
def test_envs_imports_nothing_from_jaxpg_nor_any_suite():
    out = subprocess.run([sys.executable, "-c", _ISOLATED], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    accuracy, jaxpg_modules = out.stdout.split(" ", 1)
    assert float(accuracy) == 0.0  # an empty completion answers no prompt
    assert jaxpg_modules.strip() == "[]"


def test_jaxpg_scores_episodes_with_the_envs_function():
    """One home: jaxpg's evaluation runs on `envs.episodes.episode_returns`, and it still scores."""
    import jaxpg
    from jaxpg.core import evaluate

    assert jaxpg.episode_returns is episode_returns and evaluate.episode_returns is episode_returns
    env, params = envs.make("CartPole-v1")
    policy = lambda obs, key: jax.random.bernoulli(key, 0.5, obs.shape[:1]).astype(jnp.int32)
    returns = episode_returns(env, params, policy, jax.random.key(7), 16, 60)
    assert float(returns.min()) >= 1.0 and float(returns.max()) <= 60.0


def test_episode_returns_stop_once_every_episode_ended_with_the_returns_of_the_whole_run():
    """The loop stops when the last episode ends: the returns equal a scan over every step with
    the same keys (the loop it replaced) to the bit, and a limit of a million steps costs nothing
    once the episodes are over."""
    env, params = envs.make("CartPole-v1")
    policy = lambda obs, key: jax.random.bernoulli(key, 0.5, obs.shape[:1]).astype(jnp.int32)
    key = jax.random.key(3)

    def whole_run(key, max_steps):
        reset_key, rollout_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, 16), params)

        def one_step(carry, step_key):
            state, obs, total, running = carry
            act_key, env_key = jax.random.split(step_key)
            obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(env_key, 16), state, policy(obs, act_key), params)
            return (state, obs, total + running * reward, running * (1.0 - (terminated | truncated))), None

        start = (state, obs, jnp.zeros(16), jnp.ones(16))
        return jax.lax.scan(one_step, start, jax.random.split(rollout_key, max_steps))[0][2]

    reference = jax.jit(whole_run, static_argnums=1)(key, 200)
    assert float(reference.min()) < 200  # some episodes end early, so the loop can stop
    score = jax.jit(episode_returns, static_argnums=(0, 2, 4, 5))
    assert (score(env, params, policy, key, 16, 200) == reference).all()
    everything = score(env, params, policy, key, 16, 1_000_000)
    assert (everything == score(env, params, policy, key, 16, 500)).all()
    # The steps taken, counted from the policy: as many as the longest episode, not the limit.
    steps = []

    def counted(obs, key):
        jax.debug.callback(lambda: steps.append(1))
        return policy(obs, key)

    jax.block_until_ready(episode_returns(env, params, counted, key, 16, 5_000))
    assert 0 < len(steps) <= 500, len(steps)
