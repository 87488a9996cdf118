#!/usr/bin/env bash
# Builds the external programs the end-to-end suite and the demo run, once,
# into a cache outside the clone, keyed by version:
#
#   $BENCHRUN_CACHE/tools/<name>-<version>-<hash of the wrapper module>/bin/
#
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from
# the published Go modules, llm-d-inference-sim and the Prometheus server from
# theirs, through the wrapper modules next to this script; helm through `go install`. All of them
# are static (CGO off) where the program allows it. A warm call only checks
# that the folders exist and takes well under a second.
#
# Usage: e2e/tools/build.sh            build what is missing, print the bin dir
#        e2e/tools/build.sh --print    print the bin dir without building
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${BENCHRUN_CACHE:-$HOME/.cache/benchrun}"
tools="$cache/tools"
models_hash="$(cat "$here/llama-cpp/tiny_model.py" "$here/llama-cpp/tokenizer_files.py" | sha256sum | cut -c1-12)"
bin="$tools/bin-$KUBERNETES_VERSION-$ETCD_VERSION-$HELM_VERSION-$INFERENCE_SIM_VERSION-$PROMETHEUS_VERSION-llama$LLAMA_CPP_PYTHON_VERSION-$models_hash"

if [[ "${1:-}" == "--print" ]]; then
	echo "$bin"
	exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the control plane" >&2; exit 1; }
mkdir -p "$tools"

# One builder at a time (CI and a developer's demo may race).
exec 9>"$tools/.lock"
flock 9

log() { echo "e2e/tools: $*" >&2; }

module_hash() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

# build_dir NAME VERSION -> the folder that holds this exact build
build_dir() { echo "$tools/$1-$2${3:+-$3}"; }

# finish DIR: atomically publish a finished build
finish() { rm -rf "$1"; mv "$1.partial" "$1"; }

k8s_ldflags() {
	local v="$KUBERNETES_VERSION" major minor
	major="${v#v}"; major="${major%%.*}"
	minor="${v#v*.}"; minor="${minor%%.*}"
	local flags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}

build_kubernetes() {
	local mod="$here/kubernetes" dir
	dir="$(build_dir kubernetes "$KUBERNETES_VERSION" "$(module_hash "$mod")")"
	[[ -x "$dir/kube-apiserver" && -x "$dir/kube-controller-manager" && -x "$dir/kube-scheduler" && -x "$dir/kubectl" ]] && { echo "$dir"; return; }
	log "building Kubernetes $KUBERNETES_VERSION control plane (cold: about 15 minutes on 2 cores)"
	rm -rf "$dir.partial"; mkdir -p "$dir.partial"
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$(k8s_ldflags)" -o "$dir.partial/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubectl)
	finish "$dir"
	echo "$dir"
}

# build_wrapped MODULE VERSION PACKAGE BINARY: `go build` PACKAGE in the
# wrapper module e2e/tools/MODULE into BINARY
build_wrapped() {
	local name="$1" version="$2" pkg="$3" binary="$4" mod="$here/$1" dir
	dir="$(build_dir "$name" "$version" "$(module_hash "$mod")")"
	[[ -x "$dir/$binary" ]] && { echo "$dir"; return; }
	log "building $binary $version"
	rm -rf "$dir.partial"; mkdir -p "$dir.partial"
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir.partial/$binary" "$pkg")
	finish "$dir"
	echo "$dir"
}

# go_install NAME VERSION PACKAGE [CGO]
go_install() {
	local name="$1" version="$2" pkg="$3" cgo="${4:-0}" dir
	dir="$(build_dir "$name" "$version")"
	[[ -x "$dir/$name" ]] && { echo "$dir"; return; }
	log "building $name $version"
	rm -rf "$dir.partial"; mkdir -p "$dir.partial"
	# GOFLAGS from the environment may carry -mod=vendor or similar; go install
	# module@version wants none of that.
	GOFLAGS=-buildvcs=false CGO_ENABLED="$cgo" GOBIN="$dir.partial" \
		go install -trimpath -ldflags "-s -w" "$pkg@$version"
	finish "$dir"
	echo "$dir"
}

# llama.cpp's llama-server from the source llama-cpp-python publishes on
# PyPI (it vendors llama.cpp): CPU only, no web UI, no TLS, no downloads.
# The tokenizer vocabularies of llama.cpp's tests come along (no weights).
build_llama_server() {
	local dir src
	dir="$(build_dir llama-cpp "$LLAMA_CPP_PYTHON_VERSION")"
	[[ -x "$dir/llama-server" && -d "$dir/vocab" ]] && { echo "$dir"; return; }
	command -v cmake >/dev/null && command -v c++ >/dev/null ||
		{ echo "build.sh: cmake and a C++ compiler build llama-server (apt-get install cmake g++)" >&2; exit 1; }
	log "building llama-server (llama-cpp-python $LLAMA_CPP_PYTHON_VERSION's llama.cpp; cold: about 8 minutes on 2 cores)"
	rm -rf "$dir.partial"; mkdir -p "$dir.partial/vocab"
	src="$(mktemp -d "${TMPDIR:-/tmp}/llama-src.XXXXXX")"
	# shellcheck disable=SC2064  # the folder is known now
	trap "rm -rf '$src'" EXIT
	python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
		"llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$src" >&2
	tar -xzf "$src"/llama_cpp_python-*.tar.gz -C "$src"
	local tree=("$src"/llama_cpp_python-*/vendor/llama.cpp)
	cmake -S "${tree[0]}" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
		-DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
		-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
		-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF >&2
	cmake --build "$src/build" --target llama-server -j "$(nproc)" >&2
	cp "$src/build/bin/llama-server" "$dir.partial/"
	cp "${tree[0]}"/models/ggml-vocab-llama-spm.gguf "${tree[0]}"/models/ggml-vocab-gpt-2.gguf "$dir.partial/vocab/"
	rm -rf "$src"
	finish "$dir"
	echo "$dir"
}

# The tiny models llama-server serves (tiny_model.py), keyed by the scripts:
# the Llama SentencePiece vocabulary (tiny-spm.gguf) and GPT-2's byte-pair
# one (tiny-bpe.gguf), with the gguf package in a virtualenv of their own;
# and the byte-pair one's tokenizer files as Hugging Face publishes them
# (tokenizer_files.py), in tiny-bpe-tokenizer/.
build_llama_models() {
	local llama="$1" dir venv
	dir="$(build_dir llama-models "$LLAMA_CPP_PYTHON_VERSION-$GGUF_VERSION" "$models_hash")"
	[[ -f "$dir/tiny-spm.gguf" && -f "$dir/tiny-bpe.gguf" && -f "$dir/tiny-bpe-tokenizer/tokenizer.json" ]] &&
		{ echo "$dir"; return; }
	log "writing the tiny llama.cpp models (gguf $GGUF_VERSION)"
	rm -rf "$dir.partial"; mkdir -p "$dir.partial"
	venv="$tools/gguf-$GGUF_VERSION-venv"
	if [[ ! -x "$venv/bin/python" ]]; then
		python3 -c 'import venv, ensurepip' 2>/dev/null ||
			{ echo "build.sh: python3 with venv and pip writes the tiny models (apt-get install python3-venv)" >&2; exit 1; }
		rm -rf "$venv.partial"
		python3 -m venv "$venv.partial"
		"$venv.partial/bin/python" -m pip install --quiet "gguf==$GGUF_VERSION" >&2
		mv "$venv.partial" "$venv"
	fi
	"$venv/bin/python" "$here/llama-cpp/tiny_model.py" "$llama/vocab/ggml-vocab-llama-spm.gguf" "$dir.partial/tiny-spm.gguf" >&2
	"$venv/bin/python" "$here/llama-cpp/tiny_model.py" "$llama/vocab/ggml-vocab-gpt-2.gguf" "$dir.partial/tiny-bpe.gguf" >&2
	"$venv/bin/python" -B "$here/llama-cpp/tokenizer_files.py" "$llama/vocab/ggml-vocab-gpt-2.gguf" "$dir.partial/tiny-bpe-tokenizer" >&2
	finish "$dir"
	echo "$dir"
}

# One by one, so that a failed build stops the script.
etcd="$(build_wrapped etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 etcd)"
kubernetes="$(build_kubernetes)"
helm="$(go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm)"
sim="$(build_wrapped inference-sim "$INFERENCE_SIM_VERSION" github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim llm-d-inference-sim)"
# The Prometheus server (its module v0.316.0 is Prometheus 3.x) scrapes the
# controller in the suite; no web UI assets are needed for its HTTP API.
prometheus="$(build_wrapped prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus prometheus)"
llama="$(build_llama_server)"
llama_models="$(build_llama_models "$llama")"
dirs=("$etcd" "$kubernetes" "$helm" "$sim" "$prometheus" "$llama" "$llama_models")

# One folder of links, named by every version, is what the suite puts on PATH.
if [[ ! -d "$bin" ]]; then
	rm -rf "$bin.partial"; mkdir -p "$bin.partial"
	for d in "${dirs[@]}"; do
		for f in "$d"/*; do ln -sf "$f" "$bin.partial/$(basename "$f")"; done
	done
	finish "$bin"
fi
echo "$bin"
