"""Supervised fine-tuning (behaviour cloning) on demonstrations or on an RL policy's successful rollouts."""
