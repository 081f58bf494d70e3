"""LeRobot SmolVLA (a LeRobot family: LeRobot's own files, loaded from a local directory)."""

from .configuration_lerobot_smolvla import LeRobotSmolVLAChainConfig

__all__ = ["LeRobotSmolVLAChainConfig"]
