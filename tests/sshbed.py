"""Real SSH on the multi-host bed (root): Debian's sshd in chosen bed hosts, on each host's
own address, with host and client keys made here and a client config file (what a user's
~/.ssh/config would say) naming the hosts. The sshds stop with the bed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.netbed import Host, NetBed, wait_for_port

SSHD = "/usr/sbin/sshd"


def unavailable() -> str | None:
    """Why SSH cannot be set up here (one line), or None."""
    missing = [t for t in (SSHD, "ssh", "ssh-keygen") if shutil.which(t) is None]
    if missing:
        return f"the SSH tests need {', '.join(missing)} (Debian's openssh-server)"
    return None


def ssh_bed(bed: NetBed, hosts: list[Host]) -> Path:
    """Start sshd in ``hosts``; the client config file (every bed host named, key auth)."""
    folder = bed.folder / "ssh"
    folder.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "hostkey")],
                   check=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id")],
                   check=True)  # fmt: skip
    (folder / "authorized_keys").write_text((folder / "id.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    for host in hosts:
        config = folder / f"sshd-{host.hostname}.conf"
        config.write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey {folder / 'hostkey'}\n"
            f"PidFile {folder / f'sshd-{host.hostname}.pid'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
        )
        bed.start(host, SSHD, "-D", "-e", "-f", str(config), log=folder / f"{host.hostname}.log")
    for host in hosts:
        wait_for_port(host, 22, 20)
    client = folder / "config"
    client.write_text(
        "".join(
            f"Host {h.hostname}\n  HostName {h.address}\n  User root\n"
            f"  IdentityFile {folder / 'id'}\n  UserKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking no\n  LogLevel ERROR\n"
            for h in bed.hosts
        )
    )
    return client
