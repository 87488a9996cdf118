.PHONY: demo test crd fmt
# Run the main job: build and benchmark on a local cluster (see README).
demo:
	bash scripts/demo.sh
# Run every test.
test:
	bash scripts/test.sh
# Regenerate the committed CRD copies from the Rust types.
crd:
	cargo run --quiet -- crd > crds/benchmarkruns.benchrun.dev.yaml
	cp crds/benchmarkruns.benchrun.dev.yaml config/crd/
	cp crds/benchmarkruns.benchrun.dev.yaml charts/benchrun/crds/
fmt:
	cargo fmt --all
