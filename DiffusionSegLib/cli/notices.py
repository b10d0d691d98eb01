"""Third-party notices that ask nothing of a DiffusionSeg user, kept off the terminal and logs.

diffusers logs, at every model load, that `accelerate` would load faster (with a markdown code
fence around `pip install accelerate`): once per component, so twice per model, on every job.
DiffusionSeg loads safetensors files whole and does not use accelerate, so the advice has no
effect here. Only the notices listed below are dropped; every other warning still comes through.
"""

from __future__ import annotations

import logging

# (logger name, text the notice contains): each logger is the module that logs the notice
NOTICES = (
    ("diffusers.models.modeling_utils", "`accelerate` was not found"),
    ("diffusers.pipelines.pipeline_utils", "`accelerate` was not found"),
)


class _DropNotices(logging.Filter):
    def __init__(self, texts: tuple[str, ...]):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def silence_notices() -> None:
    """Install the filters (before the libraries are imported: logging.getLogger returns the very
    logger the library will use). Calling it again adds nothing."""
    texts: dict[str, tuple[str, ...]] = {}
    for name, text in NOTICES:
        texts[name] = texts.get(name, ()) + (text,)
    for name, wanted in texts.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(wanted))
