"""The worker process: owns one AccountGroup and serves commands from the engine over a pipe.

Messages are tuples; strategies and checkpoints travel as cloudpickle bytes, so a strategy class
defined in the user's ``__main__`` reaches the worker by value. A worker ignores Ctrl-C (the
engine shuts it down cleanly) and exits when its pipe closes, so it never outlives the engine.
"""

from __future__ import annotations

import logging
import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from velocitas.engine.accounts import AccountGroup
from velocitas.engine.fills import ExecutionConfig

logger = logging.getLogger(__name__)


def serve(conn: Connection, config: ExecutionConfig) -> None:
    """Worker entry point: answer commands until ``stop`` or a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    group = AccountGroup(config, keep_fill_logs=False)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        try:
            reply, group = _handle(kind, message, group)
        except Exception as e:  # a bug here must reach the engine, not kill the worker silently
            logger.exception("worker command %s failed", kind)
            reply = ("error", f"{type(e).__name__}: {e}")
        conn.send(reply)
        if kind == "stop":
            return


def _handle(kind: str, message: tuple[Any, ...], group: AccountGroup) -> tuple[Any, AccountGroup]:
    if kind == "batch":
        return ("batch", message[1], group.process(message[2])), group
    if kind == "add":
        group.add(message[1], cloudpickle.loads(message[2]))
        return ("ok",), group
    if kind == "remove":
        final = group.snapshot(message[1])
        group.remove(message[1])
        return ("removed", final), group
    if kind == "checkpoint":
        return ("checkpoint", cloudpickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL)), group
    if kind == "restore":
        return ("ok",), cloudpickle.loads(message[1])
    if kind == "ping":
        return ("pong",), group
    if kind == "stop":
        return ("stopped",), group
    raise ValueError(f"unknown worker command {kind!r}")
