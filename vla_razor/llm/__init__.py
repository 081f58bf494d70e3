"""The LLM track: arithmetic tasks, a character tokenizer, a small Llama, and GRPO and SFT on it through the
same harness and divergence core as the robot track."""
