"""Reading type data files (pure: text in, rows out) for `types import`.

Four shapes, told apart by their first line and their names:

- CCP's static data export as JSON Lines: types.jsonl, groups.jsonl and
  categories.jsonl, one object a line with the ID in `_key`, `groupID` or
  `categoryID`, and `name` as {"en": ...};
- the same export as YAML: types.yaml, groups.yaml, categories.yaml (or the
  older typeIDs.yaml, groupIDs.yaml, categoryIDs.yaml), a mapping by ID;
- Fuzzwork's CSV conversion: invTypes.csv, invGroups.csv, invCategories.csv;
- a plain `type_id,group_id,category_id,category_name` CSV, as in
  shared/realdata/types.csv (no type or group names: those stay unknown).

Only the ID, name, group and category are read. A whole set of files is read
and checked before anything is written; a bad line stops the import with the
file and line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

from bulk.jsontext import shallow_recursion

_MAX_ID = 2**31 - 1
_MAX_NAME = 1000  # longer than any real name: a longer one is a broken file


class TypeFileError(ValueError):
    """A line that cannot be imported; str() is 'line N: reason'."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line


@dataclass
class TypeData:
    """What the files say: name None where a file gives no name (the plain CSV)."""

    categories: dict[int, str | None] = field(default_factory=dict)
    groups: dict[int, tuple[str | None, int]] = field(default_factory=dict)
    types: dict[int, tuple[str | None, int]] = field(default_factory=dict)

    def merge(self, other: TypeData) -> None:
        # A name beats no name: types.csv after invTypes.csv keeps invTypes' names.
        for mine, theirs in (
            (self.categories, other.categories),
            (self.groups, other.groups),
            (self.types, other.types),
        ):
            for key, value in theirs.items():
                old = mine.get(key)
                if isinstance(value, tuple):
                    name = value[0] if value[0] is not None else (old[0] if old else None)
                    mine[key] = (name, value[1])
                else:
                    mine[key] = value if value is not None else old


# The kinds a file can hold, and how each shape names them.
KINDS = ("types", "groups", "categories")
_YAML_NAMES = {
    "types": "types",
    "typeids": "types",
    "groups": "groups",
    "groupids": "groups",
    "categories": "categories",
    "categoryids": "categories",
}
_SHAPES = "an SDE types/groups/categories .jsonl or .yaml file, Fuzzwork's invTypes/invGroups/invCategories.csv, or a type_id,group_id,category_id,category_name CSV"  # noqa: E501


def parse(name: str, text: str) -> TypeData:
    """The rows of one file; `name` is the file's name (it tells YAML kinds apart)."""
    stem = PurePath(name).name.lower()
    for suffix in (".jsonl", ".yaml", ".yml", ".csv", ".json"):
        if stem.endswith(suffix):
            stem, ext = stem[: -len(suffix)], suffix
            break
    else:
        ext = ""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if ext in (".jsonl", ".json") or first.lstrip().startswith("{"):
        return _jsonl(text)
    if ext in (".yaml", ".yml"):
        kind = _YAML_NAMES.get(stem)
        if kind is None:
            raise TypeFileError(1, f"a YAML file named {stem}{ext}: expected {_SHAPES}")
        return _yaml(text, kind)
    return _csv(text)


# -- CCP's SDE, JSON Lines ---------------------------------------------------------------


def _jsonl(text: str) -> TypeData:
    data = TypeData()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            with shallow_recursion():
                doc = json.loads(line)
        except RecursionError:
            raise TypeFileError(number, "not JSON (nested too deep)") from None
        except ValueError as exc:
            raise TypeFileError(number, f"not JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(doc, dict):
            raise TypeFileError(number, f"expected a JSON object a line, found {_what(doc)}")
        key = _id(doc.get("_key"), "_key", number)
        _add(data, key, doc, number)
    return data


def _add(data: TypeData, key: int, doc: dict, number: int) -> None:
    """One SDE record: a type has groupID, a group categoryID, a category neither."""
    name = _sde_name(doc.get("name"), number)
    if "groupID" in doc:
        data.types[key] = (name, _id(doc["groupID"], "groupID", number))
    elif "categoryID" in doc:
        data.groups[key] = (name, _id(doc["categoryID"], "categoryID", number))
    elif name is not None:
        data.categories[key] = name
    else:
        raise TypeFileError(number, "neither groupID (a type), categoryID (a group) nor a name")


def _sde_name(value, number: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("en")
        if value is None:
            raise TypeFileError(number, "name has no 'en' text")
    if not isinstance(value, str):
        raise TypeFileError(number, f"name is {_what(value)}, not text")
    return _name(value, "name", number)


# -- CCP's SDE, YAML ---------------------------------------------------------------------


def _yaml(text: str, kind: str) -> TypeData:
    """A mapping by ID. Read an entry at a time (an entry starts at column 0), so a
    bad entry is named by its line and a 100 MB file is never one YAML tree."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = TypeData()
    for number, chunk in _yaml_entries(text):
        try:
            doc = yaml.load(chunk, Loader=loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            # A mark past the entry's end (an unclosed bracket) names its last line.
            line = number + min(mark.line if mark is not None else 0, chunk.count("\n"))
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise TypeFileError(line, f"not YAML ({reason})") from None
        if not isinstance(doc, dict) or len(doc) != 1:
            raise TypeFileError(number, f"expected 'ID:' and the {kind[:-1]}'s fields")
        ((key, fields),) = doc.items()
        key = _id(key, "the ID", number)
        if not isinstance(fields, dict):
            raise TypeFileError(number, f"{key}: expected its fields, found {_what(fields)}")
        name = _sde_name(fields.get("name"), number)
        if kind == "types":
            data.types[key] = (name, _id(fields.get("groupID"), "groupID", number))
        elif kind == "groups":
            data.groups[key] = (name, _id(fields.get("categoryID"), "categoryID", number))
        else:
            if name is None:
                raise TypeFileError(number, f"category {key} has no name")
            data.categories[key] = name
    return data


def _yaml_entries(text: str) -> Iterator[tuple[int, str]]:
    start, lines = None, []
    for number, line in enumerate(text.splitlines(), start=1):
        top = line[:1] not in ("", " ", "\t", "#") and not line.startswith("---")
        if top and lines:
            yield start, "\n".join(lines)
            lines = []
        if top or lines:
            if not lines:
                start = number
            lines.append(line)
    if lines:
        yield start, "\n".join(lines)


# -- CSV: Fuzzwork's conversion, or the plain four columns -------------------------------

_CSV_SHAPES = {
    # header columns that tell the shape -> (kind, id column, name column, parent column)
    "invTypes": ("types", "typeID", "typeName", "groupID"),
    "invGroups": ("groups", "groupID", "groupName", "categoryID"),
    "invCategories": ("categories", "categoryID", "categoryName", None),
}


def _csv(text: str) -> TypeData:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    columns = set(header)
    data = TypeData()
    if {"type_id", "group_id", "category_id"} <= columns:
        for row in reader:
            number = reader.line_num
            type_id = _id(row.get("type_id"), "type_id", number)
            group_id = _id(row.get("group_id"), "group_id", number)
            category_id = _id(row.get("category_id"), "category_id", number)
            data.types[type_id] = (_optional_name(row.get("type_name"), number), group_id)
            data.groups[group_id] = (_optional_name(row.get("group_name"), number), category_id)
            category = _optional_name(row.get("category_name"), number)
            if category is not None or category_id not in data.categories:
                data.categories[category_id] = category
        return data
    for kind, id_column, name_column, parent in _CSV_SHAPES.values():
        needed = {id_column, name_column} | ({parent} if parent else set())
        if not needed <= columns or (kind == "categories" and "groupID" in columns):
            continue
        if kind == "groups" and "typeID" in columns:
            continue
        for row in reader:
            number = reader.line_num
            key = _id(row.get(id_column), id_column, number)
            name = _name(row.get(name_column), name_column, number)
            if parent is None:
                data.categories[key] = name
            else:
                target = data.types if kind == "types" else data.groups
                target[key] = (name, _id(row.get(parent), parent, number))
        return data
    found = f"the first line is {','.join(header)[:120]!r}" if header else "the file is empty"
    raise TypeFileError(1, f"expected {_SHAPES}; {found}")


# -- values ------------------------------------------------------------------------------


def _id(value, what: str, number: int) -> int:
    if isinstance(value, bool):
        raise TypeFileError(number, f"{what} {value!r} is not a whole number")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise TypeFileError(number, f"{what} {_shown(value)} is not a positive whole number")
        value = int(text) if len(text) <= 10 else _MAX_ID + 1
    if not isinstance(value, int):
        raise TypeFileError(number, f"{what} is {_what(value)}, not a whole number")
    if not 0 <= value <= _MAX_ID:
        raise TypeFileError(number, f"{what} {value} is out of range (0 to {_MAX_ID})")
    return value


def _name(value, what: str, number: int) -> str:
    if value is None or not str(value).strip():
        raise TypeFileError(number, f"{what} is empty")
    text = str(value)
    if "\x00" in text:
        raise TypeFileError(number, f"{what} holds a NUL byte")
    if len(text) > _MAX_NAME:
        raise TypeFileError(number, f"{what} is {len(text):,} characters long")
    return text.strip()


def _optional_name(value, number: int) -> str | None:
    if value is None or not str(value).strip() or str(value).strip() == "None":
        return None
    return _name(value, "name", number)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _what(value) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), "a number")
