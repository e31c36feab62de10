"""Pure-functional JAX environments with gymnax's `Environment` API.

`make(env_id, **overrides)` returns `(env, env_params)`. Our own ids are listed in `ENV_IDS`;
any other id that gymnax registers falls through to `gymnax.make`, so gymnax's environments
and wrappers work wherever ours do. `"SUITE:ID"` makes another JAX suite's environment on the
same API (envs/adapters: brax, playground, craftax, jumanji, xminigrid, navix); `suites()` lists
the installed ones.
"""

import importlib

from envs.gymnax_api import gymnax

# id -> module that defines `make(**overrides) -> (env, env_params)`. Modules load lazily so
# that `import envs` stays cheap and a broken optional environment cannot break the others.
_OWN_ENVS = {
    "CartPole-v1": "envs.cartpole",
    "StatelessCartPole-v1": "envs.stateless_cartpole",
    "LQR-v0": "envs.lqr",
    "SearchRanking-v0": "envs.search_ranking",
    "Copy-v0": "envs.tokens.copy_task",
    "Addition-v0": "envs.tokens.addition",
    "DropZeros-v0": "envs.tokens.drop_zeros",
}
ENV_IDS = tuple(_OWN_ENVS)

_SUBMODULES = ("cartpole", "lqr", "search_ranking", "tokens")


def make(env_id: str, **overrides):
    """Builds an environment and its parameters.

    Args:
      env_id: one of `ENV_IDS`, any id in `gymnax.registered_envs`, or `"SUITE:ID"` for a
        suite in `suites()` (envs/adapters).
      **overrides: environment options (ours and the suites') or `EnvParams` fields (gymnax's).

    Returns:
      `(env, env_params)`.
    """
    if env_id in _OWN_ENVS:
        return importlib.import_module(_OWN_ENVS[env_id]).make(**overrides)
    if ":" in env_id:
        return importlib.import_module("envs.adapters").make(env_id, **overrides)
    if env_id in gymnax.registered_envs:
        env, params = gymnax.make(env_id)
        if overrides:
            unknown = sorted(set(overrides) - set(params.__dataclass_fields__))
            if unknown:
                raise ValueError(
                    f"{env_id}: unknown parameter(s) {unknown}; "
                    f"accepted: {sorted(params.__dataclass_fields__)}"
                )
            params = params.replace(**overrides)
        return env, params
    known = ", ".join(ENV_IDS)
    raise ValueError(
        f"unknown environment id {env_id!r}: ours are {known}; gymnax also provides "
        f"{', '.join(gymnax.registered_envs)}; other suites as SUITE:ID (installed: "
        f"{', '.join(suites()) or 'none'})"
    )


def suites() -> tuple[str, ...]:
    """The environment suites `make("SUITE:ID")` can reach here: those whose packages are
    installed (`pip install 'jaxpg[suites]'` installs all six)."""
    return importlib.import_module("envs.adapters").installed()


def __getattr__(name):
    # `envs.lqr.optimal_gain` works after a plain `import envs`.
    if name in _SUBMODULES:
        return importlib.import_module(f"envs.{name}")
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
