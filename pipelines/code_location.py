"""This repository's Dagster code location: the streams of `lakeport.yaml`.

The file is `$LAKEPORT_CONFIG` or `lakeport.yaml` in the working directory; `workspace.yaml`
loads this module.
"""

from pipelines.definitions import build_definitions

defs = build_definitions()
