"""Real orchestrators driving pyrun: Podman (through conmon), containerd (ctr and the
io.containerd.runc.v2 shim) and the Kubernetes CRI path over gRPC. Each harness keeps its
caller's state in a temp dir of its own, never the host's."""
