"""What LeRobot's policies share behind vla-razor's :class:`~vla_razor.policies.ChainPolicy` (not a family).

A directory that LeRobot's ``save_pretrained`` wrote (``config.json`` with its ``"type"``,
``model.safetensors``, the processor JSON and statistics) loads through ``ChainPolicy.from_pretrained`` like
any vla-razor policy, or as ``base=lerobot:/path``; every algorithm, metric, evaluation and report then
applies to it unchanged. The families are ordinary ones, one folder each (``policies/lerobot_diffusion``,
``lerobot_pi0``, ``lerobot_pi05``, ``lerobot_smolvla``), registered with the LeRobot ``type`` they load; this
package holds their common code: :mod:`.common` (observations, the action normaliser, LeRobot-format saving
and verified loading) and :mod:`.flow_chain` (the Flow-SDE chain around pi0's, pi0.5's and SmolVLA's own
denoising step).

LeRobot itself lives in ``.venv-lerobot`` (Python 3.12): these modules import it only when a LeRobot policy is
loaded, and name the environment to use when it is missing.
"""
