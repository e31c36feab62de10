"""`policy="cnn"`: convolutions over an observation's image-like leaves, then the MLP.

`LitCell` shows a 6x6 image with one lit cell and a scalar beside it; the reward is 1 for naming
the cell's half (left 0, right 1): a task the convolutions must locate a pixel for.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import envs
import jaxpg


@struct.dataclass
class State(environment.EnvState):
    cell: jax.Array


class LitCell(environment.Environment):
    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=1)

    def reset_env(self, key, params):
        state = State(time=0, cell=jax.random.randint(key, (), 0, 36))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        image = jnp.zeros(36).at[state.cell].set(1.0).reshape(6, 6, 1)
        return {"image": image, "bias": jnp.ones(1)}

    def step_env(self, key, state, action, params):
        right = (state.cell % 6) >= 3
        reward = jnp.where(action == right, 1.0, 0.0)
        return self.get_obs(state), state.replace(time=1), reward, jnp.asarray(True), {}

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Dict({"image": spaces.Box(0, 1, (6, 6, 1)), "bias": spaces.Box(1, 1, (1,))})


ENV = LitCell()


def test_cnn_networks_convolve_image_leaves_and_keep_the_mlp_parameters_as_they_were():
    trainer = jaxpg.make_trainer("ppo", ENV, ENV.default_params, policy="cnn", cnn_channels=(4, 8), cnn_kernel=3,
                                 cnn_stride=2, hidden_sizes=(16,))
    obs, _ = jax.vmap(ENV.reset, in_axes=(0, None))(jax.random.split(jax.random.key(1), 5), ENV.default_params)
    params = jax.eval_shape(trainer.policy_net.init, jax.random.key(0), obs)["params"]  # shapes only: nothing compiles
    convs = params["Features_0"]
    assert convs["Conv_0"]["kernel"].shape == (3, 3, 1, 4) and convs["Conv_1"]["kernel"].shape == (3, 3, 4, 8)
    # Stride 2 twice: 6x6 -> 3x3 -> 2x2 with 8 channels, and the 1-entry leaf beside them.
    assert params["MLP_0"]["Dense_0"]["kernel"].shape == (2 * 2 * 8 + 1, 16)
    assert "Features_0" in jax.eval_shape(trainer.value_net.init, jax.random.key(0), obs)["params"]
    assert jax.eval_shape(trainer.policy_net.apply, {"params": params}, obs)[0].shape == (5, 2)
    cartpole = jaxpg.make_trainer("ppo", *envs.make("CartPole-v1"))
    mlp = jax.eval_shape(cartpole.policy_net.init, jax.random.key(0), cartpole.obs_spec)["params"]
    assert set(mlp) == {"MLP_0", "Dense_0"}


def test_cnn_without_an_image_leaf_is_refused_naming_the_shapes():
    with pytest.raises(ValueError, match=r"policy='cnn' convolves image-like .* leaves shaped \[\(4,\)\]"):
        jaxpg.make_trainer("ppo", *envs.make("CartPole-v1"), policy="cnn")


@pytest.mark.integration
def test_ppo_with_a_cnn_learns_where_the_lit_cell_is():
    trainer = jaxpg.make_trainer("ppo", ENV, ENV.default_params, policy="cnn", cnn_channels=(8,), hidden_sizes=(32,),
                                 activation="relu", num_envs=64, num_steps=4, num_minibatches=4, update_epochs=4,
                                 lr=3e-3, ent_coef=0.0, total_timesteps=64 * 4 * 40)
    states, _ = jax.jit(jax.vmap(trainer.train))(jax.random.split(jax.random.key(0), 2))
    evaluate = jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 200))
    accuracy = np.asarray(evaluate(states, jax.random.split(jax.random.key(1), 2))).mean(axis=1)
    assert np.all(accuracy > 0.95), accuracy  # chance is 0.5
