.PHONY: demo test crd fmt image push
# Run the main job: build and benchmark on a local cluster (see README);
# ENGINE=llama.cpp also benchmarks llama.cpp's server.
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
# Build both images (benchrun, benchrun-gpu-exporter) for this machine with
# docker or buildah; push them multi-arch: make push REGISTRY=registry.example.com/me
# (TAG, PLATFORMS and ENGINE too: see scripts/image.sh).
export REGISTRY TAG PLATFORMS ENGINE
image:
	bash scripts/image.sh build
push:
	bash scripts/image.sh push
