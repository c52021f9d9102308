// Package deploy holds hookbridge's deployment files: the container image
// (Dockerfile), Kubernetes manifests (kubernetes/), a systemd unit
// (systemd/) and the configs they ship. It has no code of its own; its
// tests, one file per target (kubernetes_test.go, systemd_test.go,
// docker_test.go, readme_test.go), check that every file agrees with what
// the hookbridge binary serves and reads (ports, probe paths, config keys,
// env names, writable paths), so `go test ./...` catches a manifest that
// drifted.
package deploy
