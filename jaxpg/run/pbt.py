"""Population-based training (Jaderberg et al. 2017) as one vmapped population on the devices.

    state, lineage = jaxpg.pbt(trainer, jax.random.split(key, 16), explore={"lr": (1e-4, 1e-2, "log")},
                               ready_every=20, out="runs/pbt")

The members are `fit`'s runs: one vmapped state, trained in host-driven chunks. Every
`ready_every` iterations the members are ranked by fitness; the bottom `truncation` fraction of
each population copies the learned state (parameters, optimiser state, observation statistics,
the algorithm's learned statistics, hyperparameters) of a member drawn from the top fraction,
keeping its own environments, episode counters and PRNG stream, and then explores: each
explored hyperparameter is resampled from its range with probability `resample_probability`,
else multiplied by one of `perturb`'s factors, and clipped to the range. The step is one pure
jitted function of the population state (`exploit_and_explore`): parameters never leave the
devices; only the fitness and the lineage go to the host. Its randomness is
`fold_in(key(seed), ready point)`, so a run resumed from a checkpoint (saved at ready points)
replays it exactly.
"""

import csv
import math
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxpg.run.fit import fit
from jaxpg.run.options import RunOptions
from jaxpg.run.sharding import host_copy, is_main_process

SCALES = ("linear", "log")
LINEAGE_FILE = "pbt.csv"


def parse_range(name: str, text: str):
    """`LOW:HIGH[:log|linear]` (the CLI's `--explore NAME=...`) -> `(low, high, scale)`."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"explore {name}={text!r} is not a range; accepted: LOW:HIGH or LOW:HIGH:log") from None
    return low, high, parts[2] if len(parts) == 3 else "linear"


def check_explore(trainer, explore: dict) -> dict:
    """`explore` checked: each name a traced hyperparameter of the trainer's algorithm, each range
    `(low, high, scale)` with low < high inside the hyperparameter's accepted interval, and a log
    range above 0. Returns `{name: (low, high, scale)}`; ValueError naming the field otherwise."""
    names = trainer.config.hparam_names()
    checked = {}
    for name, spec in explore.items():
        if name not in names:
            raise ValueError(f"explore: {name!r} is not a traced hyperparameter of {trainer.algo}; "
                             f"accepted: {', '.join(sorted(names))}")
        if isinstance(spec, str):
            spec = parse_range(name, spec)
        if len(spec) == 2:
            spec = (*spec, "linear")
        low, high, scale = float(spec[0]), float(spec[1]), spec[2]
        if scale not in SCALES:
            raise ValueError(f"explore {name}: scale {scale!r} is unknown; accepted: {', '.join(SCALES)}")
        if not low < high:
            raise ValueError(f"explore {name}: low={low:g} must be below high={high:g}")
        if scale == "log" and low <= 0:
            raise ValueError(f"explore {name}: a log range needs 0 < low, got low={low:g}")
        trainer.config.check_hparams({name: np.array([low, high])})
        checked[name] = (low, high, scale)
    return checked


def initial_values(explore: dict, num_runs: int, seed: int) -> dict:
    """Each explored hyperparameter drawn for every member, uniformly on its range's scale
    (`(num_runs,)` float32 per name); the same draws for a given `seed`, so random search over
    the same population starts from the same settings."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, (low, high, scale) in explore.items():
        if scale == "log":
            values[name] = np.exp(rng.uniform(math.log(low), math.log(high), num_runs))
        else:
            values[name] = rng.uniform(low, high, num_runs)
    return {k: v.astype(np.float32) for k, v in values.items()}


def _draw(key, shape, low, high, scale):
    if scale == "log":
        return jnp.exp(jax.random.uniform(key, shape, minval=math.log(low), maxval=math.log(high)))
    return jax.random.uniform(key, shape, minval=low, maxval=high)


def exploit_and_explore(trainer, state, fitness, key, explore: dict, populations: int = 1,
                        truncation: float = 0.25, perturb=(0.8, 1.25), resample_probability: float = 0.25):
    """One exploit/explore step over a batched `TrainState`; pure and jit-able.

    Args:
      trainer: the trainer whose state it is (`trainer.inherited_extra` names the fields of
        `state.extra` that travel with the learned state).
      state: `(P, ...)` batched state; its first `len(fitness)` members form `populations`
        equal populations, member-major within each (run `g * N + m`); members beyond are
        padding and map to themselves.
      fitness: `(R,)` higher is better; NaN ranks last.
      key: PRNG key of this step.
      explore: `{name: (low, high, scale)}` (`check_explore`).

    Returns:
      `(state, parents)`: the new state and `(P,)` each member's parent (itself if it kept
      its own state).
    """
    num_padded, num_runs = state.iteration.shape[0], fitness.shape[0]
    size = num_runs // populations
    count = max(1, int(truncation * size))
    ranked = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness).reshape(populations, size)
    order = jnp.argsort(-ranked, axis=1, stable=True)  # best first; ties keep the lower index
    top, bottom = order[:, :count], order[:, size - count:]
    pick_key, resample_key, draw_key, factor_key = jax.random.split(key, 4)
    sources = jnp.take_along_axis(top, jax.random.randint(pick_key, (populations, count), 0, count), axis=1)
    parents = jnp.tile(jnp.arange(size), (populations, 1))
    parents = parents.at[jnp.arange(populations)[:, None], bottom].set(sources)
    parents = (parents + size * jnp.arange(populations)[:, None]).reshape(-1)
    parents = jnp.concatenate([parents, jnp.arange(num_runs, num_padded)])
    copied = parents != jnp.arange(num_padded)

    take = lambda tree: jax.tree.map(lambda x: x[parents], tree)
    extra = state.extra.replace(**{f: take(getattr(state.extra, f)) for f in trainer.inherited_extra})
    hparams = take(state.hparams)
    names = list(explore)
    for i, name in enumerate(names):
        low, high, scale = explore[name]
        value = hparams[name]
        resample = jax.random.bernoulli(jax.random.fold_in(resample_key, i), resample_probability, value.shape)
        factor = jnp.asarray(perturb, jnp.float32)[
            jax.random.randint(jax.random.fold_in(factor_key, i), value.shape, 0, len(perturb))]
        drawn = _draw(jax.random.fold_in(draw_key, i), value.shape, low, high, scale)
        explored = jnp.clip(jnp.where(resample, drawn, value * factor), low, high).astype(value.dtype)
        hparams[name] = jnp.where(copied, explored, value)
    state = state.replace(params=take(state.params), opt_state=take(state.opt_state),
                          obs_stats=take(state.obs_stats), extra=extra, hparams=hparams)
    return state, parents


def check_options(num_runs, populations, explore, ready_every, total, truncation, perturb, resample_probability,
                  checkpoint_every, chunk_size, fitness_window):
    """One-line errors naming the field and its accepted range, before anything compiles."""
    if populations < 1 or num_runs % populations:
        raise ValueError(f"populations={populations} must be at least 1 and divide the {num_runs} keys")
    size = num_runs // populations
    if size < 2 and explore:
        raise ValueError(f"population={size} (keys per population) must be at least 2 to exploit and explore")
    if not isinstance(ready_every, int) or not 1 <= ready_every <= total:
        raise ValueError(f"ready_every={ready_every!r} must be an integer in [1, {total}] (the run's iterations)")
    if not 0 < truncation <= 0.5:
        raise ValueError(f"truncation={truncation} must be in (0, 0.5]")
    if not perturb or any(not (f > 0) for f in perturb):
        raise ValueError(f"perturb={tuple(perturb)} must be one or more factors > 0")
    if not 0 <= resample_probability <= 1:
        raise ValueError(f"resample_probability={resample_probability} must be in [0, 1]")
    if checkpoint_every and checkpoint_every % ready_every:
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a multiple of ready_every={ready_every} "
                         "(a checkpoint sits at a ready point, so a resume replays the exploit steps exactly)")
    if chunk_size and ready_every % chunk_size:
        raise ValueError(f"chunk_size={chunk_size} must divide ready_every={ready_every}")
    if not isinstance(fitness_window, int) or not 1 <= fitness_window <= ready_every:
        raise ValueError(f"fitness_window={fitness_window!r} must be an integer in [1, ready_every={ready_every}]")


class PBTResult(tuple):
    """What `pbt` returns: `(state, lineage)`, with `.metrics` (as `fit`'s) and `.report` (`fit`'s,
    plus `exploit_seconds`: the time spent ranking, applying the exploit/explore steps and
    recording the lineage, and `exploit_compile_seconds`: compiling the step, once)."""

    def __new__(cls, state, lineage, metrics, report):
        result = super().__new__(cls, (state, lineage))
        result.metrics, result.report = metrics, report
        return result


def pbt(trainer, keys, explore: dict, ready_every: int, *, populations: int = 1, truncation: float = 0.25,
        perturb=(0.8, 1.25), resample_probability: float = 0.25, fitness=None, fitness_window: int | None = None,
        seed: int = 0, hparams=None, env_params=None, out: str | None = None, resume: bool = False, record=None,
        **options):
    """Trains a population with exploit and explore every `ready_every` iterations.

    Args:
      trainer: a jaxpg trainer.
      keys: `(R,)` PRNG keys, one per member; `populations` independent populations of `R /
        populations` members each (population-major), so several population seeds run as one
        program.
      explore: `{name: (low, high, "log" | "linear")}` (or `"LOW:HIGH:log"` strings): traced
        hyperparameters to search. Each member's initial value is drawn from the range
        (`initial_values(explore, R, seed)`), unless `hparams` gives it.
      ready_every: iterations between exploit/explore steps.
      truncation: the fraction of each population replaced (and copied from) at a ready point.
      perturb: factors an explored value is multiplied by (one drawn per member and name).
      resample_probability: the chance an explored value is drawn afresh from its range instead.
      fitness: None ranks members by the mean training `episode_return` of the last
        `fitness_window` iterations (default a quarter of `ready_every`); or
        `fitness(state, iteration) -> (R,)` on the batched state (e.g. an evaluation).
      seed: seeds the initial draws and every exploit/explore step.
      hparams, env_params, out, resume, record, **options: as `jaxpg.fit` (run options included).
        A checkpoint must sit at a ready point: `checkpoint_every` a multiple of `ready_every`.

    Returns:
      `(state, lineage)` as a `PBTResult`: the final batched state and a dict of host arrays,
      one row per ready point and one before the first (iteration 0): `iteration (T,)`,
      `parent (T, R)`, `fitness (T, R)` (NaN at iteration 0) and each explored name's values
      `(T, R)` after that point's explore step. With `out`, also `pbt.csv` and `pbt.png`.
    """
    keys = jnp.asarray(keys)
    num_runs, total = int(keys.shape[0]), trainer.total_iterations
    fitness_window = fitness_window if fitness_window is not None else max(1, ready_every // 4)
    run_options = RunOptions.from_options(options)
    explore = check_explore(trainer, explore)
    check_options(num_runs, populations, explore, ready_every, total, truncation, perturb, resample_probability,
                  run_options.checkpoint_every, run_options.chunk_size, fitness_window)
    hparams = {**initial_values(explore, num_runs, seed), **(hparams or {})}
    step_fn = jax.jit(lambda state, fit_values, key: exploit_and_explore(
        trainer, state, fit_values, key, explore, populations, truncation, tuple(perturb), resample_probability))
    compiled = {}
    base_key = jax.random.key(seed)

    lineage = {"iteration": [0], "parent": [np.arange(num_runs)], "fitness": [np.full(num_runs, np.nan, np.float32)],
               **{name: [np.broadcast_to(np.asarray(hparams[name], np.float32), (num_runs,))] for name in explore}}
    window, timing = [], {"exploit_seconds": 0.0, "exploit_compile_seconds": 0.0}
    lineage_path = os.path.join(out, LINEAGE_FILE) if out is not None else None

    def after_chunk(state, chunk, done):
        first = int(chunk["iteration"][0, 0])
        if first and len(lineage["iteration"]) == 1 and lineage_path and os.path.exists(lineage_path):
            _read_lineage(lineage_path, lineage, explore, upto=first)  # a resumed run's earlier ready points
        window.append(np.asarray(chunk["episode_return"], np.float64))
        if done % ready_every or done == total:
            return state
        started = time.perf_counter()
        if fitness is None:
            recent = np.concatenate(window, axis=1)[:, -fitness_window:]
            with warnings.catch_warnings():  # a member that finished no episode in the window ranks last
                warnings.simplefilter("ignore", RuntimeWarning)
                values = np.nanmean(recent, axis=1)
        else:
            values = np.asarray(fitness(state, done), np.float64)[:num_runs]
        window.clear()
        values = values.astype(np.float32)  # what the step ranks, and what pbt.csv holds exactly
        arguments = (state, jnp.asarray(values), jax.random.fold_in(base_key, done))
        if "step" not in compiled:  # compiled once, timed apart from the steps themselves
            compile_started = time.perf_counter()
            compiled["step"] = step_fn.lower(*arguments).compile()
            timing["exploit_compile_seconds"] += time.perf_counter() - compile_started
            started = time.perf_counter()
        state, parents = compiled["step"](*arguments)
        # One transfer to the host for the lineage: the parents and the explored values.
        parents, explored = host_copy((parents, {name: state.hparams[name] for name in explore}))
        parents = parents[:num_runs]
        lineage["iteration"].append(done)
        lineage["parent"].append(parents)
        lineage["fitness"].append(values)
        for name in explore:
            lineage[name].append(explored[name][:num_runs])
        if lineage_path and is_main_process():
            _write_lineage(lineage_path, lineage, explore)
        timing["exploit_seconds"] += time.perf_counter() - started
        return state

    fitted = fit(trainer, keys, hparams=hparams, env_params=env_params, out=out, resume=resume, record=record,
                 after_chunk=after_chunk, align_chunks=ready_every, **options)
    state, metrics = fitted
    lineage = {k: np.asarray(v) for k, v in lineage.items()}
    if out is not None and is_main_process():
        _write_lineage(lineage_path, lineage, explore)
        plot(os.path.join(out, "pbt.png"), lineage, metrics, explore, populations)
    report = dict(fitted.report, **timing)
    # fit timed the step's compilation as part of the run (it happened between chunks).
    report["run_seconds"] -= timing["exploit_compile_seconds"]
    report["compile_seconds"] += timing["exploit_compile_seconds"]
    return PBTResult(state, lineage, metrics, report)


def _write_lineage(path: str, lineage: dict, explore: dict) -> None:
    """`pbt.csv`: one row per member and ready point (iteration 0: the initial draws)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["iteration", "member", "parent", *explore, "fitness"])
        for t, iteration in enumerate(lineage["iteration"]):
            for member in range(len(lineage["parent"][t])):
                writer.writerow([int(iteration), member, int(lineage["parent"][t][member]),
                                 *(f"{float(lineage[n][t][member]):.9g}" for n in explore),
                                 f"{float(lineage['fitness'][t][member]):.9g}"])
    os.replace(temporary, path)


def _read_lineage(path: str, lineage: dict, explore: dict, upto: int) -> None:
    """Reads back a resumed run's ready points after iteration 0 up to `upto` (the checkpoint's
    iteration: its state is the one after that ready point's step)."""
    rows = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            iteration = int(row["iteration"])
            if 0 < iteration <= upto:
                rows.setdefault(iteration, []).append(row)
    for iteration in sorted(rows):
        members = sorted(rows[iteration], key=lambda r: int(r["member"]))
        lineage["iteration"].append(iteration)
        lineage["parent"].append(np.array([int(r["parent"]) for r in members]))
        lineage["fitness"].append(np.array([float(r["fitness"]) for r in members], np.float32))
        for name in explore:
            lineage[name].append(np.array([float(r[name]) for r in members], np.float32))


def ancestry(lineage: dict, member: int) -> np.ndarray:
    """`(T,)` the member whose values `member` carried at each ready point: its history traced
    back through its parents (the last entry is `member` itself)."""
    path, current = [], member
    for t in range(len(lineage["iteration"]) - 1, -1, -1):
        path.append(current)
        current = int(lineage["parent"][t][current])
    return np.asarray(path[::-1])


def schedule(lineage: dict, member: int, explore) -> list[dict]:
    """The hyperparameters `member` trained with, as `[{"iteration", name: value}]` from iteration 0,
    following its ancestry (the settings its weights were trained under)."""
    path = ancestry(lineage, member)
    return [{"iteration": int(lineage["iteration"][t]), **{n: float(lineage[n][t][path[t]]) for n in explore}}
            for t in range(len(path))]


def describe_schedule(rows: list[dict]) -> str:
    """A `schedule` as one line, naming only the ready points where a value changed."""
    names = [k for k in rows[0] if k != "iteration"]
    changes = [row for i, row in enumerate(rows) if i == 0 or any(row[n] != rows[i - 1][n] for n in names)]
    return "; ".join(f"from {row['iteration']}: " + ", ".join(f"{n}={row[n]:.4g}" for n in names) for row in changes)


def table(lineage: dict, names, population: int, final_train, evaluation) -> str:
    """A Markdown table of every member: its population, final explored values and returns."""
    lines = [f"| population | member | {' | '.join(names)} | final training return | evaluation return |",
             "|---:|---:|" + "---:|" * (len(names) + 2)]
    for member in range(len(evaluation)):
        values = " | ".join(f"{lineage[n][-1][member]:.4g}" for n in names)
        lines.append(f"| {member // population} | {member} | {values} | {final_train[member]:.4g} | "
                     f"{evaluation[member]:.4g} |")
    return "\n".join(lines)


def plot(path: str, lineage: dict, metrics: dict, explore: dict, populations: int = 1) -> None:
    """`pbt.png`: each explored hyperparameter of the surviving lineages over the iterations (one
    line per final member, following its ancestry), and every member's training return."""
    from matplotlib.figure import Figure

    names = list(explore)
    fig = Figure(figsize=(5 * (len(names) + 1), 3.8))
    axes = fig.subplots(1, len(names) + 1, squeeze=False)
    iterations = np.asarray(lineage["iteration"])
    num_runs = len(lineage["parent"][0])
    end = int(np.max(metrics["iteration"])) + 1 if metrics and "iteration" in metrics else iterations[-1]
    for ax, name in zip(axes[0], names):
        for member in range(num_runs):
            line = ancestry(lineage, member)
            values = [lineage[name][t][line[t]] for t in range(len(line))]
            ax.step([*iterations, end], [*values, values[-1]], where="post", alpha=0.6, lw=1)
        if explore[name][2] == "log":
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
        ax.set_title(f"{name} along each surviving lineage")
    ax = axes[0][-1]
    if metrics and "episode_return" in metrics:
        returns = np.asarray(metrics["episode_return"])
        for member in range(returns.shape[0]):
            ax.plot(np.asarray(metrics["iteration"])[member], returns[member], alpha=0.4, lw=0.8)
    for iteration in iterations[1:]:
        ax.axvline(iteration, color="grey", lw=0.3, alpha=0.5)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training episode return")
    ax.set_title(f"{num_runs} members" + (f" in {populations} populations" if populations > 1 else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
