"""SAM inside training frameworks: Lightning and Hugging Face ``transformers``.

Each submodule imports its framework at the top, so it is importable only where that framework
is installed (``pip install sam_course[integrations]``); ``import sam_course`` never loads them.

* :mod:`~sam_course.integrations.lightning`: :class:`~sam_course.integrations.lightning.SAMMixin`
  for a ``LightningModule`` (automatic and manual optimization).
* :mod:`~sam_course.integrations.transformers`: :class:`~sam_course.integrations.transformers.SAMTrainer`,
  a ``transformers.Trainer`` that takes SAM steps.
"""
