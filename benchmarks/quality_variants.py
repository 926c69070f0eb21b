"""Method variants the quality benchmark measures beside the library's recipes: each a `Recipe` subclass with
other defaults, named in a run config by its import path (``quality_variants:<class name>``), so the library's
registry of methods is never changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hf_ddb.recipes import DDB_II_WEIGHTINGS, DDBI, DDBII, GroupDROOracle, Recipe


def _variant(base: type[Recipe], name: str, display_name: str, **defaults: object) -> type[Recipe]:
    """``base`` with other defaults, under the method name ``name``."""
    fields = {field.name: field.type for field in dataclasses.fields(base) if field.name in defaults}
    namespace = {"__annotations__": fields, **defaults, "name": name, "display_name": display_name}
    namespace["__doc__"] = f"{base.__name__} with {defaults}."
    return dataclass(type(f"{base.__name__}_{name}", (base,), namespace))


# Method variants measured beside the library's recipes.
VARIANTS = {
    cls.name: cls
    for cls in (
        # DDB-I over (class, flagged) pseudo groups, with the same balanced batches and tuning
        _variant(DDBI, "ddb_i_flag", "DDB-I, (class, flagged) groups", groups="flag"),
        # DDB-I as it was before the inferred-bias groups: (class, flagged), uniform batches, step 0.01, C = 0
        _variant(
            DDBI,
            "ddb_i_flag_uniform",
            "DDB-I, (class, flagged) groups, uniform batches, untuned",
            groups="flag",
            group_balanced=False,
            adjustments=(0.0,),
        ),
        # the oracle as it was before group-balanced batches and tuning (uniform batches, step 0.01, C = 0)
        _variant(
            GroupDROOracle,
            "groupdro_oracle_uniform",
            "GroupDRO (oracle, uniform batches)",
            step_sizes=(0.01,),
            adjustments=(0.0,),
            group_balanced=False,
        ),
        # the oracle at the setting its tuning chose at 1% in all three seeds (one training instead of four)
        _variant(
            GroupDROOracle,
            "groupdro_oracle_tuned",
            "GroupDRO (oracle, step 0.01, C = 4)",
            step_sizes=(0.01,),
            adjustments=(4.0,),
        ),
        # DDB-II's weightings: LfF's ratio as published and its normalisations, cell balancing, confidence
        *(
            _variant(DDBII, f"ddb_ii_{weighting}", f"DDB-II ({weighting})", weighting=weighting)
            for weighting in DDB_II_WEIGHTINGS
        ),
    )
}
globals().update({cls.__name__: cls for cls in VARIANTS.values()})  # importable as quality_variants:<class>


def method_entry(method: str) -> str:
    """How a run config names ``method``: a library method by its name, a variant by its import path."""
    return f"{__name__}:{VARIANTS[method].__name__}" if method in VARIANTS else method
