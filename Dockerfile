# nftproxy image: one static binary on distroless/static. The same binary
# is the kubectl plugin when named kubectl-nftproxy (copy it out of the
# image or build it with `go build -o kubectl-nftproxy .`).
#
#   docker build -t ghcr.io/nftproxy/nftproxy:v0.1.0 .
#
# The tag deployed is set in manifests/kustomization.yaml (images:).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/nftproxy .

# Runs as root: NET_ADMIN granted by the DaemonSet is only effective for
# uid 0 (no ambient capabilities); the root filesystem is read-only.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/nftproxy /usr/local/bin/nftproxy
ENTRYPOINT ["/usr/local/bin/nftproxy"]
