#!/usr/bin/env bash
# Lays out the files of the node tier's two Istio images, as Istio's
# pilot/docker/Dockerfile.pilot and Dockerfile.proxyv2 lay them out:
#
#   OUT/pilot    /usr/local/bin/pilot-discovery
#   OUT/proxyv2  /usr/local/bin/pilot-agent
#                /usr/local/bin/envoy           envoystandin, the suite's Envoy
#                                               stand-in (a test double)
#                /var/lib/istio/envoy/envoy_bootstrap_tmpl.json  from the module
#                /usr/sbin/iptables*, ip6tables* (nft and legacy) with their
#                shared libraries and xtables extensions, from this machine's
#                Debian packages (istio-init runs them)
#
#   e2e/images/istio/rootfs.sh OUT ISTIO_BIN ISTIO_MODULE
set -euo pipefail
out=${1:?usage: rootfs.sh OUT ISTIO_BIN ISTIO_MODULE}
bin=${2:?usage: rootfs.sh OUT ISTIO_BIN ISTIO_MODULE}
mod=${3:?usage: rootfs.sh OUT ISTIO_BIN ISTIO_MODULE}
rm -rf "$out/pilot" "$out/proxyv2"

install -D -m 0755 "$bin/pilot-discovery" "$out/pilot/usr/local/bin/pilot-discovery"

p=$out/proxyv2
install -D -m 0755 "$bin/pilot-agent" "$p/usr/local/bin/pilot-agent"
install -D -m 0755 "$bin/envoystandin" "$p/usr/local/bin/envoy"
install -D -m 0644 "$mod/tools/packaging/common/envoy_bootstrap.json" "$p/var/lib/istio/envoy/envoy_bootstrap_tmpl.json"

nft=$(command -v xtables-nft-multi || true)
legacy=$(command -v xtables-legacy-multi || true)
[[ -n $nft && -n $legacy ]] || { echo "rootfs.sh: xtables-nft-multi and xtables-legacy-multi are needed (Debian's iptables package: make node-host-tools)" >&2; exit 1; }
# One copy per name: the multi binaries choose their command by argv[0],
# and the image holds regular files only.
for v in "" -nft -legacy; do
	src=$nft
	[[ $v == -legacy ]] && src=$legacy
	for t in iptables ip6tables; do
		for s in "" -save -restore; do
			install -D -m 0755 "$src" "$p/usr/sbin/$t$v$s"
		done
	done
done
# The extensions iptables loads by name, and the libraries of all of it.
ext=$(readlink -f "$(dirname "$(ldd "$nft" | awk '/libxtables/ { print $3 }')")")/xtables
[[ -d $ext ]] || { echo "rootfs.sh: no xtables extensions folder at $ext" >&2; exit 1; }
mkdir -p "$p$ext"
cp "$ext"/*.so "$p$ext/"
for f in "$nft" "$legacy" "$ext"/*.so; do
	ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
	install -D -m 0755 "$(readlink -f "$lib")" "$p$lib"
done
install -D -m 0644 /etc/protocols "$p/etc/protocols" 2>/dev/null || true
