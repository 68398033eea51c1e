"""Development tooling that lives only in the checkout, never in an installed lakeport.

- `dev.local_broker`: a real single-node KRaft Kafka broker from the jars Maven fetches into
  `dev/kafka/target/libs` (tests, the demo, benchmarks; `lakeport broker start|stop|status`);
- `dev.sample_events`: deterministic Upvest-like events and a producer
  (`lakeport produce-sample`);
- `dev.demo`: the Dagster step of `make demo`;
- `dev/dagster/dagster.yaml`: the Dagster instance settings of the demo and `make ui`.
"""
