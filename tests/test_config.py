"""Options are declared once: checks, hparams, help, docstrings and schedules come from it."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

import envs
import jaxpg
from jaxpg import presets
from jaxpg.algos.config import Config, hparam
from jaxpg.algos.trainer import make_schedule


@pytest.mark.parametrize("algo", list(jaxpg.ALGORITHMS))
def test_hparams_help_and_docstring_come_from_the_declaration(algo):
    trainer_class = jaxpg.ALGORITHMS[algo]
    specs = trainer_class.Config.specs()
    traced = {name for name, spec in specs.items() if spec.traced}
    trainer = jaxpg.make_trainer(algo, *envs.make("CartPole-v1"), hidden_sizes=(8,), total_timesteps=1)
    assert set(trainer.hparams) == traced
    table = trainer_class.Config.table()
    for name, spec in specs.items():
        assert f"`{name}`" in table and spec.doc in table
        assert f"  {name} (" in trainer_class.__doc__
    assert all(isinstance(v, jax.Array) and v.dtype == np.float32 for v in trainer.hparams.values())


def test_every_declared_range_is_enforced_with_the_field_named():
    env, params = envs.make("CartPole-v1")
    for algo, trainer_class in jaxpg.ALGORITHMS.items():
        for name, spec in trainer_class.Config.specs().items():
            if spec.kind == "float" and spec.interval[0] == 0.0 and not spec.interval[2]:
                bad = 0.0  # an open lower bound at 0
            elif spec.kind == "float":
                bad = -1.0
            elif spec.kind == "int":
                bad = spec.interval[0] - 1
            elif spec.kind == "choice":
                bad = "no-such-choice"
            elif spec.kind == "bool":
                bad = "yes"
            else:
                bad = (0,)
            with pytest.raises(ValueError, match=rf"{name}="):
                jaxpg.make_trainer(algo, env, params, **{name: bad})


def test_a_new_hyperparameter_needs_no_other_registration():
    @dataclasses.dataclass(frozen=True)
    class Extended(Config):
        algo = "extended"
        temperature: float = hparam(1.0, "a new traced option")

    assert "temperature" in Extended.hparam_names()
    with pytest.raises(ValueError, match=r"temperature=-2 is out of range; accepted: \(0.0, inf\)"):
        Extended(temperature=-2.0)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['temperatur'\]"):
        Extended().check_hparams({"temperatur": 1.0})


def test_learning_rate_schedules_are_optax_schedules():
    counts = np.arange(5)
    expected = {
        "constant": np.full(5, 1e-2),
        "linear": optax.linear_schedule(1e-2, 1e-4, 5)(counts),
        "cosine": optax.cosine_decay_schedule(1e-2, 5, alpha=1e-2)(counts),
        "exponential": 1e-2 * (1e-4 / 1e-2) ** (counts / 5),
    }
    for name, rates in expected.items():
        schedule = make_schedule(name, 1e-2, 1e-4, 5)
        np.testing.assert_allclose([schedule(c) if callable(schedule) else schedule for c in counts], rates, rtol=1e-4)


@pytest.mark.integration
def test_the_trainer_steps_by_its_schedule_and_reports_it():
    # One run (the other schedules share the code).
    expected = 1e-2 * (1e-4 / 1e-2) ** (np.arange(5) / 5)
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("reinforce", env, params, num_envs=2, num_steps=20, total_timesteps=2 * 20 * 5,
                                 hidden_sizes=(8,), lr=1e-2, lr_end=1e-4, lr_schedule="exponential")
    _, metrics = trainer.train(jax.random.key(0))
    np.testing.assert_allclose(metrics["learning_rate"], expected, rtol=1e-4)


def check_presets_build(chosen):
    """Each preset builds, every option it sets reaches the trainer, and it is found for its env."""
    for (name, algo), preset in chosen:
        env, params = envs.make(preset.env_id, **preset.env_options)
        trainer = jaxpg.make_trainer(algo, env, params, preset=name)
        for option, value in preset.options.items():  # every option the preset sets reaches the trainer
            if option in trainer.hparams:
                assert float(trainer.hparams[option]) == np.float32(value), (name, option)
            else:
                given = tuple(value) if isinstance(value, list) else value
                assert getattr(trainer.config, option) == given, (name, option)
        assert presets.find(preset.env_id, algo, preset.env_options) is preset


def test_every_preset_builds_and_is_found_for_its_environment():
    # Other suites' presets build under -m integration: making their environments imports brax,
    # MuJoCo and the rest (about 14 CPU-s), which the unit tier's 3 minutes cannot spare.
    check_presets_build([(k, p) for k, p in presets.PRESETS.items() if ":" not in p.env_id])
    assert presets.find("LQR-v0", "ppo", {"state_dim": 2}) is None
    assert presets.find("SearchRanking-v0", "ppo", {"n_products": 100}).name == "SearchRanking-v0"
    # A token task's width counts with its default (2 digits for Addition-v0), however given.
    assert presets.find("Addition-v0", "grpo", {}).name == "Addition-v0-2digits"
    assert presets.find("Addition-v0", "grpo", {"min_digits": 2, "max_digits": 2}).name == "Addition-v0-2digits"
    assert presets.find("Addition-v0", "grpo", {"num_digits": 3}) is None
    assert presets.find("Addition-v0", "grpo", {"min_digits": 1, "max_digits": 4}) is None
    with pytest.raises(ValueError, match="preset='Nope' has no ppo settings; accepted for ppo: Acrobot-v1"):
        presets.get("Nope", "ppo")
    override = jaxpg.make_trainer("ppo", *envs.make("Acrobot-v1"), preset="Acrobot-v1", lr=5e-4)
    assert float(override.hparams["lr"]) == np.float32(5e-4) and override.config.num_steps == 64


@pytest.mark.integration
def test_every_other_suites_preset_builds_and_is_found_for_its_environment():
    installed = set(envs.suites())
    chosen = [(k, p) for k, p in presets.PRESETS.items() if ":" in p.env_id and p.env_id.split(":")[0] in installed]
    assert chosen
    check_presets_build(chosen)
