# The front door. `make` lists the targets.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help up down dev dev-reset test lint fmt bench check-deploy

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: ## run the whole pipeline with docker compose (Redis, PostgreSQL, services, Prometheus, Grafana)
	docker compose up --build -d
	@echo "metrics: http://localhost:9090  dashboards: http://localhost:3001  events API: http://localhost:3000/api/docs  commands: http://localhost:8080"

down: ## stop the docker compose pipeline
	docker compose down

dev: ## run the pipeline locally without Docker (private Redis and PostgreSQL under .dev/)
	./scripts/dev.sh

dev-reset: ## delete the local dev data (.dev/)
	./scripts/dev.sh reset

check-deploy: ## static checks of docker-compose.yml, Prometheus rules and the Grafana dashboard
	python3 scripts/check-deploy.py

test: ## run every test against private Redis and PostgreSQL instances
	$(CARGO) test --workspace --locked

lint: ## formatting and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

bench: ## end-to-end benchmark, docs/benchmark.md (make bench ARGS="--quick")
	./scripts/bench.sh $(ARGS)
