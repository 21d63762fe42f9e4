# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on distroless, running as nonroot.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/meshinject/meshinject/internal/version.Version=${VERSION} -X github.com/meshinject/meshinject/internal/version.Commit=${COMMIT}" \
    -o /out/meshinject ./cmd/meshinject

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshinject /meshinject
USER 65532:65532
ENTRYPOINT ["/meshinject"]
