"""sandbox: isolation drivers (bwrap default), cgroups v1/v2, seccomp, netns; see README.md."""
