"""A small causal transformer policy (and value) over token-buffer observations (flax linen).

Observations follow `envs.tokens`' layout: int `(..., max_len + 1)`, the token buffer
`obs[..., :max_len]` followed by the write position p `obs[..., max_len]`. The model reads the
buffer causally and answers at position p - 1, the last token written, whose output predicts
the next token. Any leading batch axes pass through, as in `jaxpg.networks`:
`(max_len + 1,) -> (num_outputs,)`, `(N, max_len + 1) -> (N, num_outputs)`, `(T, N, ...)`.

The whole buffer runs through every forward (no key-value cache): the buffers are short, and a
fixed shape keeps one compiled program for every step of an episode. Positions after p hold
PAD, and the causal mask keeps them from reaching position p - 1.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)); `(B, L, D) -> same`."""

    num_heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x, mask):
        d = x.shape[-1]
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=d)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        h = nn.Dense(self.mlp_ratio * d)(h)
        return x + nn.Dense(d)(nn.gelu(h))


class _Trunk(nn.Module):
    """Token and learned position embeddings, causal blocks, final LayerNorm.

    `tokens (B, L) int -> features (B, L, embed_dim)`, L = max_len.
    """

    vocab_size: int
    max_len: int
    embed_dim: int
    num_layers: int
    num_heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, tokens):
        embed = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=nn.initializers.normal(0.02))
        positions = self.param("positions", nn.initializers.normal(0.02), (self.max_len, self.embed_dim))
        x = embed(tokens) + positions[: tokens.shape[-1]]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.num_layers):
            x = Block(self.num_heads, self.mlp_ratio)(x, mask)
        return nn.LayerNorm()(x)


def _split_obs(obs, max_len: int):
    """`obs (..., max_len + 1)` -> `(tokens (B, max_len) int32, index (B,), batch shape)`: the
    buffer with leading axes flattened, and p - 1 clipped into range (p = 0, as in the all-zero
    observation a trainer initialises with, reads position 0)."""
    if obs.shape[-1] != max_len + 1:
        raise ValueError(
            f"observation has {obs.shape[-1]} entries in its last axis; this model, built with "
            f"max_len={max_len}, accepts max_len + 1 = {max_len + 1} (the buffer, then the position)"
        )
    obs = jnp.asarray(obs).astype(jnp.int32)
    batch = obs.shape[:-1]
    flat = obs.reshape(-1, max_len + 1)
    return flat[:, :max_len], jnp.clip(flat[:, max_len] - 1, 0, max_len - 1), batch


def _at(features, index):
    """`features (B, L, ...)` at `index (B,)` -> `(B, ...)`."""
    return jnp.take_along_axis(features, index[:, None, None], axis=1)[:, 0]


class CausalTransformer(nn.Module):
    """Next-token policy: `obs (..., max_len + 1) -> (logits (..., num_outputs), log_std ())`.

    `log_std` is a zero scalar, the contract of `jaxpg.networks.PolicyNetwork` for categorical
    heads. The head starts small (std 0.02 weights on unit-scale features), so the initial
    policy is close to uniform. `sequence_logits` gives every position's logits in one forward.
    """

    num_outputs: int
    vocab_size: int
    max_len: int
    embed_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4

    def setup(self):
        self.trunk = _Trunk(
            self.vocab_size, self.max_len, self.embed_dim, self.num_layers, self.num_heads, self.mlp_ratio
        )
        self.head = nn.Dense(self.num_outputs, kernel_init=nn.initializers.normal(0.02))

    def sequence_logits(self, tokens):
        """Teacher forcing: `tokens (..., L) int, L <= max_len -> logits (..., L, num_outputs)`;
        position j's logits predict token j + 1 from tokens 0..j."""
        tokens = jnp.asarray(tokens).astype(jnp.int32)
        batch, L = tokens.shape[:-1], tokens.shape[-1]
        logits = self.head(self.trunk(tokens.reshape(-1, L)))
        return logits.reshape(batch + (L, self.num_outputs))

    def __call__(self, obs):
        tokens, index, batch = _split_obs(obs, self.max_len)
        logits = _at(self.head(self.trunk(tokens)), index)
        return logits.reshape(batch + (self.num_outputs,)), jnp.zeros(())


class CausalTransformerValue(nn.Module):
    """State value at the write position: `obs (..., max_len + 1) -> (...)`."""

    vocab_size: int
    max_len: int
    embed_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, obs):
        tokens, index, batch = _split_obs(obs, self.max_len)
        features = _Trunk(
            self.vocab_size, self.max_len, self.embed_dim, self.num_layers, self.num_heads, self.mlp_ratio
        )(tokens)
        value = nn.Dense(1)(_at(features, index))[:, 0]
        return value.reshape(batch)


def from_env(env, env_params, **kwargs):
    """`(CausalTransformer, CausalTransformerValue)` sized for a token env: vocabulary and
    outputs from its action space, `max_len` from its observation; `kwargs` set the rest."""
    obs_shape = jax.eval_shape(env.reset, jax.random.key(0), env_params)[0].shape
    n = env.action_space(env_params).n
    max_len = obs_shape[-1] - 1
    return (
        CausalTransformer(num_outputs=n, vocab_size=n, max_len=max_len, **kwargs),
        CausalTransformerValue(vocab_size=n, max_len=max_len, **kwargs),
    )
