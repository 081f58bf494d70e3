"""Policy families behind one interface (installed as ``vla_razor.policies``)."""
