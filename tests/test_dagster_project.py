"""lakeport in someone else's Dagster project: the Component in `defs.yaml` and `lakeport_assets`
with a translator, as `dg list defs` and `dg check defs` see them."""

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.config import LakeportConfig

PROJECT = {
    "pyproject.toml": """\
        [project]
        name = "acme"
        version = "0.1.0"
        requires-python = ">=3.11"

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "acme"
        registry_modules = ["pipelines"]
        """,
    "src/acme/__init__.py": "",
    "src/acme/definitions.py": """\
        from pathlib import Path

        import dagster as dg


        @dg.definitions
        def defs() -> dg.Definitions:
            return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
        """,
    "src/acme/defs/__init__.py": "",
    "src/acme/defs/lakeport/defs.yaml": """\
        type: pipelines.LakeportComponent
        attributes:
          config_path: {config}
        """,
    "src/acme/defs/raw.py": """\
        import dagster as dg

        from pipelines import LakeportResource, LakeportStreamProps, LakeportTranslator
        from pipelines import lakeport_assets


        class Raw(LakeportTranslator):
            def get_asset_spec(self, props: LakeportStreamProps) -> dg.AssetSpec:
                spec = super().get_asset_spec(props)
                return spec.replace_attributes(key=["raw", props.name], group_name="raw_events")


        # The component above binds the resource `lakeport` to the same file.
        defs = dg.Definitions(
            assets=lakeport_assets(LakeportResource(config_path="{config}"), translator=Raw())
        )
        """,
}


def dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project / "src"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(bin_dir / "dg"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.timeout(300)
def test_a_separate_project_lists_and_checks_the_component_and_the_translated_assets(
    make_config: Callable[..., LakeportConfig], tmp_path: Path
) -> None:
    config = make_config(time_partitions="daily", time_partitions_start="2026-11-01")
    project = tmp_path / "acme"
    for name, body in PROJECT.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            textwrap.dedent(body).replace("{config}", str(config.base_dir / "lakeport.yaml"))
        )

    checked = dg(project, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully." in checked.stdout + checked.stderr

    listed = dg(project, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert set(assets) == {"events", "raw/events"}
    assert assets["raw/events"]["group_name"] == "raw_events"
    assert set(assets["events"]["kinds"]) == {"delta", "kafka"}
    assert {c["key"] for c in defs["asset_checks"]} >= {
        "events:data_matches_ledger",
        "raw/events:coverage_complete",
    }
    assert {j["name"] for j in defs["jobs"]} == {"events_ingest", "events_upkeep"}
    assert {s["name"] for s in defs["sensors"]} == {"events_lag_sensor", "events_ledger_sensor"}
    assert "lakeport" in json.dumps(defs["resources"])
