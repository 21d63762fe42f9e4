#!/usr/bin/env bash
# Builds the e2e control-plane binaries of one tools module into a cache
# directory keyed by the module's version, its go.sum and this script, and
# prints that directory. A second call with the same inputs builds nothing.
#
#   e2e/tools/build.sh k8s|cert-manager|istio|coredns|httpbin|ops CACHE_ROOT
set -euo pipefail
name=${1:?usage: build.sh k8s|cert-manager|istio|coredns|httpbin|ops CACHE_ROOT}
root=${2:?usage: build.sh k8s|cert-manager|istio|coredns|httpbin|ops CACHE_ROOT}
here=$(cd "$(dirname "$0")" && pwd)
root=$(mkdir -p "$root" && cd "$root" && pwd)
mod=$here/$name

# modversion prints the version the tools module requires of module $1.
modversion() {
	awk -v m="$1" '($1 == m || ($1 == "require" && $2 == m)) && $0 !~ /=>/ { print ($1 == m ? $2 : $3); exit }' "$mod/go.mod"
}

case $name in
k8s)
	version=$(modversion k8s.io/kubernetes)
	minor=${version#v1.}
	minor=${minor%%.*}
	ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	targets=(
		"kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver"
		"kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager"
		"kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
		"kube-proxy=k8s.io/kubernetes/cmd/kube-proxy"
		"kubelet=k8s.io/kubernetes/cmd/kubelet"
		"kubectl=k8s.io/kubernetes/cmd/kubectl"
		"etcd=go.etcd.io/etcd/server/v3"
	)
	;;
cert-manager)
	version=$(modversion github.com/cert-manager/cert-manager)
	ldflags="-s -w"
	targets=(
		"cert-manager-controller=./controller"
		"cert-manager-cainjector=./cainjector"
	)
	;;
istio)
	version=$(modversion istio.io/istio)
	ldflags="-s -w"
	targets=(
		"istioctl=istio.io/istio/istioctl/cmd/istioctl"
		"pilot-discovery=istio.io/istio/pilot/cmd/pilot-discovery"
		"pilot-agent=istio.io/istio/pilot/cmd/pilot-agent"
		"chartrender=./chartrender"
		"envoystandin=./envoystandin"
		"istioinjector=./istioinjector"
	)
	;;
httpbin)
	version=$(modversion github.com/mccutchen/go-httpbin/v2)
	ldflags="-s -w"
	targets=(
		"go-httpbin=github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin"
	)
	;;
coredns)
	version=$(modversion github.com/coredns/coredns)
	ldflags="-s -w"
	targets=(
		"coredns=./coredns"
	)
	;;
ops)
	version=$(modversion helm.sh/helm/v4)
	ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version"
	targets=(
		"helm=helm.sh/helm/v4/cmd/helm"
		"kustomize=sigs.k8s.io/kustomize/kustomize/v5"
		"promtool=github.com/prometheus/prometheus/cmd/promtool"
		"promnames=./promnames"
	)
	;;
*)
	echo "build.sh: unknown tools module $name" >&2
	exit 2
	;;
esac
[[ -n $version ]] || { echo "build.sh: no version found in $mod/go.mod" >&2; exit 1; }

# The key covers everything that decides the binaries: the module's go.mod,
# go.sum and Go files, this module's case above (targets and flags) and the
# build steps below, so a change to another module's targets leaves this
# module's cache warm.
script=$(awk -v c="$name)" '$1 == c { p = 1 } p { print } p && /;;/ { exit }' "$here/build.sh"; sed -n '/^esac$/,$p' "$here/build.sh")
hash=$( (cd "$mod" && find . -name go.mod -o -name go.sum -o -name '*.go' | LC_ALL=C sort | xargs cat; printf '%s' "$script") | sha256sum | cut -c1-12)
out=$root/$name-$version-$hash
if [[ -f $out/.complete ]]; then
	echo "$out"
	exit 0
fi

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
start=$(date +%s)
for t in "${targets[@]}"; do
	bin=${t%%=*}
	pkg=${t#*=}
	# The version of the module that provides this target, not the key's.
	from=$(cd "$mod" && go list -f '{{with .Module}}{{if .Version}}{{.Path}}@{{.Version}}{{else}}{{.Path}}, local{{end}}{{end}}' "$pkg")
	echo "build.sh: building $bin ($pkg from ${from:-the tools module})" >&2
	(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$bin" "$pkg")
done
if [[ $name == cert-manager ]]; then
	crds=$(cd "$mod" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)/deploy/crds
	mkdir -p "$out.tmp/crds"
	cp "$crds"/*.yaml "$out.tmp/crds/"
	chmod -R u+w "$out.tmp/crds"
fi
touch "$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "build.sh: $name tools (key $version-$hash) built in $(($(date +%s) - start))s" >&2
echo "$out"
