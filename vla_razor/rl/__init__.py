"""Reinforcement learning for chain policies: PPO (with a critic) and GRPO (group-normalised, no critic)."""
