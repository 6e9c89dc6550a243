# The two commands a fresh machine needs: `make demo` (set up, then run the main job) and `make test`.
.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/attnzoo demo

test: setup
	.venv/bin/python -m pytest -q
