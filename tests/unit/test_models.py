"""The models package's public names: what `from models import *` hands a caller."""

from __future__ import annotations

from typing import Any

from models import Base


def test_models_star_import_exports_exactly_the_model_classes() -> None:
    namespace: dict[str, Any] = {}
    exec("from models import *", namespace)  # a name in __all__ that does not exist raises here
    exported = {name: value for name, value in namespace.items() if name != "__builtins__"}

    mapped = {mapper.class_.__name__: mapper.class_ for mapper in Base.registry.mappers}
    assert {name: exported.get(name) for name in mapped} == mapped
    # Besides the tables: the declarative base and the column type the migrations build on.
    assert set(exported) - set(mapped) == {"Base", "UTCDateTime"}
