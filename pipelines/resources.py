"""The Dagster resource: lakeport's configuration file, loaded in the run process.

The file refers to secrets as `${VAR}`. By default they come from the environment of the
process that runs (the YAML path); teams that keep secrets in Dagster pass them as `env`
instead, typically as `EnvVar`s, which Dagster resolves in the run process and shows in the UI
only by name:

    LakeportResource(
        config_path="lakeport.yaml",
        env={"UPVEST_KAFKA_PASSWORD": dg.EnvVar("UPVEST_KAFKA_PASSWORD")},
    )
"""

import os

from dagster import ConfigurableResource
from pydantic import Field

from connectors import LakeportConfig, Stream, load_config


class LakeportResource(ConfigurableResource["LakeportResource"]):
    """Access to the streams of a `lakeport.yaml`."""

    config_path: str
    env: dict[str, str] = Field(default_factory=dict)
    """Values for `${VAR}` references in the file; they win over the process environment."""

    def config(self) -> LakeportConfig:
        return load_config(self.config_path, env={**os.environ, **self.env})

    def stream(self, name: str) -> Stream:
        return Stream.from_config(self.config(), name)
