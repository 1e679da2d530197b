"""Benchmarks of pyrun and imagetool against runc, crun, skopeo and umoci (issue 9)."""
