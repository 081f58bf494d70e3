"""The commands of the `vla-razor` executable: each parses nothing, takes the argparse namespace of
:mod:`vla_razor.cli`, loads its config and calls the library with typed arguments."""
