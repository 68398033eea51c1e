"""lakeport's Dagster code location: thin definitions over `connectors/`.

`dagster dev -w workspace.yaml` loads `defs` from here, built from `lakeport.yaml`
(or the file named by `LAKEPORT_CONFIG`).
"""

from pipelines.definitions import build_definitions

defs = build_definitions()
