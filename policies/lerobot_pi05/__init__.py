"""LeRobot pi0.5 (a LeRobot family: LeRobot's own files, loaded from a local directory)."""

from .configuration_lerobot_pi05 import LeRobotPI05ChainConfig

__all__ = ["LeRobotPI05ChainConfig"]
