"""The config system: typed loading, overrides, and errors that name the key, the source and the fix."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from vla_razor.config import ConfigError, dump_yaml, load_config, parse_override, to_dict


@dataclass
class Optim:
    learning_rate: float = 3e-4
    """Adam step size."""
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Experiment:
    name: str = "run"
    seed: int = 0
    algo: Literal["ppo", "grpo", "sft"] = "ppo"
    tasks: list[str] = field(default_factory=lambda: ["PickCube"])
    checkpoint: Optional[Path] = None
    smoke: bool = False
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_file_and_overrides(tmp_path):
    path = write(tmp_path, "name: demo\noptim:\n  learning_rate: 1\ntasks: [PushCube, PullCube]\n")
    cfg = load_config(
        Experiment, path, ["seed=3", "optim.betas=[0.5, 0.6]", "checkpoint=runs/base", "algo=sft"]
    )
    assert cfg == Experiment(
        name="demo",
        seed=3,
        algo="sft",
        tasks=["PushCube", "PullCube"],
        checkpoint=Path("runs/base"),
        optim=Optim(learning_rate=1.0, betas=(0.5, 0.6)),
    )
    assert isinstance(cfg.optim.learning_rate, float)
    assert load_config(Experiment) == Experiment()


def test_round_trip_through_yaml(tmp_path):
    cfg = Experiment(name="x", checkpoint=Path("a/b"), optim=Optim(betas=(0.1, 0.2)))
    path = write(tmp_path, dump_yaml(cfg))
    assert load_config(Experiment, path) == cfg
    assert to_dict(cfg)["checkpoint"] == "a/b"


def test_unknown_key_names_file_and_closest_key(tmp_path):
    path = write(tmp_path, "optim:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Experiment, path)
    msg = str(err.value)
    assert str(path) in msg and "'optim.learning_rat'" in msg and "did you mean 'learning_rate'" in msg


def test_unknown_override_key(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'sed=1'.*unknown key 'sed'.*did you mean 'seed'"):
        load_config(Experiment, None, ["sed=1"])
    with pytest.raises(ConfigError, match=r"'seed' is not a section"):
        load_config(Experiment, None, ["seed.x=1"])


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"valid keys: algo, checkpoint, name, optim, seed, smoke, tasks"):
        load_config(Experiment, write(tmp_path, "zzzzzz: 1\n"))


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("seed: abc\n", r"key 'seed' expects int, got str 'abc'"),
        ("seed: 1.5\n", r"key 'seed' expects int, got float"),
        ("smoke: 1\n", r"key 'smoke' expects bool, got int"),
        ("algo: dqn\n", r"key 'algo' expects one of 'ppo', 'grpo', 'sft', got str 'dqn'"),
        ("tasks: PickCube\n", r"key 'tasks' expects list"),
        ("tasks: [1]\n", r"key 'tasks\[0\]' expects str"),
        ("optim: 3\n", r"key 'optim' expects Optim"),
        ("optim:\n  betas: [1]\n", r"key 'optim.betas' expects tuple.*needs 2 items"),
        ("seed: -1\n", r"invalid 'Experiment': seed must be >= 0"),
        ("- a\n- b\n", r"top level must be a mapping"),
        ("a: [\n", r"not valid YAML"),
    ],
)
def test_type_errors_name_the_key_and_file(tmp_path, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(Experiment, path)
    assert str(path) in str(err.value)


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Experiment, "nope/none.yaml")
    with pytest.raises(ConfigError, match="not of the form key.sub=value"):
        parse_override("seed")
    assert parse_override("a.b=1e-3") == ("a.b", 0.001)
    assert parse_override("name=") == ("name", "")


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    cfg = load_config(Optim, write(tmp_path, "learning_rate: 3e-4\n"))
    assert cfg.learning_rate == 3e-4


def test_smoke_budget_yields_to_explicit_overrides():
    from vla_razor.config import with_smoke

    cfg = load_config(Experiment, None, ["seed=5"])
    smoke = with_smoke(
        cfg,
        {"seed": 1, "smoke": True, "optim": Optim(learning_rate=9.0)},
        ["seed=5", "optim.betas=[0.1, 0.2]"],
    )
    assert smoke.seed == 5 and smoke.smoke is True and smoke.optim == cfg.optim


def test_ranges_and_finiteness_are_checked_for_every_field_of_every_config():
    import dataclasses as dc
    import math

    from vla_razor.config import Fraction, NonNegativeInt, PositiveFloat, build_config

    @dc.dataclass
    class Inner:
        rate: Fraction = 0.5

    @dc.dataclass
    class Outer:
        lr: PositiveFloat = 1e-3
        warmup: NonNegativeInt = 0
        rates: list[Fraction] = dc.field(default_factory=list)
        inner: Inner = dc.field(default_factory=Inner)
        scale: float = 1.0  # no range, but finite

    assert (
        build_config(Outer, {"lr": 2, "warmup": 0, "rates": [0, 1], "inner": {"rate": 1}}, "", "t").lr == 2.0
    )
    for data, message in [
        ({"lr": 0}, r"'lr' must be > 0, got 0"),
        ({"warmup": -1}, r"'warmup' must be >= 0"),
        ({"rates": [0.5, 1.5]}, r"'rates\[1\]' must be >= 0 and <= 1, got 1.5"),
        ({"inner": {"rate": -0.1}}, r"'inner.rate' must be >= 0 and <= 1"),
        ({"scale": math.nan}, r"'scale' expects a finite float, got nan"),
        ({"scale": -math.inf}, r"'scale' expects a finite float, got -inf"),
        ({"lr": math.nan}, r"'lr' expects a finite float"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_config(Outer, data, "", "t")


@dataclass
class WithMapping:
    policy: dict[str, int] = field(default_factory=lambda: {"hidden": 128, "layers": 2})
    keys: dict[str, str] = field(default_factory=dict)


def test_a_dotted_override_sets_one_key_of_a_mapping_on_top_of_its_default():
    cfg = load_config(WithMapping, None, ["policy.hidden=64", "keys.proprio=observation.joints.pos"])
    assert cfg.policy == {"hidden": 64, "layers": 2}  # the other default keys stay
    assert cfg.keys == {"proprio": "observation.joints.pos"}  # the key is everything after the field
    assert WithMapping().policy == {"hidden": 128, "layers": 2}  # the default itself is untouched


TRAINER_CONFIGS = [
    ("vla_razor.rl.ppo", "PPOConfig"),
    ("vla_razor.rl.grpo", "GRPOConfig"),
    ("vla_razor.sft.bc", "SFTConfig"),
    ("vla_razor.llm.harness", "LLMFinetuneConfig"),
    ("vla_razor.pretrain", "PretrainConfig"),
    ("vla_razor.llm.pretrain", "LLMPretrainConfig"),
]


def _trainer_configs():
    import importlib

    return [getattr(importlib.import_module(m), c) for m, c in TRAINER_CONFIGS]


def test_every_trainer_config_is_one_class_on_the_shared_base_and_declares_each_field_once():
    import dataclasses as dc

    from vla_razor.config import Config
    from vla_razor.training import TrainerConfig

    def trainer_subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from trainer_subclasses(sub)

    configs = _trainer_configs()
    # every trainer config of those modules is in the list above (a new one gets walked too)
    assert {c.__name__ for c in trainer_subclasses(TrainerConfig)} == {c for _, c in TRAINER_CONFIGS}
    for cls in configs:
        # two levels: the algorithm's class directly on TrainerConfig; the rest are field groups
        assert TrainerConfig in cls.__bases__, cls
        groups = [b for b in cls.__bases__ if b is not TrainerConfig]
        assert all(not issubclass(g, Config) and dc.is_dataclass(g) for g in groups), cls
        declared: dict[str, str] = {}
        for klass in [k for k in cls.__mro__ if dc.is_dataclass(k)]:
            overridden = set(klass.__dict__.get("defaults", {}))
            for name in klass.__dict__.get("__annotations__", {}):
                if name in overridden:
                    continue
                assert name not in declared, f"{cls.__name__}.{name}: in {declared.get(name)} and {klass}"
                declared[name] = klass.__name__
        # every field has one declaration somewhere in the class's own chain, and a docstring-free
        # redeclaration through `defaults` keeps the type of the first one
        assert set(declared) == {f.name for f in dc.fields(cls)}, cls


def test_defaults_change_an_inherited_default_and_nothing_else():
    import typing

    from vla_razor.rl.ppo import PPOConfig
    from vla_razor.sft.bc import SFTConfig
    from vla_razor.training import TrainerConfig

    assert TrainerConfig().lr == 1e-4 and PPOConfig().lr == 3e-6 and SFTConfig().lr == 1e-4
    assert PPOConfig().checkpoint_every == 5 and TrainerConfig().checkpoint_every == 10
    hints = typing.get_type_hints(PPOConfig, include_extras=True)
    assert hints["lr"] == typing.get_type_hints(TrainerConfig, include_extras=True)["lr"]
    with pytest.raises(ConfigError, match="'lr' must be > 0"):
        PPOConfig(lr=0)
    with pytest.raises(TypeError, match="'lrr' is not a field"):

        @dataclass
        class Typo(TrainerConfig):
            defaults = dict(lrr=1.0)


@pytest.mark.parametrize(
    "module, cls, kwargs, message",
    [
        ("vla_razor.rl.ppo", "PPOConfig", {"gamma": 0.0}, r"'gamma' must be > 0 and <= 1"),
        ("vla_razor.rl.ppo", "PPOConfig", {"vectorization": "threads"}, r"'vectorization' expects one of"),
        ("vla_razor.rl.ppo", "PPOConfig", {"device": "tpu"}, r"'device' must be 'cpu', 'cuda', 'cuda:N'"),
        ("vla_razor.rl.ppo", "PPOConfig", {"kl_states": 1}, r"'kl_states' must be >= 2"),
        ("vla_razor.rl.grpo", "GRPOConfig", {"group_size": 1}, r"'group_size' must be >= 2"),
        ("vla_razor.rl.grpo", "GRPOConfig", {"score": "reward"}, r"'score' expects one of"),
        ("vla_razor.sft.bc", "SFTConfig", {"lr_schedule": "linear"}, r"'lr_schedule' expects one of"),
        ("vla_razor.llm.harness", "LLMFinetuneConfig", {"temperature": 0.0}, r"'temperature' must be > 0"),
        ("vla_razor.llm.pretrain", "LLMPretrainConfig", {"exposure_fraction": 1.0}, r"must be >= 0 and < 1"),
        ("vla_razor.divergence.penalty", "KLPenaltyConfig", {"critical_samples": 1}, r"must be >= 2"),
    ],
)
def test_a_config_built_in_python_gets_the_checks_of_a_config_file(module, cls, kwargs, message):
    import importlib

    with pytest.raises(ConfigError, match=message):
        getattr(importlib.import_module(module), cls)(**kwargs)
