"""Bring your own network: `policy="transformer"` on a token task, and user flax modules passed as
`policy_network` / `value_network` (used as given, checked against the documented shapes)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import jaxpg
from envs.tokens import EOS, VOCAB_SIZE
from jaxpg.core.transformer import CausalTransformer, CausalTransformerValue

ENV, PARAMS = envs.make("Copy-v0", num_digits=2, reward="partial")
TINY = dict(policy="transformer", transformer_dim=16, transformer_layers=1, transformer_heads=2)


class Constant(nn.Module):
    """Logits from a learned bias that starts on one token, whatever the observation."""

    token: int

    @nn.compact
    def __call__(self, obs):
        bias = self.param("bias", lambda key: 5.0 * jax.nn.one_hot(self.token, VOCAB_SIZE))
        return jnp.broadcast_to(bias, obs.shape[:-1] + (VOCAB_SIZE,)), jnp.zeros(())


class LastToken(nn.Module):
    """Value from the token at the write position minus one (a table lookup)."""

    @nn.compact
    def __call__(self, obs):
        last = jnp.take_along_axis(obs[..., :-1], jnp.maximum(obs[..., -1:] - 1, 0), -1)[..., 0]
        return nn.Embed(VOCAB_SIZE, 1)(last.astype(jnp.int32))[..., 0]


# The transformer's programs compile slowly: GRPO's under -m integration, PPO's under -m slow.
@pytest.mark.parametrize("algo, options", [
    pytest.param("grpo", dict(num_groups=2, group_size=2, total_timesteps=2 * 2 * 3 * 2),
                 marks=pytest.mark.integration),
    pytest.param("ppo", dict(num_envs=4, num_steps=6, total_timesteps=4 * 6 * 2, num_minibatches=2, update_epochs=1),
                 marks=pytest.mark.slow),
])
def test_transformer_policy_runs_init_and_step(algo, options):
    trainer = jaxpg.make_trainer(algo, ENV, PARAMS, **TINY, **options)
    assert isinstance(trainer.policy_net, CausalTransformer) and isinstance(trainer.value_net, CausalTransformerValue)
    assert (trainer.policy_net.vocab_size, trainer.policy_net.max_len, trainer.policy_net.embed_dim) == (
        VOCAB_SIZE, ENV.max_len(PARAMS), 16)
    assert trainer.head.kind == "categorical"
    state = trainer.init(jax.random.key(0))
    assert "trunk" in state.params["policy"]["params"]
    before = jax.tree.leaves(state.params["policy"])
    state, metrics = trainer.step(state)
    assert not bool(metrics["nonfinite"]) and np.isfinite(float(metrics["episode_return"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, jax.tree.leaves(state.params["policy"])))
    obs = trainer.reset_envs(jax.random.key(1), 3)[0]
    action = trainer.act(state, obs, jax.random.key(2))
    assert action.shape == (3,) and action.dtype == jnp.int32


@pytest.mark.integration
def test_custom_policy_and_value_networks_are_used():
    trainer = jaxpg.make_trainer(
        "ppo", ENV, PARAMS, policy_network=Constant(EOS), value_network=LastToken(),
        num_envs=4, num_steps=6, total_timesteps=4 * 6 * 2, num_minibatches=2, update_epochs=1,
    )
    state = trainer.init(jax.random.key(0))
    assert set(state.params["policy"]["params"]) == {"bias"}
    assert set(state.params["value"]["params"]) == {"Embed_0"}
    obs = trainer.reset_envs(jax.random.key(1), 5)[0]
    np.testing.assert_array_equal(trainer.act(state, obs, deterministic=True), np.full(5, EOS))
    state, metrics = trainer.step(state)
    assert not bool(metrics["nonfinite"])
    # The policy ends every episode at once; the value network's table got gradient.
    assert float(metrics["episode_length"]) < 2.0
    assert not np.array_equal(state.params["value"]["params"]["Embed_0"]["embedding"],
                              trainer.init(jax.random.key(0)).params["value"]["params"]["Embed_0"]["embedding"])


def test_networks_that_break_the_contract_are_refused():
    class WrongWidth(nn.Module):
        @nn.compact
        def __call__(self, obs):
            return nn.Dense(3)(obs.astype(jnp.float32)), jnp.zeros(())

    class NoLogStd(nn.Module):
        @nn.compact
        def __call__(self, obs):
            return nn.Dense(VOCAB_SIZE)(obs.astype(jnp.float32))

    class ScalarValue(nn.Module):
        @nn.compact
        def __call__(self, obs):
            return nn.Dense(1)(obs.astype(jnp.float32))

    with pytest.raises(ValueError, match=r"policy_network .* accepted: \(outputs \(2, 14\)"):
        jaxpg.make_trainer("grpo", ENV, PARAMS, policy_network=WrongWidth())
    with pytest.raises(ValueError, match="policy_network"):
        jaxpg.make_trainer("grpo", ENV, PARAMS, policy_network=NoLogStd())
    with pytest.raises(ValueError, match=r"value_network .* accepted: \(2,\)"):
        jaxpg.make_trainer("ppo", ENV, PARAMS, value_network=ScalarValue())
    cartpole = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="policy='transformer' reads a token buffer"):
        jaxpg.make_trainer("grpo", *cartpole, policy="transformer")
    with pytest.raises(ValueError, match="normalize_observations=False"):
        jaxpg.make_trainer("grpo", ENV, PARAMS, policy="transformer", normalize_observations=True)
    with pytest.raises(ValueError, match="transformer_dim=10 must be a multiple of transformer_heads=4"):
        jaxpg.make_trainer("grpo", ENV, PARAMS, policy="transformer", transformer_dim=10)
