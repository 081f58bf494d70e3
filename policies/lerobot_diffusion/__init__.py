"""LeRobot DiffusionPolicy (a LeRobot family: LeRobot's own files, loaded from a local directory)."""

from .configuration_lerobot_diffusion import LeRobotDiffusionChainConfig

__all__ = ["LeRobotDiffusionChainConfig"]
