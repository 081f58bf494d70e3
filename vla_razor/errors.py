"""The project's named errors and the exit codes the command line maps them to.

Everything a user can cause (a config value, a file handed in, a name) raises a :class:`BadInputError`
whose message names the input, the value, what was expected and the fix; ``vla-razor`` prints it on
one line and exits 2. A run that diverges raises :class:`NonFiniteError` (exit 3); a worker process
that dies or stops answering raises :class:`WorkerError` (exit 4). Anything else is a bug and keeps
its traceback (exit 1).

=====  ==============================================================
code   meaning
=====  ==============================================================
0      success (results written)
1      an internal error (a bug: the traceback is printed)
2      bad input (:class:`BadInputError`: config, checkpoint, demos, run directory, names)
3      the run diverged (:class:`NonFiniteError`: a NaN or inf loss, KL or logit)
4      a worker process died or hung (:class:`WorkerError`)
130    interrupted (Ctrl-C); the last checkpoint is kept and ``--resume`` continues
=====  ==============================================================
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_WORKER = 4
EXIT_INTERRUPTED = 130


class BadInputError(ValueError):
    """Something the user handed in is wrong; the message says what and how to fix it (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A config file or override does not fit its dataclass (a key, a type, a range, NaN or inf)."""


class CheckpointError(BadInputError):
    """A policy, model or training checkpoint is missing, truncated, corrupt, pickled or of the wrong kind."""


class DemoError(BadInputError):
    """A demonstration file is missing, truncated or recorded for another task or control mode."""


class DatasetError(BadInputError):
    """A LeRobot dataset cannot be written or read: LeRobot missing, features that do not map, a target
    that exists."""


class RunDirError(BadInputError):
    """A run directory exists where a new run would go, or a resume would change the run's config."""


class NoRLDataError(BadInputError):
    """The SFT-on-RL-data control found no successful rollout of the RL policy to clone."""


class NonFiniteError(FloatingPointError):
    """A loss, a KL or a logit became NaN or inf: the run stops, its last good checkpoint stays (exit 3)."""

    exit_code = EXIT_DIVERGED


class WorkerError(RuntimeError):
    """A worker process (rollout worker, Ray actor) died or stopped answering (exit 4)."""

    exit_code = EXIT_WORKER


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(directory, what: str) -> None:
    """Raise a :class:`CheckpointError` when ``directory`` holds only pickle files: they are never loaded
    (unpickling runs arbitrary code); the message says how to convert them to safetensors."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not any(directory.glob("*.safetensors")):
        raise CheckpointError(
            f"{directory} holds only pickle files ({', '.join(pickles[:3])}) and no safetensors: vla-razor "
            f"never unpickles a {what} it is handed (it could run arbitrary code). Convert it where you "
            "trust the file: "
            'python -c "import torch, safetensors.torch as st; '
            f"st.save_file(torch.load('{directory}/{pickles[0]}', weights_only=True), "
            f"'{directory}/model.safetensors')\""
        )
