"""Type data: the types, item_groups and categories tables (types import, types fetch)."""
