"""Which heads of a FoundationX did the loaded weights train?

A (dataset, task) pair is trained when every tensor it depends on came from the checkpoint: the
backbone trunk, the per-level norms of the levels the task reads (``MODEL.FX.CLS_IN_FEATURES``,
``MODEL.FX.LOC_DECODER.IN_FEATURES``; the final ``norm`` for classification on ``res5``), the
task's shared modules (e.g. ``loc_encoder``, ``seg_decoder``) and the dataset's own head (e.g.
``cls_heads.<key>``). Anything missing, mis-shaped or left unloaded means the pair would predict
with random weights.
"""

from typing import Any, Dict, Iterable, List, Mapping

__all__ = ["untrained_heads"]

_LEVELS = ("res2", "res3", "res4", "res5")


def _problem_names(report: Mapping[str, Any]) -> List[str]:
    names = list(report.get("missing", ()))
    names += [m[0] for m in report.get("shape_mismatch", ())]
    names += [f"{prefix}." for prefix in report.get("not_loaded", {})]  # all-or-nothing modules
    return names


def _first(names: Iterable[str], prefixes: Iterable[str]) -> str:
    prefixes = tuple(prefixes)
    for name in names:
        if name.startswith(prefixes):
            return name
    return ""


def untrained_heads(model, report: Mapping[str, Any], cfg) -> Dict[str, Dict[str, str]]:
    """``{dataset key: {task: reason}}`` for the pairs the weights did not train.

    Args:
        model: the FoundationX the weights were loaded into.
        report: :func:`fx_d2.checkpoint.model_weights.load_foundation_x_weights`'s report.
        cfg: the model's config (the levels each task reads).
    """
    problems = _problem_names(report)
    trunk = [n for n in problems if n.startswith("backbone.") and not n.startswith("backbone.norm")]
    level_norms = {
        "cls": ["backbone.norm." if f == "res5" else f"backbone.norm{_LEVELS.index(f)}."
                for f in cfg.MODEL.FX.CLS_IN_FEATURES],
        "loc": [f"backbone.norm{_LEVELS.index(f)}." for f in cfg.MODEL.FX.LOC_DECODER.IN_FEATURES
                if f in _LEVELS],
    }  # fmt: skip
    result: Dict[str, Dict[str, str]] = {}
    for key, spec in model.datasets.items():
        for task in spec.tasks:
            branch = model.branches[task]
            own = [n for n in branch.module_names if n not in branch.shared_names]
            needed = {
                "the backbone": ["backbone."] if trunk else [],
                "the per-level norms": level_norms.get(task, []),
                "the shared modules": [f"{n}." for n in branch.shared_names],
                "its own head": [f"{n}.{key}." for n in own],
            }
            for what, prefixes in needed.items():
                found = _first(trunk if what == "the backbone" else problems, prefixes)
                if found:
                    result.setdefault(key, {})[
                        task
                    ] = f"{what} not in the weights (e.g. {found.rstrip('.')})"
                    break
    return result
