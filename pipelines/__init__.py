"""lakeport's Dagster integration: thin definitions over `connectors/`.

For any Dagster project:

- `build_definitions(config)`: everything for a `lakeport.yaml` (assets with their checks,
  the `<asset>_ingest` jobs, schedules or automation conditions, sensors, upkeep);
- `lakeport_assets(resource, translator=...)`: only the stream assets, with a
  `LakeportTranslator` subclass to change keys, groups, tags, metadata or automation;
- `LakeportComponent`: the same as a Dagster Component (`defs.yaml` pointing at a
  `lakeport.yaml`), for `dg` projects;
- `LakeportResource`: the configuration file, with secrets from the environment or `EnvVar`s.

`pipelines.code_location` is this repository's own code location, built with
`build_definitions`.
"""

from pipelines.assets import BackfillConfig, lakeport_assets
from pipelines.component import LakeportComponent
from pipelines.definitions import build_definitions
from pipelines.resources import LakeportResource
from pipelines.translator import LakeportStreamProps, LakeportTranslator

__all__ = [
    "BackfillConfig",
    "LakeportComponent",
    "LakeportResource",
    "LakeportStreamProps",
    "LakeportTranslator",
    "build_definitions",
    "lakeport_assets",
]
