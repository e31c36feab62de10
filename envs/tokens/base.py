"""What every token task shares: the vocabulary, the buffer, the episode, the verifier, demos.

A task subclasses `TokenEnv` and writes `sample` (a prompt and its answer from a key), the static
capacities `prompt_capacity`/`answer_capacity`, and `reference_answer` (the answer to a prompt
string, in plain Python, for tests and people). See the package docstring for the layout.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.gymnax_api import environment, spaces

from ..autoreset import AutoResetEnv
from ..episodes import episode_returns

PLUS, SEP, EOS, PAD = 10, 11, 12, 13
VOCAB_SIZE = 14
# Digits print as themselves; '$' stands for EOS and '_' for PAD in `decode`/`encode`.
_CHARS = "0123456789+=$_"
REWARDS = ("exact", "partial")
MAX_DIGITS = 32
MAX_COMPLETION = 1024


def encode(text: str) -> np.ndarray:
    """Token ids (len(text),) int32 of a string over `0-9 + = $ _`."""
    bad = sorted(set(text) - set(_CHARS))
    if bad:
        raise ValueError(f"encode: characters {bad} are not tokens; accepted: {_CHARS!r}")
    return np.array([_CHARS.index(c) for c in text], np.int32)


def decode(tokens) -> str:
    """The string of token ids (any 1-D int array or sequence); inverse of `encode`."""
    return "".join(_CHARS[int(t)] for t in np.asarray(tokens).reshape(-1))


@struct.dataclass
class EnvState(environment.EnvState):
    tokens: jax.Array  # (max_len,) int32: prompt, SEP, completion so far, PAD
    pos: jax.Array  # () int32: where the next token goes (= tokens written, SEP included)
    prompt_len: jax.Array  # () int32: prompt tokens before SEP
    target: jax.Array  # (max_steps_in_episode,) int32: answer, EOS, then PAD
    target_len: jax.Array  # () int32: answer length + 1 (the EOS)
    time: jax.Array  # () int32: completion tokens written


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Options every task has. Fields marked static fix array shapes or Python branches; the
    others are ordinary leaves. Build through the task's `make`, which validates."""

    min_digits: int = 1
    max_digits: int = struct.field(pytree_node=False, default=5)
    # The completion limit: answer + EOS must fit, so `make` enforces >= answer_capacity + 1.
    max_steps_in_episode: int = struct.field(pytree_node=False, default=6)
    reward: str = struct.field(pytree_node=False, default="exact")


def random_words(key, n: int) -> jax.Array:
    """`n` random uint32 words from one threefry call.

    Every reset draws all it needs from one call: each `jax.random.randint`/`split` is a
    threefry loop of its own, and a handful of them per reset multiplies the step's compile
    time several times over.
    """
    return jax.random.bits(key, (n,), jnp.uint32)


def uniform_int(words, low, high):
    """Integers in [low, high] (inclusive, traced bounds allowed) from uint32 `words`, by the
    remainder; the modulo bias, at most (high - low + 1) / 2^32, is far below sampling noise."""
    span = (jnp.asarray(high) - jnp.asarray(low) + 1).astype(jnp.uint32)
    return (jnp.asarray(low) + (words % span).astype(jnp.int32)).astype(jnp.int32)


def uniform_unit(words):
    """Floats in [0, 1) from uint32 `words`: their top 24 bits over 2^24."""
    return (words >> 8).astype(jnp.float32) / (1 << 24)


def score(completion, completion_len, target, target_len):
    """Verifies one completion against its target.

    Args:
      completion: `(C,)` int tokens written after SEP (anything past `completion_len` is ignored).
      completion_len: `()` number of tokens written, the EOS included if one was emitted.
      target: `(C,)` int answer tokens then EOS (anything past `target_len` is ignored).
      target_len: `()` answer length + 1.

    Returns:
      `(exact, partial)`, float32 scalars. `exact` is 1 when the completion is the answer
      followed by EOS. `partial` is the number of positions i < min(target_len, completion_len)
      where the two agree, divided by max(target_len, completion_len): every missing or extra
      token counts as a wrong position, a right answer without its EOS (truncated) scores
      answer_len / (answer_len + 1), and `partial` is 1 exactly when `exact` is.
    """
    i = jnp.arange(completion.shape[-1])
    valid = (i < completion_len) & (i < target_len)
    matches = jnp.sum(valid & (completion == target))
    exact = (completion_len == target_len) & (matches == target_len)
    partial = matches / jnp.maximum(jnp.maximum(completion_len, target_len), 1)
    return exact.astype(jnp.float32), partial.astype(jnp.float32)


class TokenEnv(AutoResetEnv[EnvState, EnvParams]):
    """A verifiable token-sequence task: the agent writes a completion after a prompt.

    Subclasses set `task_name` and `params_class` and write `sample`, `prompt_capacity`,
    `answer_capacity` and `reference_answer`.
    """

    task_name = "TokenTask"
    params_class = EnvParams
    # Writing a token draws nothing; only resets do, so the whole step key goes to the reset.
    step_env_draws = False

    def prompt_capacity(self, params) -> int:
        """Most prompt tokens (SEP not included); static."""
        raise NotImplementedError

    def answer_capacity(self, params) -> int:
        """Most answer tokens (EOS not included); static."""
        raise NotImplementedError

    def sample(self, key, params):
        """Draws one prompt and its answer.

        Returns:
          `(prompt (prompt_capacity,), prompt_len, answer (max_steps_in_episode,), answer_len)`,
          int32; entries past the lengths are PAD.
        """
        raise NotImplementedError

    def reference_answer(self, prompt: str, params) -> str:
        """The answer to `prompt` (digits and '+', no '='), in plain Python."""
        raise NotImplementedError

    def answer(self, prompt: str, params=None) -> str:
        """The correct completion for a prompt string, without EOS: `answer("12+95")` -> "107"
        for Addition. A trailing '=' is accepted and ignored."""
        params = self.default_params if params is None else params
        return self.reference_answer(prompt.removesuffix("="), params)

    def max_len(self, params) -> int:
        """Buffer length L (static): prompt capacity + SEP + completion limit."""
        return self.prompt_capacity(params) + 1 + params.max_steps_in_episode

    @property
    def default_params(self):
        return self.params_class()

    def reset_env(self, key, params):
        prompt, prompt_len, answer, answer_len = self.sample(key, params)
        L, C = self.max_len(params), params.max_steps_in_episode
        j = jnp.arange(L)
        prompt_part = prompt[jnp.minimum(j, prompt.shape[0] - 1)]
        tokens = jnp.where(j < prompt_len, prompt_part, PAD)
        tokens = jnp.where(j == prompt_len, SEP, tokens).astype(jnp.int32)
        target = jnp.where(jnp.arange(C) == answer_len, EOS, answer).astype(jnp.int32)
        state = EnvState(
            tokens=tokens,
            pos=(prompt_len + 1).astype(jnp.int32),
            prompt_len=prompt_len.astype(jnp.int32),
            target=target,
            target_len=(answer_len + 1).astype(jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        del key  # writing a token is deterministic; only resets draw
        action = jnp.asarray(action, jnp.int32)
        tokens = state.tokens.at[state.pos].set(action, mode="drop")
        state = state.replace(tokens=tokens, pos=state.pos + 1, time=state.time + 1)
        terminated = action == EOS
        done = terminated | (state.time >= params.max_steps_in_episode)
        exact, partial = self.verify(state, params)
        correct = exact if params.reward == "exact" else partial
        reward = jnp.where(done, correct, 0.0)
        info = {
            "discount": jnp.where(terminated, 0.0, 1.0),
            # The exact-match indicator whatever `reward` is, for reporting accuracy.
            "exact_match": jnp.where(done, exact, 0.0),
        }
        return self.get_obs(state), state, reward, terminated, info

    def verify(self, state, params):
        """`score` of the completion in `state` (so far) against its target: `(exact, partial)`."""
        start = state.prompt_len + 1
        completion = jax.lax.dynamic_slice(state.tokens, (start,), (params.max_steps_in_episode,))
        return score(completion, state.time, state.target, state.target_len)

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return jnp.concatenate([state.tokens, state.pos[None]])

    def is_terminated(self, state, params) -> jax.Array:
        return (state.time > 0) & (state.tokens[jnp.maximum(state.pos - 1, 0)] == EOS)

    def is_truncated(self, state, params) -> jax.Array:
        # An EOS written as the last allowed token ends the episode by termination only.
        return (state.time >= params.max_steps_in_episode) & ~self.is_terminated(state, params)

    @property
    def name(self) -> str:
        return self.task_name

    @property
    def num_actions(self) -> int:
        return VOCAB_SIZE

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(VOCAB_SIZE)

    def observation_space(self, params=None) -> spaces.Box:
        params = self.default_params if params is None else params
        L = self.max_len(params)
        return spaces.Box(0, max(L, VOCAB_SIZE - 1), (L + 1,), jnp.int32)

    def references(self, params, act=None) -> dict:
        """jaxpg's reference hook (`jaxpg.presets.references`): with `act` (a deterministic policy
        `obs (N, L+1) -> tokens`), its exact-match accuracy under greedy decoding on 1,024 fresh
        prompts (a fixed key, so every policy meets the same prompts), whatever `reward` is."""
        if act is None:
            return {"values": {}}
        exact = params.replace(reward="exact")
        returns = episode_returns(self, exact, lambda obs, key: act(obs), jax.random.key(2024), 1024,
                                  int(params.max_steps_in_episode))
        return {"values": {"exact_match_accuracy": float(np.mean(np.asarray(returns)))}}

    @partial(jax.jit, static_argnames=("self", "n"))
    def demonstrations(self, key, params, n: int):
        """Teacher-forcing data: the correct completion of n episodes, step by step.

        Episode i is the one `reset(jax.random.split(key, n)[i], params)` starts.

        Returns:
          `(obs (n, T, max_len + 1) int32, actions (n, T) int32, mask (n, T) bool)` with
          T = max_steps_in_episode: `obs[:, t]` is what the env shows before step t when every
          earlier action was correct, `actions[:, t]` the correct token (answer, then EOS), and
          `mask` marks steps up to and including the EOS (later entries are PAD filler).
        """

        def one(k):
            _, state = self.reset_env(k, params)
            C, L = params.max_steps_in_episode, self.max_len(params)
            start = state.prompt_len + 1
            rel = jnp.arange(L) - start  # index into the completion

            def obs_at(t):
                written = (rel >= 0) & (rel < t)
                tokens = jnp.where(written, state.target[jnp.clip(rel, 0, C - 1)], state.tokens)
                return jnp.concatenate([tokens, (start + t)[None]])

            t = jnp.arange(C)
            return jax.vmap(obs_at)(t), state.target, t < state.target_len

        return jax.vmap(one)(jax.random.split(key, n))

    def demonstration_sequences(self, key, params, n: int):
        """The same episodes as `demonstrations`, as whole sequences for one causal forward.

        Returns:
          `(tokens (n, L), next_tokens (n, L), mask (n, L) bool)`, L = max_len: `tokens` is the
          buffer at the end of the correct episode, `next_tokens[:, j] = tokens[:, j + 1]` (PAD
          at the end) is what position j should predict, and `mask` marks the positions whose
          next token is a completion token: from SEP's position to the one that predicts EOS.
        """
        return _sequences(*self.demonstrations(key, params, n))


@jax.jit
def _sequences(obs, actions, mask):
    """`demonstrations`' `(obs (n, T, L + 1), actions (n, T), mask (n, T))` as
    `demonstration_sequences`' `(tokens, next_tokens, mask)`, each `(n, L)`."""
    n, C = actions.shape
    L = obs.shape[-1] - 1
    start = obs[:, 0, -1]  # first completion position
    rel = jnp.arange(L)[None] - start[:, None]
    at = jnp.clip(rel, 0, C - 1)
    written = (rel >= 0) & (rel < C) & jnp.take_along_axis(mask, at, 1)
    tokens = jnp.where(written, jnp.take_along_axis(actions, at, 1), obs[:, 0, :L])
    next_tokens = jnp.concatenate([tokens[:, 1:], jnp.full((n, 1), PAD, tokens.dtype)], 1)
    next_written = jnp.concatenate([written[:, 1:], jnp.zeros((n, 1), bool)], 1)
    return tokens, next_tokens, next_written


def build_params(task, overrides: dict, extra: dict):
    """Validates `make` options and returns the task's `EnvParams`.

    Args:
      task: the `TokenEnv` instance (its name, params class and capacities).
      overrides: the caller's options: `num_digits` or `min_digits`/`max_digits`,
        `max_steps_in_episode`, `reward`, and the task's own names in `extra`.
      extra: task option -> `(default, check)` where `check(name, value)` returns the value
        or raises `ValueError`.

    Raises:
      ValueError: an unknown option, or a value out of range; the message names the field and
        what it accepts.
    """
    name = task.task_name
    accepted = ["num_digits", "min_digits", "max_digits", "max_steps_in_episode", "reward", *extra]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; accepted: {accepted}")
    defaults = task.params_class()
    if "num_digits" in overrides:
        both = sorted({"min_digits", "max_digits"} & set(overrides))
        if both:
            raise ValueError(f"{name}: give num_digits or min_digits/max_digits, not both {both}")
        n = _check_int(name, "num_digits", overrides["num_digits"], 1, MAX_DIGITS)
        lo = hi = n
    else:
        lo = _check_int(name, "min_digits", overrides.get("min_digits", defaults.min_digits), 1, MAX_DIGITS)
        hi = _check_int(name, "max_digits", overrides.get("max_digits", defaults.max_digits), lo, MAX_DIGITS)
    reward = overrides.get("reward", defaults.reward)
    if reward not in REWARDS:
        raise ValueError(f"{name}: reward={reward!r} is unknown; accepted: {', '.join(REWARDS)}")
    values = {k: check(k, overrides.get(k, default)) for k, (default, check) in extra.items()}
    params = defaults.replace(min_digits=lo, max_digits=hi, reward=reward, **values)
    need = task.answer_capacity(params) + 1
    limit = overrides.get("max_steps_in_episode", need)
    limit = _check_int(name, "max_steps_in_episode", limit, need, MAX_COMPLETION,
                       why=f" (the longest answer plus EOS is {need} tokens)")
    return params.replace(max_steps_in_episode=limit)


def _check_int(task, field, value, low, high, why=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(
            f"{task}: {field}={value!r} is out of range; accepted: an integer in [{low}, {high}]{why}"
        )
    return int(value)


def check_bool(task):
    def check(field, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{task}: {field}={value!r} must be True or False")
        return bool(value)

    return check


def check_unit_float(task):
    def check(field, value):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{task}: {field}={value!r} is out of range; accepted: a float in [0, 1]")
        return v

    return check

