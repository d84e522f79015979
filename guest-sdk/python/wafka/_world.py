"""Wires a plugin module's ``init`` and ``handle`` functions to the world's exports.

``build.py`` generates the component's entry module, which does no more than::

    import wafka._world
    import my_plugin
    WitWorld = wafka._world.world_for(my_plugin)

componentize-py then exports ``WitWorld().init``, ``WitWorld().handle`` and
``WitWorld().finish`` (the ``plugin-lifecycle`` world).
"""

import sys

import wit_world
from componentize_py_types import Err

from . import Config, error_message

NOT_INITIALIZED = "plugin is not initialized (init was not called or failed)"


def world_for(module):
    """The ``WitWorld`` class for a plugin module: one that registered a class with
    ``@wafka.plugin``, or one with ``handle(event)`` and, optionally, ``init(config)`` and
    ``finish()`` (called once after the last event)."""
    import wafka

    cls = wafka._registered
    if cls is not None:
        return _class_world(cls)
    init_fn = getattr(module, "init", None)
    handle_fn = getattr(module, "handle", None)
    finish_fn = getattr(module, "finish", None)
    name = getattr(module, "__name__", repr(module))
    if not callable(handle_fn):
        raise TypeError(f"plugin module {name!r} has no function handle(event)")
    if init_fn is not None and not callable(init_fn):
        raise TypeError(f"plugin module {name!r}: init is not a function")
    if finish_fn is not None and not callable(finish_fn):
        raise TypeError(f"plugin module {name!r}: finish is not a function")

    # The host calls the exports one at a time and never re-enters them.
    ready = False

    class WitWorld(wit_world.WitWorld):
        def init(self, config):
            nonlocal ready
            # A failing init leaves no plugin behind.
            ready = False
            if init_fn is not None:
                try:
                    init_fn(Config(config))
                except Exception as e:
                    raise Err(error_message(e)) from None
            ready = True

        def handle(self, event):
            if not ready:
                raise Err(NOT_INITIALIZED)
            try:
                handle_fn(event)
            except Exception as e:
                raise Err(error_message(e)) from None

        def finish(self):
            if not ready or finish_fn is None:
                return
            try:
                finish_fn()
            except Exception as e:
                raise Err(error_message(e)) from None

    return WitWorld


def _class_world(cls):
    """The ``WitWorld`` class for a plugin class registered with ``@wafka.plugin``."""
    # The host calls the exports one at a time and never re-enters them.
    state = None

    class WitWorld(wit_world.WitWorld):
        def init(self, config):
            nonlocal state
            # A failing init leaves no plugin behind.
            state = None
            try:
                state = cls(Config(config))
            except Exception as e:
                raise Err(error_message(e)) from None

        def handle(self, event):
            if state is None:
                raise Err(NOT_INITIALIZED)
            try:
                state.handle(event)
            except Exception as e:
                raise Err(error_message(e)) from None

        def finish(self):
            finish = getattr(state, "finish", None)
            if state is None or not callable(finish):
                return
            try:
                finish()
            except Exception as e:
                raise Err(error_message(e)) from None

    return WitWorld
