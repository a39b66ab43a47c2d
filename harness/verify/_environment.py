"""Whether a verify run can start here, and the server it runs: the server resolved from the
configuration (once per process: a forked worker inherits it), started once to check that it
speaks RESP and to read its name and version (which go into every report), how a trial
launches it, and FUSE when a power model or a fault needs the mount.
"""

from __future__ import annotations

from typing import Any, Final

from harness.targets._servers import (
    ServerInfo,
    ServerNotFound,
    ServerNotUsable,
    ServerSpec,
    ServerSpecError,
    probe_server,
    resolve_server,
)
from harness.verify._config import SERVERS, Launcher, VerifyConfig, VerifyEnvironmentError

__all__ = [
    "KERNEL_FAULTS",
    "KERNEL_VERIFY_MODELS",
    "check_environment",
    "check_fuse",
    "kernel_verify_problem",
    "launcher_for",
    "server_identity",
    "server_spec",
]

# (server, server_cmd) -> the spec resolved by the last run_verify/check_environment of this
# process (a forked worker inherits it and never resolves again); probes by spec.
_SPECS: dict[tuple[str, str | None], ServerSpec] = {}
_PROBED: dict[ServerSpec, ServerInfo] = {}


def server_spec(config: VerifyConfig, *, fresh: bool = False) -> ServerSpec:
    """The server of `config`, resolved now when `fresh` (a run's start: the binary may have
    changed since), else the one resolved last in this process."""
    key = (config.server, config.server_cmd)
    spec = None if fresh else _SPECS.get(key)
    if spec is None:
        try:
            spec = resolve_server(None if config.server_cmd is not None else config.server,
                                  server_cmd=config.server_cmd)
        except ServerNotFound as exc:
            hint = " (run scripts/bootstrap.sh)" if config.server in SERVERS else ""
            raise VerifyEnvironmentError(f"{exc}{hint}") from None
        except ServerSpecError as exc:
            raise VerifyEnvironmentError(str(exc)) from None
        _SPECS[key] = spec
    return spec


def launcher_for(spec: ServerSpec) -> Launcher:
    # Plain AOF base after a rewrite (a redis-server flag; the reference has no RDB preamble).
    extra = None if spec.kind == "reference" else {"aof-use-rdb-preamble": "no"}

    def launch(data_dir: str, log_path: str, policy: str) -> Any:
        return spec.process(data_dir, appendfsync=policy, log_path=log_path,
                            aof_load_truncated=True, extra_config=extra)

    return launch


def server_identity(config: VerifyConfig) -> ServerInfo:
    """The server's name and version (resolves it again; starts it once per spec to ask)."""
    spec = server_spec(config, fresh=True)
    info = _PROBED.get(spec)
    if info is None:
        try:
            info = probe_server(spec)
        except (ServerNotUsable, ServerNotFound) as exc:
            raise VerifyEnvironmentError(str(exc)) from None
        _PROBED[spec] = info
    return info


def check_environment(config: VerifyConfig) -> str:
    """Raise VerifyEnvironmentError (one line) unless the run can start: the server resolves,
    starts and answers PING over RESP, and FUSE works when needed. Returns its version."""
    info = server_identity(config)
    check_fuse(config)
    return info.version


def check_fuse(config: VerifyConfig) -> None:
    problem = kernel_verify_problem(config)  # --model ext4|xfs|btrfs: the kernel recorder
    if problem is not None:
        raise VerifyEnvironmentError(problem)
    if config.needs_mount:
        from faults.fuse import fuse_unavailable_reason

        reason = fuse_unavailable_reason()
        if reason is not None:
            raise VerifyEnvironmentError(f"FUSE is needed for --model/--fault: {reason}")


# The real kernel's filesystems as verify models (harness.verify._verify_kernel runs them).
KERNEL_VERIFY_MODELS: Final = ("ext4", "xfs", "btrfs")
# The faults a kernel model runs: fsync-error as a media error under the filesystem (see
# harness.verify._verify_kernel); the others act on syscalls the kernel does not fail so.
KERNEL_FAULTS: Final = ("none", "fsync-error")


def kernel_verify_problem(config: VerifyConfig) -> str | None:
    """One line when `config` asks a kernel model for what it cannot do (or the kernel
    recorder cannot run here); None when the run can start."""
    from faults.kernel import KernelFilesystem, kernel_unavailable_reason

    if config.model not in KERNEL_VERIFY_MODELS:
        return None
    if config.fault not in KERNEL_FAULTS:
        return (f"--fault {config.fault}: this fault acts on syscalls through the FUSE SimDisk "
                f"and does not combine with --model {config.model} (the real kernel; it runs "
                f"--fault none or fsync-error, a media error under the filesystem)")
    if config.image != "drawn":
        return (f"--image {config.image}: the SimDisk's image kinds do not apply to --model "
                f"{config.model} (the kernel's crash states are drawn at the crash)")
    reason = kernel_unavailable_reason(KernelFilesystem(config.model))
    if reason is not None:
        return f"--model {config.model} (the real kernel): {reason}"
    return None
