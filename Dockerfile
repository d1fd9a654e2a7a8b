# troupe: a static binary in a small non-root image.
#   docker build -t troupe .
#   docker run -p 8080:8080 -v troupe-data:/data -e TROUPE_ADMIN_PASSWORD=... troupe
# Without TROUPE_ADMIN_PASSWORD the first admin's password is generated
# into /data/admin-password.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/troupe ./cmd/troupe

# Alpine rather than scratch: the Kubernetes manifests need a shell to
# pick --bootstrap or --join from the pod's ordinal.
FROM alpine:3.20
RUN adduser -D -H -u 10001 troupe && mkdir /data && chown troupe /data
COPY --from=build /out/troupe /usr/local/bin/troupe
USER 10001
VOLUME /data
EXPOSE 8080 7080
ENV TROUPE_DATA=/data TROUPE_HTTP_ADDR=0.0.0.0:8080 TROUPE_RAFT_ADDR=0.0.0.0:7080
HEALTHCHECK --interval=10s --timeout=3s CMD wget -qO- http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/troupe"]
CMD ["serve"]
