"""lakeport as a Dagster Component: a `defs.yaml` that points at a `lakeport.yaml`.

    # defs/lakeport/defs.yaml
    type: pipelines.LakeportComponent
    attributes:
      config_path: lakeport.yaml      # relative to this folder
      streams: [notifications]        # optional: default all streams of the file
      automation: schedule            # or condition (AutomationCondition.on_missing)

`dg list defs` and `dg check defs` then show the streams' assets, checks, jobs, schedules and
sensors. To change asset keys, groups or metadata, subclass the component and override
`get_translator`.
"""

from typing import Literal

from dagster import Component, ComponentLoadContext, Definitions, Model, Resolvable

from pipelines.definitions import build_definitions
from pipelines.resources import LakeportResource
from pipelines.translator import LakeportTranslator


class LakeportComponent(Component, Model, Resolvable):
    """The streams of a `lakeport.yaml` landed in Delta tables, as assets with checks, jobs,
    schedules and sensors."""

    config_path: str = "lakeport.yaml"
    streams: list[str] | None = None
    automation: Literal["schedule", "condition"] = "schedule"

    def get_translator(self) -> LakeportTranslator:
        return LakeportTranslator()

    def build_defs(self, context: ComponentLoadContext) -> Definitions:
        path = (context.path / self.config_path).resolve()
        return build_definitions(
            LakeportResource(config_path=str(path)),
            translator=self.get_translator(),
            streams=self.streams,
            automation=self.automation,
        )
