"""lakeport's Dagster integration: thin definitions over `connectors/`.

`build_definitions(config_path)` turns a `lakeport.yaml` into assets, checks, schedules,
sensors and upkeep jobs; `pipelines.code_location` is this repository's code location built
from it (what `workspace.yaml` and `dagster dev -w workspace.yaml` load).
"""

from pipelines.definitions import build_definitions

__all__ = ["build_definitions"]
