"""Registry of demo-replica writers: one per dataset key."""

from ...utils.registry import Registry

__all__ = ["DEMO_WRITER_REGISTRY"]

DEMO_WRITER_REGISTRY = Registry("FX_DEMO_WRITER")
DEMO_WRITER_REGISTRY.__doc__ = """
Dataset key -> ``writer(out_dir, rng)`` that writes ``<out_dir>/<key>/`` in the original download
layout (``rng``: a numpy Generator); registered with ``@DEMO_WRITER_REGISTRY.register(key)``.
"""
