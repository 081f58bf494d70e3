"""Environment backends (installed as ``vla_razor.envs``)."""
