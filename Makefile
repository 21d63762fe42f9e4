# meshinject — run `make help` for the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Project-local tool directory; every tool is pinned and installed here.
BIN        := $(CURDIR)/bin
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# ldflags of a build whose version is $(1); the Dockerfile's are the same
# (a test compares them).
ldflags = -s -w -X github.com/meshinject/meshinject/internal/version.Version=$(1) -X github.com/meshinject/meshinject/internal/version.Commit=$(COMMIT)
LDFLAGS := $(call ldflags,$(VERSION))

FUZZTIME  ?= 20s
BENCHTIME ?= 2s

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The first build compiles Kubernetes' and controller-runtime's packages
# (a few minutes on 2 cores); -v names each package as it is compiled, so
# it shows progress, and prints nothing when the build cache is warm. All
# of it goes to stderr, so targets that print manifests stay pipeable.
.PHONY: build
build: ## Build bin/meshinject (the first build takes a few minutes and lists the packages it compiles).
	@echo "building $(BIN)/meshinject" >&2
	@CGO_ENABLED=0 go build -v -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/meshinject ./cmd/meshinject

.PHONY: install
install: build ## Copy bin/meshinject to $GOBIN (default ~/go/bin).
	@dir=$$(go env GOBIN); dir=$${dir:-$$(go env GOPATH)/bin}; mkdir -p "$$dir"; cp $(BIN)/meshinject "$$dir/meshinject"; echo "installed $$dir/meshinject" >&2

DEV_CERTS := $(CURDIR)/.cache/dev-certs

RUN_PORT        ?= 9443
RUN_METRICS_ADDR ?= 127.0.0.1:8080
RUN_HEALTH_ADDR ?= 127.0.0.1:8081

.PHONY: run
run: build ## Serve the webhook on https://127.0.0.1:9443/inject (RUN_PORT; dev certificate in .cache/dev-certs; /metrics on RUN_METRICS_ADDR, 127.0.0.1:8080; /readyz on RUN_HEALTH_ADDR, 127.0.0.1:8081).
	go run ./hack/devcert -dir $(DEV_CERTS)
	@for v in RUN_PORT=127.0.0.1:$(RUN_PORT) RUN_METRICS_ADDR=$(RUN_METRICS_ADDR) RUN_HEALTH_ADDR=$(RUN_HEALTH_ADDR); do \
		addr=$${v#*=}; host=$${addr%:*}; port=$${addr##*:}; \
		if (exec 3<>/dev/tcp/$${host:-127.0.0.1}/$$port) 2>/dev/null; then \
			echo "make run: $$addr is in use; pick another with $${v%%=*}=..., e.g. make run $${v%%=*}=$$( [ $${v%%=*} = RUN_PORT ] && echo 19443 || echo 127.0.0.1:$$((port + 10000)) )" >&2; exit 1; \
		fi; \
	done
	$(BIN)/meshinject serve --host 127.0.0.1 --port $(RUN_PORT) --metrics-addr $(RUN_METRICS_ADDR) --health-addr $(RUN_HEALTH_ADDR) --cert-dir $(DEV_CERTS) --log-format console --drain-delay 0

.PHONY: inject-examples
inject-examples: build ## Inject the examples/*.yaml manifests offline with the built-in defaults and print them (pipe to kubectl apply -f -).
	@for f in examples/*.yaml; do echo "---"; echo "# $$f"; $(BIN)/meshinject inject -f "$$f"; done

# helm, kustomize, promtool and promnames (e2e/tools/ops, pinned) check the
# chart and the monitoring bundle in make test; built into TOOLS_CACHE once
# (about 7 minutes cold), nothing when warm.
.PHONY: ops-tools
ops-tools: ## Build (or reuse) helm, kustomize, promtool and promnames in .cache/tools.
	e2e/tools/build.sh ops $(TOOLS_CACHE) >/dev/null

.PHONY: test
test: ops-tools ## Run the unit, golden and property tests (the chart's lint, schema and kustomize equality, promtool's rule tests), and the hostile-pod tier without the race detector.
	MESHINJECT_OPS_TOOLS=$$(e2e/tools/build.sh ops $(TOOLS_CACHE)) go test -race -count=1 ./...
	go test -count=1 -run 'TestHostilePods' ./webhook/

.PHONY: update-golden
update-golden: ops-tools ## Regenerate every golden set (review the diff!): each package whose tests take -update (injection corpus, explain and check-inject, the README's tables, deploy/).
	@pkgs=$$(git grep -l 'flag.Bool("update"' -- '*_test.go' | xargs -n1 dirname | sort -u | sed 's|^|./|'); \
	echo "update-golden: $$pkgs"; \
	MESHINJECT_OPS_TOOLS=$$(e2e/tools/build.sh ops $(TOOLS_CACHE)) go test -count=1 $$pkgs -update

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint and check go.mod is tidy.
	$(GOLANGCI_LINT) run ./...
	go mod tidy -diff

.PHONY: fuzz
fuzz: ## Run every fuzz test of the module (found by name) for FUZZTIME each (default 20s).
	@git grep -h -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' >/dev/null || { echo "fuzz: no fuzz tests found" >&2; exit 1; }
	@git grep -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's|^\(.*\)/[^/]*:func |\1 |' | sort -u | \
	while read -r dir name; do \
		echo "fuzz: ./$$dir $$name"; \
		go test ./$$dir -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) </dev/null || exit 1; \
	done

.PHONY: bench
bench: ## Benchmark the engine against the decode/encode floor, and hostile pods at the size limit (-benchmem).
	go test ./internal/inject/ -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 1
	go test ./webhook/ -run '^$$' -bench '^BenchmarkHostile$$' -benchmem -benchtime 20x -count 1

LOAD_DURATION ?= 5s
LOAD_FLAGS    ?=

# Istio's injector for bench-load: pkg/kube/inject of the pinned
# istio.io/istio (e2e/tools/istio's istioinjector), with the injector and
# mesh config its istio-discovery chart renders (in .cache/bench-istio).
.PHONY: bench-load
bench-load: build ## Load-test meshinject serve against a floor server and Istio's own injector (c=8 and 32, LOAD_DURATION per cell; LOAD_FLAGS=-distinct 10000 for a mix of workloads).
	go build -o $(BIN)/loadbench ./hack/loadbench
	@istio=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)); \
	mod=$$(cd e2e/tools/istio && go mod download -json istio.io/istio@$(ISTIO_VERSION) | awk -F'"' '$$2 == "Dir" { print $$4 }'); \
	[[ -n $$mod ]] || { echo "bench-load: istio.io/istio@$(ISTIO_VERSION) is not served" >&2; exit 1; }; \
	$$istio/chartrender -chart $$mod/manifests/charts/istio-control/istio-discovery -out $(CURDIR)/.cache/bench-istio \
		-set global.hub=docker.io/istio,global.tag=$(COMPAT_TAG) && \
	$(BIN)/loadbench -meshinject $(BIN)/meshinject -istio $$istio/istioinjector -istio-config $(CURDIR)/.cache/bench-istio \
		-duration $(LOAD_DURATION) -cert-dir $(CURDIR)/.cache/loadbench-certs $(LOAD_FLAGS)

.PHONY: bench-e2e
bench-e2e: ## Create 500 pods on the e2e control plane without a webhook, through meshinject's and through Istio's injector, and print times and ratios.
	E2E_BENCH=1 $(MAKE) test-e2e E2E_FLAGS='-run TestBenchPodCreation'

SOAK_DURATION ?= 10m

.PHONY: soak
soak: build ## Run meshinject serve under load for SOAK_DURATION (10m) with 1 review in 20 hostile; a row of RSS, heap, goroutines and p99 per minute (loopback only).
	go build -o $(BIN)/soak ./hack/soak
	$(BIN)/soak -meshinject $(BIN)/meshinject -duration $(SOAK_DURATION) -cert-dir $(CURDIR)/.cache/soak-certs

# The e2e control plane (kube-apiserver, etcd, kube-controller-manager,
# kubectl, trimmed cert-manager) is built from the Go module proxy into
# TOOLS_CACHE, one directory per tools module keyed by its version and a hash
# of its go.sum and the build script; a warm cache builds nothing.
TOOLS_CACHE ?= $(CURDIR)/.cache/tools
E2E_TIMEOUT ?= 20m
E2E_FLAGS   ?=

.PHONY: e2e-tools
e2e-tools: ## Build (or reuse) the e2e control-plane and Istio binaries in .cache/tools.
	e2e/tools/build.sh k8s $(TOOLS_CACHE) >/dev/null
	e2e/tools/build.sh cert-manager $(TOOLS_CACHE) >/dev/null
	e2e/tools/build.sh istio $(TOOLS_CACHE) >/dev/null

# Where it can (root, with apt-get), the e2e suite applies istio-init's rules
# for real in a network namespace: that takes iptables from Debian's
# packages. Elsewhere those checks are skipped, saying why.
.PHONY: e2e-host-tools
e2e-host-tools: ## Install iptables from Debian's packages when root (for the e2e suite's network-namespace checks).
	@if ! command -v iptables-restore >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "e2e-host-tools: installing iptables" >&2; \
		apt-get install -y -q iptables >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q iptables >/dev/null; } || \
			echo "e2e-host-tools: iptables did not install; the e2e suite skips its network-namespace checks, saying why" >&2; \
	fi

# Istio as the e2e suite runs it: the pinned istio.io/istio (e2e/tools/istio)
# from the module cache, its binaries, and its istio-discovery chart rendered
# with Helm into .cache/e2e-istio.
ISTIO_VERSION := $(shell awk '$$1 == "istio.io/istio" { print $$2 }' e2e/tools/istio/go.mod)

# The Prometheus operator's CRDs (ServiceMonitor, PodMonitor,
# PrometheusRule), from its Go module, so the API server checks the chart's
# and deploy/monitoring's monitoring objects against their schemas.
PROMETHEUS_OPERATOR_VERSION := v0.85.0

.PHONY: test-e2e
test-e2e: build e2e-tools ops-tools e2e-host-tools ## Run the e2e suite against a real kube-apiserver, etcd and kube-controller-manager, with Istio's istiod, pilot-agent and istioctl (no Docker).
	@istio=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)); \
	mod=$$(cd e2e/tools/istio && go mod download -json istio.io/istio@$(ISTIO_VERSION) | awk -F'"' '$$2 == "Dir" { print $$4 }'); \
	[[ -n $$mod ]] || { echo "test-e2e: istio.io/istio@$(ISTIO_VERSION) is not served" >&2; exit 1; }; \
	promop=$$(cd e2e/tools/ops && go mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | awk -F'"' '$$2 == "Dir" { print $$4 }'); \
	[[ -n $$promop ]] || { echo "test-e2e: github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) is not served" >&2; exit 1; }; \
	$$istio/chartrender -chart $$mod/manifests/charts/istio-control/istio-discovery -out $(CURDIR)/.cache/e2e-istio \
		-set global.hub=docker.io/istio,global.tag=$(COMPAT_TAG) && \
	E2E_K8S_ASSETS=$$(e2e/tools/build.sh k8s $(TOOLS_CACHE)) \
	E2E_CERT_MANAGER=$$(e2e/tools/build.sh cert-manager $(TOOLS_CACHE)) \
	E2E_ISTIO=$$istio E2E_ISTIO_MODULE=$$mod E2E_ISTIO_CHART=$(CURDIR)/.cache/e2e-istio \
	E2E_MESHINJECT=$(BIN)/meshinject E2E_OPS=$$(e2e/tools/build.sh ops $(TOOLS_CACHE)) E2E_PROMETHEUS_OPERATOR=$$promop \
	go test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v $(E2E_FLAGS) ./e2e/

# The compatibility tier: Istio's istio-discovery chart of every version in
# COMPAT_ISTIO_VERSIONS (the first is the one e2e/tools/istio pins, whose
# istioctl is built) is rendered with Helm from the Go module cache, and the
# built-in templates are checked against Istio's.
COMPAT_ISTIO_VERSIONS ?= $(shell awk '$$1 == "istio.io/istio" { print $$2 }' e2e/tools/istio/go.mod) v0.0.0-20260826214018-9739e10eb9d7 v0.0.0-20260423205519-b01690e6db7d
COMPAT_TAG ?= $(shell awk '$$1 == "tag:" { print $$2; exit }' internal/config/defaults/values.yaml)

.PHONY: test-compat
test-compat: ## Check the built-in templates against Istio's own (rendered from its chart) and round trips through istioctl.
	@tools=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)); set=""; modules=""; \
	for v in $(COMPAT_ISTIO_VERSIONS); do \
		mod=$$(cd e2e/tools/istio && go mod download -json istio.io/istio@$$v | awk -F'"' '$$2 == "Dir" { print $$4 }'); \
		[[ -n $$mod ]] || { echo "test-compat: istio.io/istio@$$v is not served" >&2; exit 1; }; \
		$$tools/chartrender -chart $$mod/manifests/charts/istio-control/istio-discovery -out $(CURDIR)/.cache/compat/$$v \
			-set global.hub=docker.io/istio,global.tag=$(COMPAT_TAG); \
		set="$$set $$v=$(CURDIR)/.cache/compat/$$v"; modules="$$modules $$v=$$mod"; \
	done; \
	set -o pipefail; \
	COMPAT_ISTIO="$$set" COMPAT_ISTIO_MODULES="$$modules" COMPAT_TAG=$(COMPAT_TAG) COMPAT_ISTIOCTL=$$tools/istioctl go test -tags compat -count=1 -timeout 10m -v ./e2e/compat/ \
		| grep -vE '^ *(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP): .*/)'  # the tests' reports (counts, skips with their reasons) and failures, not every passing case

IMAGE      ?= meshinject:dev
# Released images are $(IMAGE_REPO):$(APP_VERSION), the chart's appVersion,
# which deploy/ and the chart reference (never latest).
IMAGE_REPO ?= ghcr.io/meshinject/meshinject
APP_VERSION := $(shell awk '$$1 == "appVersion:" { gsub(/"/, "", $$2); print $$2 }' deploy/charts/meshinject/Chart.yaml)
PLATFORMS  ?= linux/amd64,linux/arm64
KIND       := $(BIN)/kind-v0.33.0
KIND_CLUSTER ?= meshinject
CERT_MANAGER_VERSION ?= v1.21.2

# Images built without a container engine (hack/mkimage on hack/ociimage, on
# go-containerregistry): OCI image layouts and their archives in IMAGE_DIR,
# which `ctr images import`, skopeo and crane read.
IMAGE_DIR       ?= $(CURDIR)/.cache/image
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_SOURCE    := https://github.com/meshinject/meshinject
NODE_PLATFORM   := linux/$(shell go env GOARCH)

.PHONY: image
image: ## Build ghcr.io/meshinject/meshinject:<appVersion> without Docker: an OCI index (amd64, arm64) of the static binary, nonroot 65532, no shell, in .cache/image (meshinject.oci.tar; digest in meshinject.digest).
	@rm -rf $(IMAGE_DIR)/meshinject-rootfs && mkdir -p $(IMAGE_DIR)
	@for p in $(IMAGE_PLATFORMS); do \
		echo "image: building meshinject for $$p" >&2; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags "$(call ldflags,$(APP_VERSION))" \
			-o $(IMAGE_DIR)/meshinject-rootfs/$${p/\//_}/meshinject ./cmd/meshinject; \
	done
	go run ./hack/mkimage -ref $(IMAGE_REPO):$(APP_VERSION) \
		$(foreach p,$(IMAGE_PLATFORMS),-platform $(p)=$(IMAGE_DIR)/meshinject-rootfs/$(subst /,_,$(p))) \
		-entrypoint /meshinject -label org.opencontainers.image.title=meshinject \
		-label org.opencontainers.image.version=$(APP_VERSION) -label org.opencontainers.image.revision=$(COMMIT) \
		-label org.opencontainers.image.source=$(IMAGE_SOURCE) -label org.opencontainers.image.licenses=Apache-2.0 \
		-layout $(IMAGE_DIR)/meshinject -archive $(IMAGE_DIR)/meshinject.oci.tar > $(IMAGE_DIR)/meshinject.digest
	@echo "image: $(IMAGE_REPO):$(APP_VERSION)@$$(cat $(IMAGE_DIR)/meshinject.digest) in $(IMAGE_DIR)/meshinject.oci.tar" >&2

# The node tier's test images, for the machine's platform: the sandbox
# (e2e/images/pause), the application netcheck (e2e/images/netcheck),
# CoreDNS (e2e/tools/coredns) and go-httpbin (e2e/tools/httpbin) under the
# name examples/httpbin.yaml gives it.
HTTPBIN_IMAGE := docker.io/mccutchen/go-httpbin:$(shell awk '$$2 == "github.com/mccutchen/go-httpbin/v2" { print $$3 }' e2e/tools/httpbin/go.mod)

# Istio's images as the node tier runs them: pilot (pilot-discovery) and
# proxyv2 (pilot-agent, the suite's Envoy stand-in as envoy, iptables from
# Debian's packages), built from the pinned istio.io/istio
# (e2e/tools/istio) under NODE_ISTIO_HUB with the module's version as tag.
NODE_ISTIO_HUB := localhost/meshinject-e2e/istio
PROXY_PATH     := /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: node-images
node-images: image e2e-tools node-host-tools ## Build the node tier's images (meshinject, the sandbox pause, CoreDNS, go-httpbin, Istio's pilot and proxyv2 with the Envoy stand-in) into .cache/image.
	@rm -rf $(IMAGE_DIR)/pause-rootfs $(IMAGE_DIR)/coredns-rootfs $(IMAGE_DIR)/httpbin-rootfs
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(IMAGE_DIR)/pause-rootfs/pause ./e2e/images/pause
	go run ./hack/mkimage -ref localhost/meshinject-e2e/pause:1 -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/pause-rootfs \
		-entrypoint /pause -layout $(IMAGE_DIR)/pause -archive $(IMAGE_DIR)/pause.oci.tar >/dev/null
	@rm -rf $(IMAGE_DIR)/netcheck-rootfs
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(IMAGE_DIR)/netcheck-rootfs/netcheck ./e2e/images/netcheck
	go run ./hack/mkimage -ref localhost/meshinject-e2e/netcheck:1 -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/netcheck-rootfs \
		-entrypoint /netcheck -layout $(IMAGE_DIR)/netcheck -archive $(IMAGE_DIR)/netcheck.oci.tar >/dev/null
	@mkdir -p $(IMAGE_DIR)/coredns-rootfs && cp $$(e2e/tools/build.sh coredns $(TOOLS_CACHE))/coredns $(IMAGE_DIR)/coredns-rootfs/
	go run ./hack/mkimage -ref localhost/meshinject-e2e/coredns:1 -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/coredns-rootfs \
		-entrypoint /coredns -layout $(IMAGE_DIR)/coredns -archive $(IMAGE_DIR)/coredns.oci.tar >/dev/null
	@mkdir -p $(IMAGE_DIR)/httpbin-rootfs/bin && cp $$(e2e/tools/build.sh httpbin $(TOOLS_CACHE))/go-httpbin $(IMAGE_DIR)/httpbin-rootfs/bin/
	go run ./hack/mkimage -ref $(HTTPBIN_IMAGE) -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/httpbin-rootfs \
		-entrypoint /bin/go-httpbin -layout $(IMAGE_DIR)/httpbin -archive $(IMAGE_DIR)/httpbin.oci.tar >/dev/null
	@istio=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)); \
	mod=$$(cd e2e/tools/istio && go mod download -json istio.io/istio@$(ISTIO_VERSION) | awk -F'"' '$$2 == "Dir" { print $$4 }'); \
	[[ -n $$mod ]] || { echo "node-images: istio.io/istio@$(ISTIO_VERSION) is not served" >&2; exit 1; }; \
	e2e/images/istio/rootfs.sh $(IMAGE_DIR)/istio-rootfs $$istio $$mod
	go run ./hack/mkimage -ref $(NODE_ISTIO_HUB)/pilot:$(ISTIO_VERSION) -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/istio-rootfs/pilot \
		-user 1337:1337 -entrypoint /usr/local/bin/pilot-discovery -layout $(IMAGE_DIR)/istio-pilot -archive $(IMAGE_DIR)/istio-pilot.oci.tar >/dev/null
	go run ./hack/mkimage -ref $(NODE_ISTIO_HUB)/proxyv2:$(ISTIO_VERSION) -platform $(NODE_PLATFORM)=$(IMAGE_DIR)/istio-rootfs/proxyv2 \
		-user 1337:1337 -env PATH=$(PROXY_PATH) -entrypoint /usr/local/bin/pilot-agent \
		-layout $(IMAGE_DIR)/istio-proxyv2 -archive $(IMAGE_DIR)/istio-proxyv2.oci.tar >/dev/null

# The node tier runs as root with Debian's containerd, runc, CNI plugins and
# iptables; elsewhere it skips, saying why.
.PHONY: node-host-tools
node-host-tools: ## Install containerd, runc, the CNI plugins, iptables and conntrack from Debian's packages when root (for make test-node).
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! { command -v containerd && command -v runc && command -v iptables-save && [ -x /usr/lib/cni/bridge ]; } >/dev/null; then \
		echo "node-host-tools: installing containerd, runc, containernetworking-plugins, iptables, conntrack" >&2; \
		pkgs="containerd runc containernetworking-plugins iptables conntrack"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkgs >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkgs >/dev/null; } || \
			echo "node-host-tools: the packages did not install; make test-node skips, saying why" >&2; \
	fi

NODE_TIMEOUT ?= 30m
NODE_FLAGS   ?=

.PHONY: test-node
test-node: build node-images e2e-tools ops-tools node-host-tools ## Run the node tier: a one-node cluster (kubelet, containerd, kube-proxy, CoreDNS) in namespaces of its own, meshinject installed by its chart from the image built here (root; skips elsewhere).
	E2E_K8S_ASSETS=$$(e2e/tools/build.sh k8s $(TOOLS_CACHE)) \
	E2E_CERT_MANAGER=$$(e2e/tools/build.sh cert-manager $(TOOLS_CACHE)) \
	E2E_OPS=$$(e2e/tools/build.sh ops $(TOOLS_CACHE)) \
	E2E_MESHINJECT=$(BIN)/meshinject E2E_IMAGES=$(IMAGE_DIR) \
	E2E_ISTIO=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)) E2E_ISTIO_HUB=$(NODE_ISTIO_HUB) E2E_ISTIO_TAG=$(ISTIO_VERSION) \
	E2E_ISTIO_MODULE=$$(cd e2e/tools/istio && go mod download -json istio.io/istio@$(ISTIO_VERSION) | awk -F'"' '$$2 == "Dir" { print $$4 }') \
	go test -tags node -count=1 -timeout $(NODE_TIMEOUT) -v $(NODE_FLAGS) ./e2e/

.PHONY: docker-build
docker-build: ## Build the container image IMAGE (default meshinject:dev; needs Docker).
	docker build -t $(IMAGE) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) .

.PHONY: docker-buildx
docker-buildx: ## Build $(IMAGE_REPO):$(APP_VERSION) for PLATFORMS (amd64 and arm64) with docker buildx; PUSH=1 pushes it.
	docker buildx build --platform $(PLATFORMS) -t $(IMAGE_REPO):$(APP_VERSION) \
		--build-arg VERSION=$(APP_VERSION) --build-arg COMMIT=$(COMMIT) $(if $(PUSH),--push,) .

.PHONY: e2e-kind
e2e-kind: docker-build $(KIND) e2e-tools ## Run the e2e suite on a kind cluster with deploy/overlays/kind (needs Docker).
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER) --wait 120s
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	K=$$(e2e/tools/build.sh k8s $(TOOLS_CACHE))/kubectl; CM=$$(e2e/tools/build.sh cert-manager $(TOOLS_CACHE)); \
	$$K --context kind-$(KIND_CLUSTER) apply --server-side -f $$CM/crds/ && \
	$$K --context kind-$(KIND_CLUSTER) apply -f https://github.com/cert-manager/cert-manager/releases/download/$(CERT_MANAGER_VERSION)/cert-manager.yaml && \
	$$K --context kind-$(KIND_CLUSTER) -n cert-manager wait --for=condition=Available deployment --all --timeout=180s && \
	$$K --context kind-$(KIND_CLUSTER) apply -k deploy/overlays/kind && \
	$$K --context kind-$(KIND_CLUSTER) -n meshinject wait --for=condition=Available deployment/meshinject --timeout=180s && \
	E2E_EXISTING_CLUSTER=true E2E_KUBECTL=$$K E2E_ISTIO=$$(e2e/tools/build.sh istio $(TOOLS_CACHE)) \
		go test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/

$(KIND):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install sigs.k8s.io/kind@v0.33.0
	mv $(BIN)/kind $@

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@
