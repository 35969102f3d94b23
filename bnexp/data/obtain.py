"""Getting the real datasets onto this machine (``bnexp data``, ``make data``), and saying how when we cannot.

For each dataset, in order, until its files are found (:func:`bnexp.data.vision.find`):

1. already there: under ``data.root`` (``$BNEXP_DATA``, else ``./data``) in torchvision's layout, or for
   Fashion-MNIST in Debian's ``/usr/share/datasets/fashion-mnist``;
2. Debian's package, where one exists (``dataset-fashion-mnist``) and the machine lets us install it: running
   as root, or with passwordless ``sudo -n``; ``apt-get install`` needs no network beyond the package mirror;
3. torchvision's download into ``data.root``, where there is a network (one try, a 30 s socket timeout).

When none works, :func:`hint` is the one command a person runs to get the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bnexp.data import vision

# Debian packages that install a dataset in a directory vision.find searches.
APT_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
APT_TIMEOUT_S = 600


def apt_prefix() -> list[str] | None:
    """The command prefix that may run ``apt-get install`` here without a password: ``[]`` as root,
    ``["sudo", "-n"]`` with passwordless sudo; None when neither (or there is no apt-get)."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") is None:
        return None
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
    return ["sudo", "-n"] if probe.returncode == 0 else None


def _apt_install(package: str, prefix: list[str]) -> str:
    """Install ``package`` (refreshing the package lists once if needed); '' on success, else the reason."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-qq", package]
    for attempt in range(2):
        try:
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return f"apt-get install {package} took over {APT_TIMEOUT_S} s"
        if done.returncode == 0:
            return ""
        if attempt == 0:  # a fresh machine often has no package lists yet
            subprocess.run([*prefix, "apt-get", "update", "-qq"], capture_output=True, env=env,
                           timeout=APT_TIMEOUT_S, check=False)
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return f"apt-get install {package} failed ({lines[-1].strip() if lines else f'exit {done.returncode}'})"


def hint(name: str, root: Path | str) -> str:
    """The one command that gets dataset ``name`` onto this machine, for messages (:func:`hint_note` says what it
    needs)."""
    if name in APT_PACKAGES:
        return f"sudo apt-get install {APT_PACKAGES[name]}"
    return f"bnexp data {name} --data-root {root}"


def hint_note(name: str, root: Path | str) -> str:
    """What :func:`hint`'s command needs, in parentheses after it ("" for an apt package)."""
    if name in APT_PACKAGES:
        return ""
    return f" (needs a network; offline, copy torchvision's files into {vision.SPECS[name].candidates(Path(root))[0]})"


def obtain(name: str, root: Path | str, *, use_apt: bool = True, download: bool = True,
           log: Callable[[str], None] = print) -> Path | None:
    """Make dataset ``name`` available under ``root`` (or Debian's directory) by the steps above.

    Returns the directory holding its files, or None after logging why not and :func:`hint`.
    """
    spec, root = vision.SPECS[name], Path(root)
    found = vision.find(spec, root)
    if found is not None:
        log(f"{name}: found in {found}")
        return found
    reasons = []
    if use_apt and name in APT_PACKAGES:
        prefix = apt_prefix()
        if prefix is None:
            reasons.append("apt-get needs root or passwordless sudo")
        else:
            log(f"{name}: installing Debian's {APT_PACKAGES[name]} ...")
            reason = _apt_install(APT_PACKAGES[name], prefix)
            found = vision.find(spec, root)
            if found is not None:
                log(f"{name}: installed in {found}")
                return found
            reasons.append(reason or f"{APT_PACKAGES[name]} installed, but its files are not where expected")
    if download:
        log(f"{name}: trying torchvision's download into {root} ...")
        reason = vision.download(spec, root)
        found = vision.find(spec, root)
        if found is not None:
            log(f"{name}: downloaded to {found}")
            return found
        reasons.append(f"download {reason or 'finished without the files'}")
    log(f"{name}: not available ({'; '.join(reasons) or 'not on disk'}). "
        f"Get it with: {hint(name, root)}{hint_note(name, root)}")
    return None
