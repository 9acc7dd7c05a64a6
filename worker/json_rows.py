"""Many rows in one statement parameter: a JSON array of rows (dumped in C: json or orjson) that
the database unpacks itself (`jsonb_array_elements` on PostgreSQL, `json_each` on SQLite). The
statement has the same few parameters whatever the number of rows, so it is compiled and
prepared once; per-value parameters cost psycopg a Python loop over every value and SQLAlchemy
its processing of each, several times the database's own work on the rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import String, Table, Text, bindparam, func, literal_column, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite


def insert_rows(
    dialect: str, table: Table, columns: Sequence[str], extra: Mapping[str, Any]
) -> Any:
    """The dialect's `INSERT INTO table (columns, extra's columns) SELECT ...` (for its conflict
    clause to be added) over the rows of the `rows` parameter, each a JSON array of `columns`'
    values in order. `extra`: each further column's value, an expression (a parameter the
    whole statement shares) or a function of the row (see `field`)."""
    rows = bindparam("rows", type_=Text)
    if dialect == "postgresql":
        # jsonb: each row parsed once, not once per field read from it (a third faster).
        elements = func.jsonb_array_elements(sql_cast(rows, postgresql.JSONB)).table_valued("value")
        insert: Any = postgresql.insert
    else:
        elements = func.json_each(rows).table_valued("value")
        insert = sqlite.insert
    row = elements.c.value
    values = [field(row, i, table.c[name].type) for i, name in enumerate(columns)]
    values += [value(row) if callable(value) else value for value in extra.values()]
    # SQLite reads `ON CONFLICT` after a bare `SELECT ... FROM` as a join's: the WHERE ends it.
    selected = select(*values).select_from(elements).where(true())
    return insert(table).from_select([*columns, *extra], selected)


def field(row: Any, index: int, type_: Any) -> Any:
    """Item `index` of a row (a JSON array) as the column's type; text stays text, so a value
    too long for its column fails the INSERT instead of being cut by a cast."""
    value = row.op("->>")(literal_column(str(index)))
    return value if isinstance(type_, String) else sql_cast(value, type_)
