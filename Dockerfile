# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on distroless, running as nonroot.
# The Go stage runs on the build machine's platform and cross-compiles for
# the target's (docker buildx build --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags "-s -w -X github.com/meshinject/meshinject/internal/version.Version=${VERSION} -X github.com/meshinject/meshinject/internal/version.Commit=${COMMIT}" \
    -o /out/meshinject ./cmd/meshinject

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshinject /meshinject
USER 65532:65532
ENTRYPOINT ["/meshinject"]
