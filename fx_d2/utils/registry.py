"""The one registry type of fx_d2: fvcore's ``Registry`` with explicit names and clear errors.

Every pluggable part of fx_d2 (classification heads, localization and segmentation decoders,
dataset sources, demo writers, weight formats, trainers) is found by name in one of these.
Register with a decorator, under the object's ``__name__`` or an explicit name::

    LOC_DECODER_REGISTRY = Registry("FX_LOC_DECODER")

    @LOC_DECODER_REGISTRY.register("rcnn")
    class RCNNLocalizationDecoder: ...

    LOC_DECODER_REGISTRY.get("rcnn")
"""

from typing import Any, Callable, List, Optional

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = ["Registry"]


class Registry(_FvcoreRegistry):
    """Name -> object mapping (fvcore's, so Detectron2 tooling prints it the same way).

    Additions: ``register("name")`` / ``register(obj, name=...)`` register under an explicit name
    (objects without ``__name__``, e.g. dataset specs, need one); ``names()`` lists the names in
    registration order; ``get`` of an unknown name lists the known ones; ``remove`` (tests).
    """

    def register(self, obj: Any = None, *, name: Optional[str] = None) -> Any:
        """Register ``obj`` (returned) or, without ``obj`` or with a str, return a decorator.

        Args:
            obj: the object, or its name when used as ``@REG.register("name")``.
            name: explicit name (default ``obj.__name__``).

        Raises:
            AssertionError: the name is taken (fvcore's behaviour).
        """
        if isinstance(obj, str):
            obj, name = None, obj
        if obj is None:

            def decorator(target: Any) -> Any:
                self._do_register(name or target.__name__, target)
                return target

            return decorator
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name: str) -> Any:
        """The object registered as ``name``.

        Raises:
            KeyError: unknown name; the message lists the registered ones.
        """
        if name not in self._obj_map:
            raise KeyError(
                f"{name!r} is not in the {self._name} registry; registered: {self.names()} "
                "(a part defined in your own module is registered when that module is imported)"
            )
        return self._obj_map[name]

    def names(self) -> List[str]:
        """Registered names, in registration order."""
        return list(self._obj_map)

    def remove(self, name: str) -> Any:
        """Unregister ``name`` and return its object (tests register temporary parts)."""
        return self._obj_map.pop(name)

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``get(name)(*args, **kwargs)``: e.g. ``REG.build(cfg.X.NAME, cfg, shape)``."""
        factory: Callable[..., Any] = self.get(name)
        return factory(*args, **kwargs)
