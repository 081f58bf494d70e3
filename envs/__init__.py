"""Environment backends (installed as ``vla_razor.envs``): vectorized ManiSkill3 task suites.

The public entry points: :func:`make_vec_env`, the task registry (:data:`TASKS`, :func:`get_task`),
suites (:func:`load_suite`) and the canonical observation layout (:mod:`.observations`).
"""

from .registry import TASKS, TaskSpec, UnknownTaskError, get_task
from .suites import Suite, load_suite
from .vector import make_vec_env, resolve_tasks
from .vulkan import VulkanUnavailableError

__all__ = [
    "TASKS",
    "Suite",
    "TaskSpec",
    "UnknownTaskError",
    "VulkanUnavailableError",
    "get_task",
    "load_suite",
    "make_vec_env",
    "resolve_tasks",
]
