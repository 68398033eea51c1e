"""lakeport's code location on Kubernetes: every ingestion step in a pod of its own.

The Dagster Helm chart (`values.yaml` beside this file) runs this module as a user-code
deployment. Runs are launched by the chart's K8sRunLauncher; inside a run, dagster-k8s's
`k8s_job_executor` starts one Kubernetes Job per step, so a stream with `workers: N` in
`lakeport.yaml` ingests in N pods side by side, each reading its shard of the partitions.
`WORKER` is what each ingestion pod asks for: one lakeport process lands ~100k Upvest events/s
on two cores with a peak near 650 MiB at the default micro-batch; a replace backfill stages up
to 1 GiB of rows per commit and peaks near 1.7 GiB (docs/scaling.md).
"""

from dagster_k8s import k8s_job_executor

from pipelines import build_definitions

WORKER = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "2", "memory": "1Gi"},
                "limits": {"memory": "2Gi"},
            }
        }
    }
}

defs = build_definitions(
    executor=k8s_job_executor.configured(
        {
            "max_concurrent": 16,  # steps of one run at once: up to 16 shard pods
            # The secrets lakeport.yaml refers to as ${VAR}, from one Kubernetes Secret.
            "env_secrets": ["lakeport-secrets"],
        }
    ),
    step_tags=WORKER,
)
