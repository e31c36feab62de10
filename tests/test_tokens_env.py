"""envs.tokens: the episode rules, the verifier's numbers, demonstrations, options.

Compiling an env program takes about a second on the test machine, so each test compiles one
or two and checks everything it can from them.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.tokens import EOS, PAD, SEP, VOCAB_SIZE, decode, encode, score

TASKS = {
    "copy": ("Copy-v0", {"min_digits": 2, "max_digits": 5}),
    "reverse": ("Copy-v0", {"num_digits": 4, "reverse": True}),
    "addition": ("Addition-v0", {"min_digits": 1, "max_digits": 4}),
    "drop_zeros": ("DropZeros-v0", {"min_digits": 3, "max_digits": 8}),
}


# Copy runs every task-parametrised test in the unit tier; the other tasks under -m integration.
@pytest.fixture(scope="module", params=[
    name if name == "copy" else pytest.param(name, marks=pytest.mark.integration) for name in TASKS])
def task(request):
    env_id, options = TASKS[request.param]
    return envs.make(env_id, **options)


@pytest.fixture(scope="module")
def copy4():
    return envs.make("Copy-v0", num_digits=4, max_steps_in_episode=8)


@partial(jax.jit, static_argnums=0)
def play(env, params, keys, actions):
    """Replays `actions (n, T)` from `reset(keys[i])` for n episodes in one program.

    Returns the reset observations `(n, L + 1)` and states, then per step `(obs_before (n, T,
    L + 1), reward, terminated, truncated, info)`, each `(n, T, ...)`; auto-resets included.
    """

    def run(key, actions):
        obs, state = env.reset(key, params)

        def one(state, a):
            before = env.get_obs(state)
            _, state, r, te, tr, info = env.step(jax.random.key(0), state, a, params)
            return state, (before, r, te, tr, info)

        return obs, state, jax.lax.scan(one, state, actions)[1]

    return jax.vmap(run)(keys, jnp.asarray(actions, jnp.int32))


def test_score_by_hand():
    target = jnp.asarray(np.pad(encode("1234$"), (0, 3), constant_values=PAD))

    def s(text):
        tokens = np.pad(encode(text), (0, 8 - len(text)), constant_values=PAD)
        exact, partial = score(jnp.asarray(tokens), len(text), target, 5)
        return float(exact), pytest.approx(float(partial))

    assert s("1234$") == (1.0, 1.0)
    assert s("1204$") == (0.0, 4 / 5)  # one wrong digit
    assert s("12$") == (0.0, 2 / 5)  # stopped early
    assert s("12345$") == (0.0, 4 / 6)  # one extra token: the EOS slot holds a '5'
    assert s("12345678") == (0.0, 4 / 8)  # truncated, no EOS
    assert s("$") == (0.0, 0.0)
    empty = jnp.asarray(np.pad(encode("$"), (0, 7), constant_values=PAD))
    assert tuple(map(float, score(empty, 1, empty, 1))) == (1.0, 1.0)  # an empty answer


def test_reference_answers():
    copy, p = envs.make("Copy-v0")
    assert copy.answer("4071", p) == "4071"
    assert copy.answer("4071", p.replace(reverse=True)) == "1704"
    add, p = envs.make("Addition-v0")
    assert [add.answer(x, p) for x in ("12+95", "05+03=", "99+99", "0+0")] == ["107", "008", "198", "00"]
    drop, p = envs.make("DropZeros-v0")
    assert [drop.answer(x, p) for x in ("1002305", "000", "7")] == ["1235", "", "7"]
    with pytest.raises(ValueError, match="equal-width"):
        add.answer("1+23", p)


def test_resets_and_demonstrations(task):
    """Reset layout, prompts drawn from the key, demonstrations that are the answers, and
    their replay: reward 1 on the EOS, 0 before, the env's observations along the way."""
    env, params = task
    n, T, L = 64, params.max_steps_in_episode, env.max_len(params)
    key = jax.random.key(7)
    obs, actions, mask = jax.tree.map(np.asarray, env.demonstrations(key, params, n))
    assert obs.shape == (n, T, L + 1) and actions.shape == mask.shape == (n, T)
    first, states, (before, r, te, tr, info) = jax.tree.map(
        np.asarray, play(env, params, jax.random.split(key, n), actions)
    )
    assert first.shape == (n, *env.observation_space(params).shape) and first.dtype == np.int32

    prompts = []
    for o, p_len, a, m in zip(first, states.prompt_len, actions, mask):
        assert o[L] == p_len + 1  # the write position, just after SEP
        assert o[p_len] == SEP and np.all(o[p_len + 1 : L] == PAD) and np.all(o[:p_len] <= 10)
        prompts.append(decode(o[:p_len]))
        steps = m.sum()
        assert decode(a[:steps]) == env.answer(prompts[-1], params) + "$"
        assert np.all(a[steps:] == PAD) and np.all(m[:steps])
    assert len(set(prompts)) > 40
    again, _ = env.reset(jax.random.split(key, n)[3], params)
    np.testing.assert_array_equal(again, first[3])

    last = (np.arange(n), mask.sum(1) - 1)
    assert np.all(r[last] == 1.0) and np.all(info["exact_match"][last] == 1.0)
    assert np.all(te[last]) and not np.any(tr & mask)
    assert np.all(r[np.arange(T) < last[1][:, None]] == 0.0)
    np.testing.assert_array_equal(before[mask], obs[mask])


def test_demonstration_sequences_match_steps(task):
    env, params = task
    obs, actions, mask = jax.tree.map(np.asarray, env.demonstrations(jax.random.key(3), params, 4))
    tokens, next_tokens, seq_mask = jax.tree.map(
        np.asarray, env.demonstration_sequences(jax.random.key(3), params, 4)
    )
    for i in range(4):
        steps = mask[i].sum()
        p = obs[i, :steps, -1] - 1  # the positions that predict each action
        np.testing.assert_array_equal(np.flatnonzero(seq_mask[i]), p)
        np.testing.assert_array_equal(next_tokens[i, p], actions[i, :steps])
        np.testing.assert_array_equal(tokens[i, : p[-1] + 1], obs[i, steps - 1, : p[-1] + 1])
        assert tokens[i, p[-1] + 1] == EOS


def test_eos_terminates_and_limit_truncates_never_both(copy4):
    env, params = copy4  # completion limit 8
    keys = jnp.stack([jax.random.key(0)] * 3)
    actions = [[EOS] * 16, [5] * 16, [5] * 7 + [EOS] * 9]
    _, _, (_, r, te, tr, info) = jax.tree.map(np.asarray, play(env, params, keys, actions))
    # EOS first: terminated at once, discount 0, wrong answer.
    assert te[0, 0] and not tr[0, 0] and r[0, 0] == 0.0 and info["discount"][0, 0] == 0.0
    # Never EOS: truncated after exactly 8 tokens (twice, with the auto-reset), never terminated.
    assert np.flatnonzero(tr[1]).tolist() == [7, 15] and not te[1].any()
    assert info["discount"][1, 7] == 1.0
    # EOS as the last allowed token: terminated only.
    assert te[2, 7] and not tr[2].any()


def test_known_completions_exact_and_partial(copy4):
    env, params = copy4
    key = jax.random.key(2)
    obs, state = env.reset(key, params)
    digits = [int(c) for c in env.answer(decode(obs[: int(state.prompt_len)]), params)]
    wrong = [(digits[0] + 1) % 10, *digits[1:]]
    cases = {  # completion -> (exact, partial)
        (*digits, EOS): (1.0, 1.0),
        (*wrong, EOS): (0.0, 4 / 5),
        (*digits[:2], EOS): (0.0, 2 / 5),
        (*digits, 7, EOS): (0.0, 4 / 6),
        (*digits, 1, 1, 1, 1): (0.0, 4 / 8),  # truncated at the limit
    }
    actions = [list(c) + [PAD] * (16 - len(c)) for c in cases]
    keys = jnp.stack([key] * len(cases))
    last = (np.arange(len(cases)), np.array([len(c) - 1 for c in cases]))
    expected = np.array(list(cases.values()))
    for reward, column in (("exact", 0), ("partial", 1)):
        _, _, (_, r, te, tr, info) = jax.tree.map(
            np.asarray, play(env, params.replace(reward=reward), keys, actions)
        )
        np.testing.assert_allclose(r[last], expected[:, column], rtol=1e-6)
        np.testing.assert_array_equal(info["exact_match"][last], expected[:, 0])
        assert np.all(r[np.arange(16) < last[1][:, None]] == 0.0)
        assert np.all(te[last] != tr[last])


def test_addition_carries_beyond_int32():
    from envs.tokens.addition import add_columns

    place = lambda text: jnp.asarray([int(c) for c in text[::-1]])  # noqa: E731
    for a, b, total in (("9999", "0001", "10000"), ("4599", "5401", "10000"), ("1234", "4321", "05555")):
        assert "".join(map(str, np.asarray(add_columns(place(a), place(b)))[::-1])) == total
    env, params = envs.make("Addition-v0", num_digits=12)
    obs, states = jax.tree.map(
        np.asarray, jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(5), 32), params)
    )
    for o, p_len, target, t_len in zip(obs, states.prompt_len, states.target, states.target_len):
        a, b = decode(o[:p_len]).split("+")
        assert len(a) == len(b) == 12
        assert decode(target[:t_len]) == str(int(a) + int(b)).zfill(13) + "$"


def test_drop_zeros_answer_lengths_vary():
    env, params = envs.make("DropZeros-v0")
    _, states = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 256), params)
    lengths = np.asarray(states.target_len) - 1
    assert lengths.min() <= 2 and lengths.max() >= 6  # Binomial(8, 0.5)
    assert abs(lengths.mean() - 4) < 0.5


def test_jit_vmap_random_rollout():
    env, params = envs.make("Addition-v0", num_digits=2, reward="partial", max_steps_in_episode=6)
    num_envs, T = 32, 40

    @jax.jit
    def run(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), params)
        # Mostly digits, EOS now and then, so both endings happen. (One draw for the whole
        # run: every threefry call inside the loop would add to the compile time.)
        words = jax.random.bits(k_act, (T, num_envs), jnp.uint32)
        actions = jnp.where(words % 100 < 15, EOS, (words >> 8) % 10).astype(jnp.int32)
        step = jax.vmap(env.step, (0, 0, 0, None))

        def one(state, xs):
            keys, action = xs
            obs, state, r, te, tr, info = step(keys, state, action, params)
            return state, (obs, r, te, tr, info)

        return jax.lax.scan(one, state, (jax.random.split(k_step, (T, num_envs)), actions))[1]

    obs, r, te, tr, info = jax.tree.map(np.asarray, run(jax.random.key(0)))
    assert obs.shape == (T, num_envs, env.max_len(params) + 1)
    assert te.any() and tr.any() and not (te & tr).any()
    assert np.all(r[~(te | tr)] == 0.0) and np.all((0 <= r) & (r <= 1)) and r.max() > 0
    assert np.all(info["final_observation"][..., :-1] < VOCAB_SIZE)


def test_make_options():
    env, params = envs.make("Addition-v0", num_digits=2)
    assert params.max_steps_in_episode == 4 and env.max_len(params) == 5 + 1 + 4
    assert env.action_space(params).n == VOCAB_SIZE and env.observation_space(params).shape == (11,)
    bad = [
        ("Addition-v0", {"num_digits": 0}, r"num_digits=0 .*\[1, 32\]"),
        ("Copy-v0", {"max_digits": 40}, r"max_digits=40 .*\[1, 32\]"),
        ("Copy-v0", {"min_digits": 4, "max_digits": 3}, r"max_digits=3 .*\[4, 32\]"),
        ("Copy-v0", {"num_digits": 3, "max_steps_in_episode": 3}, r"max_steps_in_episode=3 .*\[4, 1024\]"),
        ("Addition-v0", {"num_digits": 2.5}, r"num_digits=2.5"),
        ("DropZeros-v0", {"zero_prob": 1.5}, r"zero_prob=1.5 .*\[0, 1\]"),
        ("Copy-v0", {"reward": "dense"}, r"reward='dense' .*exact, partial"),
        ("Copy-v0", {"reverse": "yes"}, r"reverse='yes' must be True or False"),
        ("Copy-v0", {"num_digits": 3, "min_digits": 2}, r"num_digits or min_digits/max_digits"),
        ("Addition-v0", {"reverse": True}, r"unknown option\(s\) \['reverse'\]"),
    ]
    for env_id, options, message in bad:
        with pytest.raises(ValueError, match=message):
            envs.make(env_id, **options)
