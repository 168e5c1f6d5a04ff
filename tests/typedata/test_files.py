"""types import's readers, on small files written from each format's documentation.

CCP's SDE (developers.eveonline.com, Static Data): JSON Lines with integer keys
as `_key` and names as {"en": ...}; YAML as a mapping by ID. Fuzzwork's CSV
conversion: invTypes.csv (typeID, groupID, typeName, ...), invGroups.csv
(groupID, categoryID, groupName, ...), invCategories.csv (categoryID,
categoryName, ...), with None for empty cells. The IDs and names are EVE's own.
"""

import json

import pytest

from bulk.typedata import files

TYPES_JSONL = "\n".join(
    json.dumps(row)
    for row in [
        {
            "_key": 670,
            "groupID": 29,
            "mass": 32000.0,
            "name": {"de": "Kapsel", "en": "Capsule"},
            "portionSize": 1,
            "published": True,
            "volume": 500.0,
        },
        {
            "_key": 34,
            "basePrice": 2.0,
            "groupID": 18,
            "name": {"en": "Tritanium", "fr": "Tritanium"},
            "published": True,
        },
    ]
)
GROUPS_JSONL = "\n".join(
    json.dumps(row)
    for row in [
        {
            "_key": 29,
            "anchorable": False,
            "categoryID": 6,
            "name": {"en": "Capsule"},
            "published": True,
        },
        {"_key": 18, "categoryID": 4, "name": {"en": "Mineral"}, "published": True},
    ]
)
CATEGORIES_JSONL = "\n".join(
    json.dumps(row)
    for row in [
        {"_key": 6, "name": {"en": "Ship", "ja": "艦船"}, "published": True},
        {"_key": 4, "name": {"en": "Material"}, "published": True},
    ]
)
TYPES_YAML = """\
34:
    basePrice: 2.0
    groupID: 18
    name:
        de: Tritanium
        en: Tritanium
    portionSize: 1
    published: true
670:
    groupID: 29
    mass: 32000.0
    name:
        en: Capsule
"""
GROUPS_YAML = """\
18:
    categoryID: 4
    name:
        en: Mineral
29:
    categoryID: 6
    name:
        en: Capsule
"""
CATEGORIES_YAML = """\
4:
    name:
        en: Material
    published: true
6:
    name:
        en: Ship
"""
INV_TYPES = (
    "typeID,groupID,typeName,description,mass,volume,capacity,portionSize,raceID,basePrice,"
    "published,marketGroupID,iconID,soundID,graphicID\n"
    '34,18,Tritanium,"The main building block\nin space structures.",0,0.01,0,1,None,2.0000,1,'
    "1857,22,None,None\n"
    '670,29,Capsule,"A capsule, ""pod"".",32000,500,0,1,None,0.0000,1,None,73,None,1\n'
)
INV_GROUPS = (
    "groupID,categoryID,groupName,iconID,useBasePrice,anchored,anchorable,"
    "fittableNonSingleton,published\n18,4,Mineral,22,1,0,0,0,1\n29,6,Capsule,None,0,0,0,0,1\n"
)
INV_CATEGORIES = "categoryID,categoryName,iconID,published\n4,Material,22,1\n6,Ship,None,1\n"
PLAIN = "type_id,group_id,category_id,category_name\n34,18,4,Material\n670,29,6,Ship\n"

EXPECTED_TYPES = {34: ("Tritanium", 18), 670: ("Capsule", 29)}
EXPECTED_GROUPS = {18: ("Mineral", 4), 29: ("Capsule", 6)}
EXPECTED_CATEGORIES = {4: "Material", 6: "Ship"}


def _read(pairs) -> files.TypeData:
    data = files.TypeData()
    for name, text in pairs:
        data.merge(files.parse(name, text))
    return data


@pytest.mark.parametrize(
    "pairs",
    [
        [
            ("types.jsonl", TYPES_JSONL),
            ("groups.jsonl", GROUPS_JSONL),
            ("categories.jsonl", CATEGORIES_JSONL),
        ],
        [
            ("types.yaml", TYPES_YAML),
            ("groups.yaml", GROUPS_YAML),
            ("categories.yaml", CATEGORIES_YAML),
        ],
        [
            ("typeIDs.yaml", TYPES_YAML),
            ("groupIDs.yaml", GROUPS_YAML),
            ("categoryIDs.yaml", CATEGORIES_YAML),
        ],
        [
            ("invTypes.csv", INV_TYPES),
            ("invGroups.csv", INV_GROUPS),
            ("invCategories.csv", INV_CATEGORIES),
        ],
    ],
    ids=["sde-jsonl", "sde-yaml", "old-sde-yaml", "fuzzwork-csv"],
)
def test_each_shape_gives_ids_names_groups_and_categories(pairs):
    data = _read(pairs)
    assert data.types == EXPECTED_TYPES
    assert data.groups == EXPECTED_GROUPS
    assert data.categories == EXPECTED_CATEGORIES


def test_the_plain_csv_names_only_categories_and_a_later_file_names_the_rest():
    plain = files.parse("types.csv", PLAIN)
    assert plain.types == {34: (None, 18), 670: (None, 29)}
    assert plain.groups == {18: (None, 4), 29: (None, 6)}
    assert plain.categories == EXPECTED_CATEGORIES
    # Named files before or after the plain one: names win over no name.
    for order in (
        [("invTypes.csv", INV_TYPES), ("types.csv", PLAIN)],
        [("types.csv", PLAIN), ("invTypes.csv", INV_TYPES)],
    ):
        assert _read(order).types == EXPECTED_TYPES


@pytest.mark.parametrize(
    "name,text,line,reason",
    [
        ("types.jsonl", TYPES_JSONL + '\n{"_key": 35, "groupID": "x"}', 3, "groupID 'x' is not"),
        ("types.jsonl", TYPES_JSONL + "\n[1, 2]", 3, "expected a JSON object a line, found a list"),
        ("types.jsonl", TYPES_JSONL + "\n{not json", 3, "not JSON"),
        ("types.jsonl", "[" * 5000 + "]" * 5000, 1, "not JSON (nested too deep)"),
        ("types.jsonl", '{"_key": 35, "groupID": 18, "name": {"de": "x"}}', 1, "no 'en' text"),
        ("types.jsonl", '{"_key": 35}', 1, "neither groupID"),
        (
            "groups.jsonl",
            '{"_key": 99999999999, "categoryID": 4, "name": {"en": "x"}}',
            1,
            "out of range",
        ),
        ("types.yaml", TYPES_YAML + "35:\n    groupID: [1\n", 15, "not YAML"),
        (
            "groups.yaml",
            GROUPS_YAML + "30:\n    name:\n        en: No category\n",
            9,
            "categoryID is null",
        ),
        ("blueprints.yaml", "1: {}\n", 1, "a YAML file named blueprints.yaml"),
        (
            "invTypes.csv",
            INV_TYPES + "35,,Pyerite,,0,0,0,1,None,0,1,None,None,None,None\n",
            5,
            "groupID '' is not",
        ),
        ("invCategories.csv", INV_CATEGORIES + "7,,None,1\n", 4, "categoryName is empty"),
        ("types.csv", PLAIN + "36,18,-4,Material\n", 4, "category_id '-4' is not"),
        ("other.csv", "id,price\n1,2\n", 1, "expected an SDE"),
    ],
)
def test_a_bad_line_is_named_with_its_number(name, text, line, reason):
    with pytest.raises(files.TypeFileError) as caught:
        files.parse(name, text)
    assert caught.value.line == line, str(caught.value)
    assert reason in str(caught.value)
