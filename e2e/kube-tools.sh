#!/usr/bin/env bash
# Builds the Kubernetes control plane the kubernetes e2e tests run against
# (kube-apiserver, kube-controller-manager, kubectl, etcd and the
# agent-sandbox controller) from the Go module proxy, once per machine and
# version, into the e2e tool cache:
#   $NEMOCLAW_E2E_TOOLS, else $XDG_CACHE_HOME/nemoclaw-e2e-tools, else
#   ~/.cache/nemoclaw-e2e-tools; then kubernetes-$K8S_VERSION/.
# Idempotent: it exits at once when every binary is there, and builds under
# a lock so that two runs never build the same thing twice. A cold build
# takes tens of minutes on two cores and about 5 GB of Go build cache; the
# binaries it leaves are about 400 MB.
#
# The published k8s.io/kubernetes module carries no staging/ tree, so its
# ./staging replace directives are rewritten to the published k8s.io/*
# modules of the same release; etcd's server module is built the same way
# with its ../ replaces pointed at the published etcd modules.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=v0${K8S_VERSION#v1}
ETCD_VERSION=${ETCD_VERSION:-v3.7.4}
AGENT_SANDBOX_VERSION=${AGENT_SANDBOX_VERSION:-v1.0.1}

base=${NEMOCLAW_E2E_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/nemoclaw-e2e-tools}
dest=$base/kubernetes-$K8S_VERSION
bins=(kube-apiserver kube-controller-manager kubectl etcd agent-sandbox-controller)

have_all() {
	for b in "${bins[@]}"; do [ -x "$dest/$b" ] || return 1; done
	[ -f "$dest/VERSIONS" ]
}
have_all && { echo "$dest"; exit 0; }

mkdir -p "$dest"
exec 9>"$base/kubernetes.lock"
flock 9
have_all && { echo "$dest"; exit 0; }

export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
work=$(mktemp -d "${TMPDIR:-/tmp}/nemoclaw-kube-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# Outside any module: nothing here may touch the repository's go.mod/go.sum.
cd "$work"

# copy_module MOD@VER DIR: the module's source, writable, in DIR.
copy_module() {
	local src
	src=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "kube-tools: go mod download $1 gave no directory" >&2; exit 1; }
	cp -r "$src" "$2"
	chmod -R u+w "$2"
}

build() { # build DIR PKG OUT
	echo "kube-tools: building $3" >&2
	(cd "$1" && go build -trimpath -ldflags=-s -o "$dest/$3.tmp" "$2")
	mv "$dest/$3.tmp" "$dest/$3"
}

if ! [ -x "$dest/kube-apiserver" ] || ! [ -x "$dest/kube-controller-manager" ] || ! [ -x "$dest/kubectl" ]; then
	k=$work/kubernetes
	copy_module "k8s.io/kubernetes@$K8S_VERSION" "$k"
	rm -rf "$k/vendor"
	# Each ./staging replace points at the published module of the same
	# release; the staging modules never published (the samples) are
	# dropped: nothing built here imports them.
	for m in $(sed -n 's|^\t\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\1|p' "$k/go.mod"); do
		if go list -m "$m@$STAGING_VERSION" >/dev/null 2>&1; then
			(cd "$k" && go mod edit -replace "$m=$m@$STAGING_VERSION")
		else
			(cd "$k" && go mod edit -dropreplace "$m" -droprequire "$m")
		fi
	done
	for c in kube-apiserver kube-controller-manager kubectl; do
		[ -x "$dest/$c" ] || build "$k" "./cmd/$c" "$c"
	done
fi

if ! [ -x "$dest/etcd" ]; then
	e=$work/etcd
	copy_module "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$e"
	(cd "$e" && for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
		go mod edit -replace "$m=$m@$ETCD_VERSION"
	done)
	build "$e" . etcd
fi

if ! [ -x "$dest/agent-sandbox-controller" ]; then
	a=$work/agent-sandbox
	copy_module "sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION" "$a"
	build "$a" ./cmd/agent-sandbox-controller agent-sandbox-controller
fi

printf 'kubernetes %s\netcd %s\nagent-sandbox %s\n' "$K8S_VERSION" "$ETCD_VERSION" "$AGENT_SANDBOX_VERSION" >"$dest/VERSIONS"
echo "$dest"
