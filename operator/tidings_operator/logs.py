"""The operator's log: one line per change, not one per handler run.

Every watch event runs a kopf handler that only queues a key, and kopf logs each
successful run at INFO ("Handler 'watch-chatregions' succeeded."): about 86 lines a
minute for one idle region. Those lines say nothing happened; they are demoted to
DEBUG. What changed (children created, updated, pruned; phase changes; failures) is
logged by the reconciler itself.
"""

from __future__ import annotations

import logging

KOPF_OBJECT_LOGGER = "kopf.objects"
"""Where kopf logs per-object handler outcomes."""


class HandlerChatter(logging.Filter):
    """Demotes kopf's INFO "... succeeded." lines to DEBUG (kept when DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.getMessage().endswith(" succeeded."):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_handler_chatter() -> None:
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    if not any(isinstance(f, HandlerChatter) for f in logger.filters):
        logger.addFilter(HandlerChatter())
