# The two commands a fresh clone needs:  `make demo`  and  `make test`.
# Everything they need (Python packages, the Kafka broker jars) is installed from this repo's files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JARS := dev/kafka/target/libs/.fetched
# The local broker's address: lakeport.yaml connects to it, the broker listens on its port.
export LAKEPORT_BOOTSTRAP ?= 127.0.0.1:19092
BROKER_PORT = $(lastword $(subst :, ,$(LAKEPORT_BOOTSTRAP)))
BROKER_HOME ?= .lakeport/broker
UI_PORT ?= 3000

.PHONY: demo test lint ui broker-stop install jars bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(JARS): dev/kafka/pom.xml
	mvn -q -B -f dev/kafka/pom.xml package
	touch $@

## The Kafka broker jars (dev/kafka/pom.xml, from Maven Central) for the local broker
jars: $(JARS)

install: $(STAMP) $(JARS)

## Run the main job on the embedded default: local broker, sample Upvest events, ./lakehouse
demo: install
	$(BIN)/lakeport broker start --home $(BROKER_HOME) --port $(BROKER_PORT)
	$(BIN)/lakeport produce-sample --stream notifications --count 20000 --awkward 0.002 --hours-ago 4
	$(BIN)/lakeport produce-sample --stream prices --kind prices --count 5000 --hours-ago 4
	mkdir -p .lakeport/dagster-home && cp dev/dagster/dagster.yaml .lakeport/dagster-home/
	DAGSTER_HOME=$(CURDIR)/.lakeport/dagster-home $(BIN)/python -m dev.demo
	$(BIN)/lakeport query "PIVOT (SELECT category, 'p' || kafka_partition AS p FROM notifications) ON p USING count(*) GROUP BY category ORDER BY category"
	$(BIN)/lakeport query "SELECT status, count(*) AS orders, sum(cash_amount)::DECIMAL(18, 2) AS cash_eur FROM orders GROUP BY ALL ORDER BY orders DESC"
	$(BIN)/lakeport status
	@echo
	@echo "Open the Dagster UI:   make ui   (then http://127.0.0.1:$(UI_PORT))"
	@echo "Stop the local broker: make broker-stop"

## The whole test suite (real Kafka broker, real Delta tables, real Dagster runs), after the linters;
## two workers (most tests wait on the broker), each with its own broker, a test file per worker
test: install lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## ruff (lint and format) and mypy (strict) over connectors/, pipelines/, dev/, benchmarks/, deploy/
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The performance benchmark, Spark Structured Streaming peer included (pyspark + delta-spark)
bench: install
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	$(BIN)/python -m benchmarks.ingest --json benchmarks/last-run.json

ui: install
	mkdir -p .lakeport/dagster-home && cp dev/dagster/dagster.yaml .lakeport/dagster-home/
	DAGSTER_HOME=$(CURDIR)/.lakeport/dagster-home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

broker-stop:
	$(BIN)/lakeport broker stop --home $(BROKER_HOME)

clean:
	rm -rf $(VENV) dev/kafka/target lakehouse .lakeport
