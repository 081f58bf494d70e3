"""LeRobot pi0 (a LeRobot family: LeRobot's own files, loaded from a local directory)."""

from .configuration_lerobot_pi0 import LeRobotPI0ChainConfig

__all__ = ["LeRobotPI0ChainConfig"]
