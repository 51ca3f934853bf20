"""TBX11K (tuberculosis), read from the original download.

Layout under ``<root>/tbx11k/``, optionally below ``TBX11K/`` (datasets/README.md, section tbx11k)::

    imgs/{health,sick,tb,test,extra/...}/*.png        8-bit PNG (RGB-stored gray), 512 x 512
    annotations/json/TBX11K_{train,val}.json          COCO; images[].file_name relative to imgs/
    lists/TBX11K_{train,val,test}.txt                 one image per line, relative to imgs/

Splits: ``train`` / ``val`` from the official lists (the images of a split are the list's lines;
boxes come from the split's COCO JSON). The official test labels are withheld (online challenge),
so no ``test`` split is registered; the reference, too, trained on train and evaluated on val.

Classification: ``["Tuberculosis"]`` = 1.0 when the image is in ``tb/`` (as the reference:
the list line starts with ``tb``), else 0.0 (``health/`` and ``sick/`` non-TB images); ``tb1199``
is in ``tb/`` without a box and stays positive.

Localization: category-agnostic, as the reference: ``thing_classes = ["TB"]``; the COCO category
name (``ActiveTuberculosis``, ``ObsoletePulmonaryTuberculosis`` = latent, ``PulmonaryTuberculosis``
= uncertain) is kept in each annotation as ``tb_category``. COCO ``[x, y, w, h]`` -> XYXY_ABS,
clipped. JSON images are matched to list lines by ``file_name`` (relative path, else base name).
Height/width come from the PNG header. ``source_folder`` records health / sick / tb.
"""

import os
from typing import Any, Dict, List, Tuple

from ..problems import ProblemLog
from .base import register_source
from .headers import existing_image_size
from .paths import first_existing, join_inside, require_file
from .records import box_annotation, image_record, present, xywh_to_xyxy
from .tables import read_json, read_lines

KEY = "tbx11k"
TB_CATEGORIES = ("ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis")
BASE_FOLDERS = ("", "TBX11K")


def find_release(root: str) -> str:
    """Folder holding ``imgs/``, ``annotations/`` and ``lists/``.

    Raises:
        FileNotFoundError: no candidate folder has ``lists/``.
    """
    return first_existing(root, BASE_FOLDERS, "lists/ folder", marker="lists")


def _read_coco(path: str, problems: ProblemLog) -> Dict[str, List[Tuple[str, str, list]]]:
    """Image file_name -> [(where, category name, [x, y, w, h])]; base names are keys too."""
    coco = read_json(path, problems)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{path}: expected a COCO object with an 'images' list")
    names = {}
    for n, c in enumerate(_list(coco, "categories", path, problems)):
        with problems.guard(f"{path} category {n}"):
            names[_key(c["id"])] = c.get("name")
    files = {}
    for n, im in enumerate(coco["images"]):
        with problems.guard(f"{path} image {n}"):
            if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
                # its boxes would be lost unsaid
                problems.add("bad_row", f"{path} image {n}", "not an object with a 'file_name'")
                continue
            files[_key(im.get("id"))] = im["file_name"].replace("\\", "/")
    boxes: Dict[str, List[Tuple[str, str, list]]] = {}
    for n, ann in enumerate(_list(coco, "annotations", path, problems)):
        where = f"{path} annotation {n}"
        with problems.guard(where):
            if not isinstance(ann, dict) or _key(ann.get("image_id")) not in files:
                problems.add("bad_row", where, "not an object with a known 'image_id'")
                continue
            name = names.get(_key(ann.get("category_id")))
            if name not in TB_CATEGORIES:
                problems.add(
                    "unknown_class",
                    where,
                    f"category id {ann.get('category_id')!r} ({name!r}); known: {TB_CATEGORIES}",
                )
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                problems.add("bad_row", where, f"bbox {bbox!r} is not [x, y, w, h]")
                continue
            file_name = files[_key(ann["image_id"])]
            entry = (f"{where} ({file_name})", name, bbox)
            boxes.setdefault(file_name, []).append(entry)
            if os.path.basename(file_name) != file_name:
                boxes.setdefault(os.path.basename(file_name), []).append(entry)
    return boxes


def _key(value: Any) -> Any:
    """A COCO id usable as a dict key (an id that is a list or a dict is refused)."""
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise TypeError(f"id {value!r} is not an integer or a string")
    return value


def _list(coco: Dict[str, Any], field: str, path: str, problems: ProblemLog) -> List[Any]:
    """``coco[field]`` when it is a list (absent: empty); anything else is a ``bad_row``."""
    value = coco.get(field, [])
    if isinstance(value, list):
        return value
    problems.add("bad_row", f"{path} {field}", f"{field} is a {type(value).__name__}, not a list")
    return []


def _annotations(
    entries: List[Tuple[str, str, list]], size: Tuple[int, int], problems: ProblemLog
) -> List[Dict[str, Any]]:
    """Category-agnostic annotations of one image's COCO boxes, the category name kept."""
    annotations = []
    for where, name, bbox in entries:
        try:
            xywh = [float(v) for v in bbox]
        except (TypeError, ValueError, OverflowError):
            problems.add("bad_row", where, f"bbox {bbox!r} is not numeric")
            continue
        box = xywh_to_xyxy(xywh)
        annotations.append(box_annotation(box, 0, size, problems, where, tb_category=name))
    return present(annotations)


@register_source(
    KEY,
    splits=("train", "val"),
    tasks=("cls", "loc"),
    cls_classes=("Tuberculosis",),
    thing_classes=("TB",),
    tb_categories=list(TB_CATEGORIES),
)
def load_tbx11k(root: str, split: str, problems: ProblemLog) -> List[Dict[str, Any]]:
    """Read one split of TBX11K (see the module docstring for layout and rules)."""
    base = find_release(root)
    list_path = require_file(os.path.join(base, "lists", f"TBX11K_{split}.txt"))
    json_path = require_file(os.path.join(base, "annotations", "json", f"TBX11K_{split}.json"))
    boxes = _read_coco(json_path, problems)
    imgs = os.path.join(base, "imgs")

    dicts = []
    for n, line in read_lines(list_path):
        rel = line.split()[0].replace("\\", "/")
        where = f"{list_path}:{n}"
        with problems.guard(where):
            path = join_inside(imgs, rel, problems, where)
            size = None if path is None else existing_image_size(path, problems, where)
            if size is None:
                continue
            entries = boxes.get(rel, boxes.get(os.path.basename(rel), []))
            record = image_record(
                KEY,
                path,
                size,
                os.path.splitext(rel)[0],
                cls_labels=[1.0 if rel.startswith("tb") else 0.0],
                annotations=_annotations(entries, size, problems),
                source_folder=rel.split("/", 1)[0] if "/" in rel else "",
            )
            dicts.append(record)
    return dicts
