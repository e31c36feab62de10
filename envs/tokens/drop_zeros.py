"""DropZeros-v0: copy the prompt's digits, leaving out its zeros.

Prompt: n digits, n uniform in [min_digits, max_digits]; each digit is 0 with probability
`zero_prob` (default 0.5) and otherwise uniform in 1-9. Answer: the nonzero digits in order,
"1002305" -> "1235", and "" (just EOS) for an all-zero prompt. With the defaults (8 digits,
zero_prob 0.5) the answer length is Binomial(8, 0.5): correct completions range from 1 to 9
tokens with EOS, so a loss that averages per sequence and one that averages per token weight
them differently (the length bias of GRPO's aggregation that Dr. GRPO removes).
"""

from typing import Any

import jax.numpy as jnp
from flax import struct

from .base import (
    PAD,
    TokenEnv,
    build_params,
    check_unit_float,
    random_words,
    uniform_int,
    uniform_unit,
)
from .base import (
    EnvParams as BaseParams,
)


@struct.dataclass
class EnvParams(BaseParams):
    min_digits: int = 8
    max_digits: int = struct.field(pytree_node=False, default=8)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=9)
    zero_prob: float = 0.5


def answer(prompt: str) -> str:
    """The answer to a DropZeros prompt (a digit string): its digits other than 0."""
    if not prompt.isdigit():
        raise ValueError(f"DropZeros-v0: a prompt is a string of digits; got {prompt!r}")
    return prompt.replace("0", "")


class DropZeros(TokenEnv):
    """DropZeros-v0; see the module docstring."""

    task_name = "DropZeros-v0"
    params_class = EnvParams

    def prompt_capacity(self, params) -> int:
        return params.max_digits

    def answer_capacity(self, params) -> int:
        return params.max_digits

    def sample(self, key, params):
        D, C = params.max_digits, params.max_steps_in_episode
        words = random_words(key, 2 * D + 1)
        n = uniform_int(words[0], params.min_digits, D)
        zero = uniform_unit(words[1 : D + 1]) < params.zero_prob
        digits = jnp.where(zero, 0, uniform_int(words[D + 1 :], 1, 9))
        j = jnp.arange(D)
        prompt = jnp.where(j < n, digits, PAD)
        keep = (j < n) & ~zero
        # Stable compaction: the i-th kept digit goes to answer position i.
        slot = jnp.where(keep, jnp.cumsum(keep) - 1, C)
        answer = jnp.full((C,), PAD, jnp.int32).at[slot].set(digits, mode="drop")
        return prompt, n, answer, jnp.sum(keep, dtype=jnp.int32)

    def reference_answer(self, prompt: str, params) -> str:
        return answer(prompt)


def make(**overrides: Any):
    """`envs.make("DropZeros-v0", **overrides)`.

    Options: `num_digits` (prompt length, 1-32; default 8), or `min_digits`/`max_digits`;
    `zero_prob` in [0, 1] (default 0.5); `reward`: "exact" (default) or "partial";
    `max_steps_in_episode`: the completion limit, at least max_digits + 1 (the default).

    Returns:
      `(env, env_params)`. Raises `ValueError` naming a bad option and what it accepts.
    """
    env = DropZeros()
    return env, build_params(env, overrides, {"zero_prob": (0.5, check_unit_float(env.task_name))})
