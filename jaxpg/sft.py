"""Supervised fine-tuning on a token task's demonstrations, then RL from it.

    trainer = jaxpg.make_trainer("grpo", env, env_params, policy="transformer")
    sft_params, nll = jaxpg.sft.fit_demonstrations(key, trainer)
    rl = jaxpg.make_trainer("grpo", env, env_params, policy="transformer", policy_params=sft_params, beta=0.04)

The policy is the trainer's own network, fitted by teacher forcing to the correct completions that
`env.demonstration_sequences` (or `env.demonstrations`) gives, with `jaxpg.rlhf`'s minibatch loop.
The returned parameters are what `make_trainer(..., policy_params=...)` accepts: RL starts from
them, and GRPO and REINFORCE (with `beta > 0`) keep them as the frozen KL reference.
"""

import jax
import jax.numpy as jnp
import optax

from jaxpg.evaluate import episode_returns
from jaxpg.rlhf.fit import fit_minibatches


def _check(trainer):
    if trainer.head.kind != "categorical" or not hasattr(trainer.env, "demonstrations"):
        raise ValueError(
            "jaxpg.sft fits a categorical policy to a token env's demonstrations; accepted: a trainer on an "
            "envs.tokens task (Copy-v0, Addition-v0, DropZeros-v0)"
        )
    if trainer.config.normalize_observations:
        raise ValueError("jaxpg.sft: the SFT policy sees raw observations; accepted: normalize_observations=False")


def demonstration_data(key, trainer, num_demonstrations: int, env_params=None):
    """The teacher-forcing data for `trainer`'s policy network.

    Whole sequences `(tokens, next_tokens, mask)`, each `(n, L)`, when the network has
    `sequence_logits` (one causal forward per sequence, as `jaxpg.transformer`'s); otherwise the
    episodes step by step, `(obs (n * T, L + 1), actions (n * T,), mask (n * T,))`.
    """
    env_params = trainer.env_params if env_params is None else env_params
    if hasattr(trainer.policy_net, "sequence_logits"):
        return trainer.env.demonstration_sequences(key, env_params, num_demonstrations)
    obs, actions, mask = trainer.env.demonstrations(key, env_params, num_demonstrations)
    return obs.reshape((-1,) + obs.shape[2:]), actions.reshape(-1), mask.reshape(-1)


def token_nll(policy_params, trainer, data):
    """Mean negative log-likelihood (nats per completion token) of the demonstrated next tokens.

    `data` is `demonstration_data`'s; entries outside its mask (prompt positions, padding)
    do not count.
    """
    inputs, targets, mask = data
    mask = mask.astype(jnp.float32)
    net = trainer.policy_net
    if hasattr(net, "sequence_logits"):
        logits = net.apply(policy_params, inputs, method=net.sequence_logits)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    else:
        outputs, log_std = net.apply(policy_params, inputs)
        nll = -trainer.head.log_prob(outputs, log_std, targets)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def fit_demonstrations(key, trainer, num_demonstrations: int = 4096, num_updates: int = 500,
                       batch_size: int = 128, lr=1e-3, env_params=None):
    """Teacher-forces `trainer`'s policy network on correct completions with Adam.

    Args:
      key: PRNG key (initialisation, the demonstrations' prompts, minibatches); vmap over it.
      trainer: a jaxpg trainer on an `envs.tokens` task with a categorical head (e.g.
        `policy="transformer"`, or any `policy_network`).
      num_demonstrations: static; distinct episodes drawn once, minibatches with replacement.
      num_updates, batch_size: static positive integers.
      lr: Adam's learning rate; may be traced.
      env_params: defaults to the trainer's.

    Returns:
      `(policy_params, nll)`: parameters for `make_trainer(..., policy_params=...)` and the
      `(num_updates,)` minibatch NLLs.
    """
    _check(trainer)
    init_key, data_key, batch_key = jax.random.split(key, 3)
    data = demonstration_data(data_key, trainer, num_demonstrations, env_params)
    obs, _ = trainer.reset_envs(init_key, 1, env_params)
    params = trainer.policy_net.init(init_key, obs)
    loss = lambda p, batch: token_nll(p, trainer, batch)
    return fit_minibatches(batch_key, params, loss, data, num_updates, batch_size, lr)


def exact_match(trainer, policy_params, key, num_episodes: int = 1024, deterministic: bool = False,
                env_params=None):
    """Exact-match accuracy of a policy on fresh prompts: a scalar in [0, 1].

    Scored with `reward="exact"` whatever the env's reward is. The same `key` gives every
    policy the same prompts (common random numbers), so accuracies compare pairwise. Samples
    from the policy unless `deterministic` (greedy decoding).
    """
    env_params = trainer.env_params if env_params is None else env_params
    env_params = env_params.replace(reward="exact")
    net, head = trainer.policy_net, trainer.head

    def policy(obs, act_key):
        outputs, log_std = net.apply(policy_params, obs)
        raw = head.mode(outputs, log_std) if deterministic else head.sample(outputs, log_std, act_key)[0]
        return head.to_env(raw)

    return episode_returns(trainer.env, env_params, policy, key, num_episodes).mean()


def trainer_after_sft(algo: str, env, env_params, preset, key, **options):
    """`(trainer, sft_accuracy)`: the trainer of `preset` (a `jaxpg.presets.Preset` with an `sft`
    stage) started from a policy fitted to demonstrations with `key`, which also stays its KL
    reference; `sft_accuracy` is that policy's greedy exact-match accuracy (1,024 fixed prompts).
    Used by `jaxpg train` and `benchmarks/presets.py`, so both run the same two stages."""
    import jaxpg

    trainer = jaxpg.make_trainer(algo, env, env_params, preset=preset, **options)
    policy_params, _ = jax.jit(lambda k: fit_demonstrations(k, trainer, **preset.sft))(key)
    accuracy = float(exact_match(trainer, policy_params, jax.random.key(2024), 1024, deterministic=True))
    trainer = jaxpg.make_trainer(algo, env, env_params, preset=preset, policy_params=policy_params, **options)
    return trainer, accuracy
