"""The LLM track: arithmetic tasks, a character tokenizer, and (to come) token-policy RL/SFT through the same divergence core."""
