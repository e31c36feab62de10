"""Copy-v0: repeat the prompt's digit string, or with `reverse=True` write it backwards.

Prompt: n digits, n uniform in [min_digits, max_digits] and each digit uniform in 0-9 (leading
zeros included). Answer: the same n digits (reversed with `reverse`), so its length is the
prompt's. Example: prompt "4071", answer "4071" ("1704" reversed).
"""

from typing import Any

import jax.numpy as jnp
from flax import struct

from .base import PAD, TokenEnv, build_params, check_bool, random_words, uniform_int
from .base import EnvParams as BaseParams


@struct.dataclass
class EnvParams(BaseParams):
    reverse: bool = struct.field(pytree_node=False, default=False)


def answer(prompt: str, reverse: bool = False) -> str:
    """The answer to a Copy prompt (a digit string): itself, or reversed."""
    if not prompt.isdigit():
        raise ValueError(f"Copy-v0: a prompt is a string of digits; got {prompt!r}")
    return prompt[::-1] if reverse else prompt


class Copy(TokenEnv):
    """Copy-v0; see the module docstring."""

    task_name = "Copy-v0"
    params_class = EnvParams

    def prompt_capacity(self, params) -> int:
        return params.max_digits

    def answer_capacity(self, params) -> int:
        return params.max_digits

    def sample(self, key, params):
        words = random_words(key, params.max_digits + 1)
        n = uniform_int(words[0], params.min_digits, params.max_digits)
        digits = uniform_int(words[1:], 0, 9)
        j = jnp.arange(params.max_digits)
        prompt = jnp.where(j < n, digits, PAD)
        i = jnp.arange(params.max_steps_in_episode)
        source = n - 1 - i if params.reverse else i
        answer = jnp.where(i < n, digits[jnp.clip(source, 0, params.max_digits - 1)], PAD)
        return prompt, n, answer, n

    def reference_answer(self, prompt: str, params) -> str:
        return answer(prompt, params.reverse)


def make(**overrides: Any):
    """`envs.make("Copy-v0", **overrides)`.

    Options: `num_digits` (prompt length, 1-32), or `min_digits`/`max_digits` (a range;
    default 1-5); `reverse` (default False); `reward`: "exact" (default) or "partial";
    `max_steps_in_episode`: the completion limit, at least max_digits + 1 (the default).

    Returns:
      `(env, env_params)`. Raises `ValueError` naming a bad option and what it accepts.
    """
    env = Copy()
    return env, build_params(env, overrides, {"reverse": (False, check_bool(env.task_name))})
