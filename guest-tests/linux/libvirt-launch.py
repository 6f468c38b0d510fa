#!/usr/bin/env python3
"""Start a virtiofs daemon the way libvirt does (qemuVirtioFSStart).

libvirt creates the vhost-user socket itself, listening, and execs the daemon with only
options: `--fd=N` for that socket plus the share's settings, in one of two forms:

  separate  the daemon reported `separate-options` in --print-capabilities (or in its
            vhost-user JSON descriptor): --shared-dir DIR [--cache ...] [--xattr] ...
  legacy    otherwise: -o source=DIR[,cache=...][,xattr][,no_flock][,no_posix_lock]

For run.sh --backend-cmd: the socket goes to $VD_SOCKET, the share is $VD_SHARED_DIR.
This process replaces itself with the daemon (exec), so run.sh sees the daemon's pid.

  libvirt-launch.py [--form separate|legacy] BINARY [EXTRA ARGS...]
"""

import os
import socket
import sys


def main() -> int:
    args = sys.argv[1:]
    form = "separate"
    if len(args) >= 2 and args[0] == "--form":
        form, args = args[1], args[2:]
    if form not in ("separate", "legacy") or not args:
        print(__doc__, file=sys.stderr)
        return 2
    binary, extra = args[0], args[1:]
    path = os.environ["VD_SOCKET"]
    share = os.environ["VD_SHARED_DIR"]

    # qemuVirtioFSOpenChardev: a listening Unix socket at the path QEMU connects to.
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    fd = sock.detach()
    os.set_inheritable(fd, True)

    # qemuVirtioFSBuildCommandLine for <binary xattr='on'><thread_pool size='16'/>;
    # cache and sandbox left at their defaults (libvirt then passes neither).
    argv = [binary, f"--fd={fd}"]
    if form == "separate":
        argv += ["--shared-dir", share, "--xattr"]
    else:
        argv += ["-o", "source=" + share.replace(",", ",,") + ",xattr"]
    argv += ["--thread-pool-size=16"]
    argv += extra
    print("libvirt-launch: " + " ".join(argv), file=sys.stderr, flush=True)
    os.execv(binary, argv)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
