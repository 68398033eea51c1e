"""The Dagster resource: lakeport's configuration file, loaded in the run process.

Secrets stay out of Dagster's run config entirely: the file refers to them as `${VAR}` and
they are resolved from the environment where the run executes, so the UI and the event log
only ever see the path of the configuration file.
"""

from dagster import ConfigurableResource

from connectors import LakeportConfig, Stream, load_config


class LakeportResource(ConfigurableResource["LakeportResource"]):
    """Access to the streams of a `lakeport.yaml`."""

    config_path: str

    def config(self) -> LakeportConfig:
        return load_config(self.config_path)

    def stream(self, name: str) -> Stream:
        return Stream.from_config(self.config(), name)
