"""LQR-v0: a discounted n-dimensional linear-quadratic regulator, with exact references.

The environment: state s (n,), action a (m,), unbounded actions,

    s' = A s + B a + noise_std * w,   w ~ N(0, I),
    reward = -(s'Q s + a'R a)         (cost of the current state and the action taken),

s0 ~ U[init_low, init_high] per coordinate, truncation after `max_steps_in_episode` steps.

Defaults, and why:
- `make()` is the textbook 1-D system s' = s + a, Q = R = 1, gamma = 0.99, optimal gain
  K* = -0.6153 (a = K s). For n or m > 1 the default is a chain of integrators,
  A = I + 0.5 * (upper shift), B with ones on the diagonal that ends in the bottom-right corner
  (the last min(n, m) states are actuated directly, the others through the chain), Q = I, R = I.
  A's eigenvalues are all 1 with one Jordan block, so the open loop drifts polynomially (unstable
  without discounting); the system is controllable, and for n <= 6 the optimal gain has entries
  of order 1, a closed loop with spectral radius <= 0.75 and cond(P) <= 200. Its 1-D case is the
  textbook system. (A 0.1 coupling gives cond(P) ~ 60 already at n = 4 and a closed loop near 0.94.)
- s0 ~ U[-1, 1]^n: random starts make the policy generalise over states, and E[s0 s0'] = I/3.
- horizon 200 = two effective horizons 1/(1 - gamma): truncation drops gamma^200 ~ 13% of the
  discounted weight of a stationary noise cost, and nothing visible of the noise-free transient
  (the optimal closed loop contracts by <= 0.75 per step), while episodes stay short.
- state_bound 100: any stabilising policy from s0 in [-1, 1]^n stays O(1), and an exploration
  random walk of std sigma reaches ~14 sigma in 200 steps, so learning near the optimum never
  touches it; a destabilising policy hits it within tens of steps, before float32 overflows.
- bound_penalty 1e4 (= state_bound^2): the cost of one more step at the bound. Hitting the bound
  already costs ~state_bound^2 per step, while the optimum costs O(1), so ending an episode at
  the bound is never a shortcut to a better return.

The references (`optimal_gain`, `value_matrix`, `policy_cost`, `policy_cost_grad`,
`optimal_gain_finite_horizon`) are pure JAX, work in the dtype of `params` (float32 from `make`),
and treat the linear Gaussian policy a = K s + noise_std * eps, K of shape (m, n).
"""

import functools
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.gymnax_api import environment, spaces

from .autoreset import AutoResetEnv

_COUPLING = 0.5


def _full_precision(fn):
    """`fn` with its float32 matmuls at full precision.

    GPUs default to TF32 for float32 matmuls (a 10-bit mantissa), which would move the exact
    references (Riccati gain, policy costs) and the dynamics they are checked against away from
    the CPU's. The scope is read when `fn` is traced, so it holds under any outer `jit`.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


def _default_system(n: int, m: int):
    """The documented default (A (n,n), B (n,m)); n = m = 1 gives s' = s + a."""
    A = np.eye(n) + _COUPLING * np.eye(n, k=1)
    B = np.eye(n, m, k=m - n)  # ones on the diagonal ending at B[n-1, m-1]
    return A, B


@struct.dataclass
class EnvState(environment.EnvState):
    s: jax.Array  # (n,) float32
    time: jax.Array  # () int32


@struct.dataclass
class EnvParams(environment.EnvParams):
    """A (n, n), B (n, m), Q (n, n) PSD, R (m, m) PD, init_low/init_high (n,); scalars
    otherwise. Build through `make`, which validates. The defaults are the 1-D system."""

    A: jax.Array = struct.field(default_factory=lambda: jnp.ones((1, 1), jnp.float32))
    B: jax.Array = struct.field(default_factory=lambda: jnp.ones((1, 1), jnp.float32))
    Q: jax.Array = struct.field(default_factory=lambda: jnp.ones((1, 1), jnp.float32))
    R: jax.Array = struct.field(default_factory=lambda: jnp.ones((1, 1), jnp.float32))
    gamma: float = 0.99
    init_low: jax.Array = struct.field(default_factory=lambda: -jnp.ones((1,), jnp.float32))
    init_high: jax.Array = struct.field(default_factory=lambda: jnp.ones((1,), jnp.float32))
    noise_std: float = 0.0  # process noise; the policy's exploration noise is the agent's
    state_bound: float = 100.0
    bound_penalty: float = 1e4
    max_steps_in_episode: int = 200


class LQR(AutoResetEnv[EnvState, EnvParams]):
    """LQR-v0. Shapes are read from `params` (A is (n, n), B is (n, m)); the dimensions given
    here only choose `default_params` and the spaces when no params are passed."""

    def __init__(self, state_dim: int = 1, action_dim: int = 1):
        super().__init__()
        self.state_dim = state_dim
        self.action_dim = action_dim

    @property
    def default_params(self) -> EnvParams:
        return _build_params(self.state_dim, self.action_dim, {})

    @_full_precision
    def step_env(self, key, state, action, params):
        s = state.s
        a = jnp.asarray(action, s.dtype).reshape(params.B.shape[1:])
        cost = s @ params.Q @ s + a @ params.R @ a
        w = jax.random.normal(key, s.shape, s.dtype)
        s_next = params.A @ s + params.B @ a + params.noise_std * w
        # A destabilising policy would overflow to inf within a few hundred steps; stopping and
        # clipping at the bound keeps every output finite.
        out = jnp.any(jnp.abs(s_next) > params.state_bound)
        s_next = jnp.clip(s_next, -params.state_bound, params.state_bound)
        reward = -cost - jnp.where(out, params.bound_penalty, 0.0)
        state = EnvState(s=s_next, time=state.time + 1)
        return self.get_obs(state), state, reward.astype(jnp.float32), out, {}

    def reset_env(self, key, params):
        s = jax.random.uniform(
            key, params.init_low.shape, jnp.float32, params.init_low, params.init_high
        )
        state = EnvState(s=s, time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None) -> jax.Array:
        return state.s

    def is_terminated(self, state, params) -> jax.Array:
        # A state clipped to the bound sits exactly on it.
        return jnp.any(jnp.abs(state.s) >= params.state_bound)

    @property
    def name(self) -> str:
        return "LQR-v0"

    @property
    def num_actions(self) -> int:
        return self.action_dim

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        m = self.action_dim if params is None else params.B.shape[1]
        return spaces.Box(-jnp.inf, jnp.inf, (m,), jnp.float32)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        params = self.default_params if params is None else params
        bound = params.state_bound
        return spaces.Box(-bound, bound, (params.A.shape[0],), jnp.float32)

    def references(self, params: EnvParams, act=None) -> dict:
        """Exact references for a run on these params (the optional hook `jaxpg` reads; see
        `envs.references`).

        Args:
          params: `EnvParams`.
          act: optional deterministic policy `obs (N, n) -> actions (N, m)`; its gain is read
            by probing it at the unit vectors, K[:, j] = act(e_j) - act(0) (exact for a linear
            policy, a secant slope otherwise).

        Returns:
          `{"values": ..., "policies": ...}`. values: the Riccati gain `K*`, `optimal_return`
          (the exact expected undiscounted return of the deterministic K* policy over one
          episode from s0 ~ U[init_low, init_high], what an evaluation of a perfect learner
          averages to) and `optimal_discounted_return` (-s0'P*s0 in expectation); with `act`,
          also `learned_gain` and `gain_relative_error` ||K - K*|| / ||K*|| (Frobenius).
          policies: `riccati` (a = K* s), to score on the same evaluation episodes.
        """
        K_star = optimal_gain(params)
        horizon = int(params.max_steps_in_episode)
        values = {
            "K*": np.asarray(K_star).tolist(),
            "optimal_return": -float(policy_cost(K_star, params.replace(gamma=1.0), 0.0, horizon)),
            "optimal_discounted_return": -float(policy_cost(K_star, params)),
        }
        if act is not None:
            n = params.A.shape[0]
            probes = jnp.concatenate([jnp.zeros((1, n), jnp.float32), jnp.eye(n, dtype=jnp.float32)])
            actions = jnp.asarray(act(probes)).reshape(n + 1, -1)
            K = np.asarray(actions[1:] - actions[:1]).T
            values["learned_gain"] = K.tolist()
            values["gain_relative_error"] = float(
                np.linalg.norm(K - np.asarray(K_star)) / np.linalg.norm(np.asarray(K_star))
            )
        riccati = _full_precision(lambda obs, key: obs @ K_star.T)
        return {"values": values, "policies": {"riccati": riccati}}


ACCEPTED_OVERRIDES = (
    "A", "B", "Q", "R", "gamma", "horizon", "init_low", "init_high",
    "noise_std", "state_bound", "bound_penalty",
)


def make(state_dim: int | None = None, action_dim: int | None = None, **overrides: Any):
    """`envs.make("LQR-v0", ...)`.

    Args:
      state_dim: n; default A.shape[0] when `A` is given, else 1.
      action_dim: m; default B.shape[1] when `B` is given, else 1.
      **overrides: any of `ACCEPTED_OVERRIDES`; `horizon` sets `max_steps_in_episode`,
        `init_low`/`init_high` are scalars or (n,) vectors.

    Returns:
      `(env, env_params)`, with float32 arrays in the params.

    Raises:
      ValueError: an unknown override, or a value of the wrong shape or out of range (the
        message names the field and what it accepts).
    """
    unknown = sorted(set(overrides) - set(ACCEPTED_OVERRIDES))
    if unknown:
        raise ValueError(
            f"LQR-v0: unknown parameter(s) {unknown}; accepted: "
            f"{['state_dim', 'action_dim', *ACCEPTED_OVERRIDES]}"
        )
    if state_dim is None:
        state_dim = np.shape(overrides["A"])[0] if np.ndim(overrides.get("A", 0)) else 1
    if action_dim is None:
        action_dim = np.shape(overrides["B"])[-1] if np.ndim(overrides.get("B", 0)) == 2 else 1
    for name, dim in (("state_dim", state_dim), ("action_dim", action_dim)):
        if int(dim) != dim or dim < 1:
            raise ValueError(f"LQR-v0: {name} must be a positive integer; got {dim!r}")
    return LQR(int(state_dim), int(action_dim)), _build_params(state_dim, action_dim, overrides)


def _build_params(n: int, m: int, overrides: dict) -> EnvParams:
    """Validates `overrides` for an n-state, m-action system and fills in the defaults."""

    def fail(field, accepted, value):
        raise ValueError(f"LQR-v0: {field} must be {accepted}; got {value}")

    A, B = _default_system(n, m)
    defaults = dict(
        A=A, B=B, Q=np.eye(n), R=np.eye(m), gamma=0.99, horizon=200, init_low=-1.0,
        init_high=1.0, noise_std=0.0, state_bound=100.0, bound_penalty=1e4,
    )
    v = {**defaults, **overrides}
    arr = {k: np.asarray(v[k], np.float64) for k in ("A", "B", "Q", "R", "init_low", "init_high")}
    for k, shape in (("A", (n, n)), ("B", (n, m)), ("Q", (n, n)), ("R", (m, m))):
        if arr[k].shape != shape or not np.all(np.isfinite(arr[k])):
            fail(k, f"a finite array of shape {shape} (n={n}, m={m})", f"shape {arr[k].shape}")
    for k, psd in (("Q", "semidefinite"), ("R", "definite")):
        mat = arr[k]
        eig_min = np.linalg.eigvalsh((mat + mat.T) / 2).min()
        scale = max(np.abs(mat).max(), 1.0)
        if not np.allclose(mat, mat.T, atol=1e-6 * scale) or (
            eig_min < -1e-9 * scale if psd == "semidefinite" else eig_min <= 1e-9 * scale
        ):
            fail(k, f"symmetric positive {psd}", f"min eigenvalue {eig_min:.3g}")
    for k in ("init_low", "init_high"):
        if arr[k].shape not in ((), (n,)) or not np.all(np.isfinite(arr[k])):
            fail(k, f"a finite scalar or shape ({n},)", f"{v[k]!r}")
        arr[k] = np.broadcast_to(arr[k], (n,))
    if np.any(arr["init_low"] > arr["init_high"]):
        fail("init_low", "<= init_high in every coordinate", f"{arr['init_low']}")
    gamma = float(v["gamma"])
    if not 0.0 < gamma <= 1.0:
        fail("gamma", "in (0, 1]", gamma)
    horizon = v["horizon"]
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
        fail("horizon", "a positive integer (1, 2, ...)", repr(horizon))
    for k, lo, accepted in (
        ("noise_std", 0.0, "a finite float >= 0"),
        ("bound_penalty", 0.0, "a finite float >= 0"),
        ("state_bound", np.nextafter(0.0, 1.0), "a finite float > 0"),
    ):
        if not np.isscalar(v[k]) and np.ndim(v[k]) != 0 or not lo <= float(v[k]) < np.inf:
            fail(k, accepted, repr(v[k]))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return EnvParams(
        A=f32(arr["A"]), B=f32(arr["B"]), Q=f32(arr["Q"]), R=f32(arr["R"]),
        gamma=gamma, init_low=f32(arr["init_low"]), init_high=f32(arr["init_high"]),
        noise_std=float(v["noise_std"]), state_bound=float(v["state_bound"]),
        bound_penalty=float(v["bound_penalty"]), max_steps_in_episode=int(horizon),
    )


def _dare(A, B, Q, R, max_iter=64):
    """Stabilising solution P (n, n) of P = Q + A'PA - A'PB (R + B'PB)^-1 B'PA.

    Structure-preserving doubling (Chu, Fan, Lin 2005): step k sums 2^k steps of the Riccati
    recursion, so it converges quadratically where plain iteration crawls near marginal
    stability. Needs (A, B) stabilisable; otherwise the result is inf/NaN.
    """
    eye = jnp.eye(A.shape[0], dtype=A.dtype)
    sym = lambda X: (X + X.T) / 2  # noqa: E731
    tol = 8 * jnp.finfo(A.dtype).eps

    def body(carry):
        Ak, Gk, Hk, _, i = carry
        Z = eye + Gk @ Hk
        AZinv = jnp.linalg.solve(Z.T, Ak.T).T
        H_next = sym(Hk + Ak.T @ Hk @ jnp.linalg.solve(Z, Ak))
        G_next = sym(Gk + AZinv @ Gk @ Ak.T)
        change = jnp.max(jnp.abs(H_next - Hk)) / jnp.max(jnp.abs(H_next))
        return AZinv @ Ak, G_next, H_next, change, i + 1

    def cond(carry):
        *_, change, i = carry
        return (change > tol) & (i < max_iter)  # NaN change also stops

    G = sym(B @ jnp.linalg.solve(R, B.T))
    init = (A, G, Q, jnp.asarray(jnp.inf, A.dtype), 0)
    return jax.lax.while_loop(cond, body, init)[2]


@jax.jit
@_full_precision
def optimal_gain(params: EnvParams) -> jax.Array:
    """Infinite-horizon optimal gain K* (m, n) for a = K s: K* = -(R + g B'PB)^-1 g B'PA, P the
    discounted DARE solution (the DARE of sqrt(g) A, sqrt(g) B). Optimal for any noise levels.
    """
    A, B, Q, R, g = params.A, params.B, params.Q, params.R, params.gamma
    P = _dare(jnp.sqrt(g) * A, jnp.sqrt(g) * B, Q, R)
    return -jnp.linalg.solve(R + g * B.T @ P @ B, g * B.T @ P @ A)


def _stein(F, M):
    """X (n, n, k) solving X = M + F' X F for each of the k right-hand sides M (n, n, k).

    Exact vec solve, (F' kron F') vec X = ..., O(n^6): fine for the small n this env is for.
    """
    n = F.shape[0]
    lhs = jnp.eye(n * n, dtype=F.dtype) - jnp.kron(F.T, F.T)
    return jnp.linalg.solve(lhs, M.reshape(n * n, -1)).reshape(M.shape)


def _value_and_stable(K, params, extra=None):
    """P_K (n, n), whether sqrt(g) (A + BK) is stable, and X = extra + g F X F' if given.

    Stability without an eigenvalue solver (nonsymmetric eig is CPU-only in JAX): by
    Lyapunov's theorem F is stable iff Y = I + F'YF has a positive definite solution.
    """
    A, B, Q, R, g = params.A, params.B, params.Q, params.R, params.gamma
    F = jnp.sqrt(g) * (A + B @ K)
    n = A.shape[0]
    rhs = jnp.stack([Q + K.T @ R @ K, jnp.eye(n, dtype=A.dtype)], -1)
    P, Y = jnp.moveaxis(_stein(F, rhs), -1, 0)
    Y = jax.lax.stop_gradient((Y + Y.T) / 2)
    finite = jnp.all(jnp.isfinite(Y))
    stable = finite & (jnp.linalg.eigvalsh(jnp.where(finite, Y, 0.0))[0] > 0)
    X = None if extra is None else _stein(F.T, extra[..., None])[..., 0]
    return (P + P.T) / 2, stable, X


@jax.jit
@_full_precision
def value_matrix(K: jax.Array, params: EnvParams) -> jax.Array:
    """P_K (n, n) with P = Q + K'RK + g (A+BK)' P (A+BK), so that the noise-free discounted cost
    from s0 is s0' P_K s0. All +inf when sqrt(g) (A + BK) has spectral radius >= 1."""
    P, stable, _ = _value_and_stable(K, params)
    return jnp.where(stable, P, jnp.inf)


def _moments(params, noise_std):
    """E[s0 s0'] (n, n), per-step noise covariance W (n, n) and exploration cost c (scalar)."""
    lo, hi = params.init_low, params.init_high
    mu = (lo + hi) / 2
    S0 = jnp.outer(mu, mu) + jnp.diag((hi - lo) ** 2 / 12)
    var = jnp.broadcast_to(jnp.asarray(noise_std, S0.dtype) ** 2, params.B.shape[1:])
    n = S0.shape[0]
    W = (params.B * var) @ params.B.T + params.noise_std**2 * jnp.eye(n, dtype=S0.dtype)
    return S0, W, jnp.sum(jnp.diag(params.R) * var)


def _geometric(g, x):
    """sum_{t>=1} g^t x = g x / (1 - g) elementwise; for g = 1, +-inf where x != 0, else 0."""
    safe = jnp.where(g < 1, 1 - g, 1.0)
    return jnp.where(g < 1, g * x / safe, jnp.where(x == 0, 0.0, jnp.sign(x) * jnp.inf))


@partial(jax.jit, static_argnames=("horizon",))
@_full_precision
def policy_cost(
    K: jax.Array, params: EnvParams, noise_std: Any = 0.0, horizon: int | None = None
) -> jax.Array:
    """Exact expected discounted cost E[sum_t g^t (s_t'Q s_t + a_t'R a_t)] of a = K s + noise_std
    * eps, eps ~ N(0, I), from s0 ~ U[init_low, init_high], with the env's process noise.

    Args:
      K: (m, n) gain.
      params: `EnvParams`.
      noise_std: exploration noise std, scalar or (m,).
      horizon: None for the infinite horizon, or a (static) int T for steps t = 0..T-1 exactly,
        as the env sums them when nothing hits the state bound.

    Returns:
      Scalar cost (= -expected return); +inf for the infinite horizon when sqrt(g)(A+BK) is
      unstable. Differentiable in K (and params).
    """
    A, B, Q, R, g = params.A, params.B, params.Q, params.R, params.gamma
    S0, W, c = _moments(params, noise_std)
    if horizon is None:
        P, stable, _ = _value_and_stable(K, params)
        # The noise injected at step t costs g^(t+1) tr(P W) from then on, and exploration
        # adds c every step: tr(P S0) + (g tr(P W) + c) / (1 - g).
        cost = jnp.sum(P * S0) + _geometric(g, jnp.sum(P * W)) + c + _geometric(g, c)
        return jnp.where(stable, cost, jnp.inf)
    F = A + B @ K
    M = Q + K.T @ R @ K

    def step(S, _):
        return F @ S @ F.T + W, jnp.sum(M * S)

    _, costs = jax.lax.scan(step, S0, None, length=horizon)
    discounts = g ** jnp.arange(horizon, dtype=costs.dtype)
    return jnp.sum(discounts * (costs + c))


@partial(jax.jit, static_argnames=("horizon",))
@_full_precision
def policy_cost_grad(
    K: jax.Array, params: EnvParams, noise_std: Any = 0.0, horizon: int | None = None
) -> jax.Array:
    """d policy_cost / dK, shape (m, n). Infinite horizon: the closed form
    2 [(R + g B'PB) K + g B'PA] Sigma_K, with Sigma_K = sum_t g^t E[s_t s_t'] solving
    Sigma = S0 + g W / (1 - g) + g F Sigma F' (NaN when unstable; with noise it needs g < 1).
    Finite horizon: `jax.grad` of `policy_cost`."""
    if horizon is not None:
        return jax.grad(policy_cost)(K, params, noise_std, horizon)
    A, B, R, g = params.A, params.B, params.R, params.gamma
    S0, W, _ = _moments(params, noise_std)
    P, stable, Sigma = _value_and_stable(K, params, extra=S0 + _geometric(g, W))
    grad = 2 * ((R + g * B.T @ P @ B) @ K + g * B.T @ P @ A) @ Sigma
    return jnp.where(stable, grad, jnp.nan)


@partial(jax.jit, static_argnames=("horizon", "iterations"))
@_full_precision
def _newton(params, noise_std, horizon, iterations):
    """`iterations` damped Newton steps on the flattened gain, from K*; returns K (m, n)."""
    m, n = params.B.shape[1], params.A.shape[0]
    cost = lambda k: policy_cost(k.reshape(m, n), params, noise_std, horizon)  # noqa: E731
    steps = jnp.concatenate([0.5 ** jnp.arange(24.0), jnp.zeros(1)])

    def newton_step(k, _):
        grad, hess = jax.grad(cost)(k), jax.hessian(cost)(k)
        d = jnp.linalg.solve(hess, grad)
        # Away from a minimum the Hessian can be indefinite; steepest descent then.
        d = jnp.where(jnp.isfinite(d).all() & (grad @ d > 0), d, grad)
        # Backtracking over a fixed grid (step 0 included) keeps the cost non-increasing.
        candidates = k - steps[:, None] * d
        return candidates[jnp.argmin(jax.vmap(cost)(candidates))], None

    k, _ = jax.lax.scan(newton_step, optimal_gain(params).reshape(-1), None, length=iterations)
    return k.reshape(m, n)


def optimal_gain_finite_horizon(
    params: EnvParams, noise_std: Any = 0.0, horizon: int | None = None, iterations: int = 20
) -> jax.Array:
    """The best stationary gain (m, n) for the finite-horizon cost `policy_cost(K, params,
    noise_std, horizon)`: what a policy gradient over linear policies a = K s + noise_std * eps
    converges to in this env. Damped Newton from `optimal_gain(params)`.

    `horizon` defaults to `params.max_steps_in_episode` (which must then be concrete, not
    traced). The state-bound termination is ignored: it is never reached near the optimum.
    With no noise, both the exploration and process noise zero, this is K* up to the closed
    loop's transient left after `horizon` steps, typically nothing in float32.
    """
    horizon = int(params.max_steps_in_episode) if horizon is None else horizon
    return _newton(params, noise_std, horizon, iterations)
