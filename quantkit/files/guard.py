"""The one check every output of every command goes through, before any work starts.

A command registers what it reads (models, photo folders and their files, mask
folders, config files) and then asks for each path it will write. A path is
refused when it is an input, when a folder output is or contains an input, when
two outputs name the same path, when it is a symbolic link (writing through one
could land anywhere), when its folder is missing or not writable, and when it
exists - unless ``--force`` was given *and* quantkit wrote it
(:mod:`quantkit.files.ownership`). A folder output is also refused when it is
the current folder or one of its parents. Checking everything up front means a
30-minute quantization never fails at the last step on a path it could have
refused at the first.

Paths are compared twice: by their resolved spelling, and - for anything that
exists - by device and inode, so an input reached another way (a bind mount, a
hard link, ``Photos`` for ``photos`` on a case-insensitive disk) is still an input.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from quantkit.errors import QuantkitError
from quantkit.files.atomic import probe_writable
from quantkit.files.ownership import OutputKind, written_by_quantkit


def _key(path: Path) -> Path:
    """A comparable identity for a path that may not exist yet."""
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


Inode = tuple[int, int]


def _inode(path: Path) -> Inode | None:
    """(device, inode) of an existing path, following links; None if it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


class OutputGuard:
    """Inputs of one command run, and the outputs already claimed."""

    def __init__(self, *, force: bool) -> None:
        self.force = force
        self._inputs: set[Path] = set()
        self._input_inodes: set[Inode] = set()
        self._claimed: dict[Path, str] = {}
        self._claimed_inodes: dict[Inode, str] = {}

    def add_inputs(self, paths: Iterable[Path]) -> None:
        """Register files and folders this command reads; a folder's own files count too.

        Its subfolders do not: no command reads them, and ``--report photos/report`` must
        stay replaceable on the next run."""
        for path in paths:
            key = _key(path)
            self._add_input(key)
            if key.is_dir():
                with contextlib.suppress(OSError):
                    for item in key.iterdir():
                        if not item.is_dir():
                            self._add_input(_key(item))

    def _add_input(self, key: Path) -> None:
        self._inputs.add(key)
        inode = _inode(key)
        if inode is not None:
            self._input_inodes.add(inode)

    def _input_folders(self) -> set[Inode]:
        """Every folder that holds an input, up to the root, by inode."""
        folders: set[Inode] = set()
        seen: set[Path] = set()
        for item in self._inputs:
            for parent in item.parents:
                if parent in seen:
                    break
                seen.add(parent)
                inode = _inode(parent)
                if inode is not None:
                    folders.add(inode)
        return folders

    def _identity(self, target: Path, option: str) -> Path:
        """Not a link, not an input, not another output's path; claims it."""
        if target.is_symlink():
            raise QuantkitError(
                f"{option} {target} is a symbolic link; quantkit does not write through links"
            )
        key = _key(target)
        inode = _inode(target)
        if key in self._inputs or (inode is not None and inode in self._input_inodes):
            raise QuantkitError(f"{option} {target} is an input of this command; choose another path")
        if key in self._claimed:
            raise QuantkitError(f"{option} and {self._claimed[key]} both name {target}")
        if inode is not None and inode in self._claimed_inodes:
            raise QuantkitError(f"{option} and {self._claimed_inodes[inode]} both name {target}")
        self._claimed[key] = f"{option} {target}"
        if inode is not None:
            self._claimed_inodes[inode] = f"{option} {target}"
        return key

    @staticmethod
    def _writable(folder: Path, option: str) -> None:
        if not folder.exists():
            raise QuantkitError(f"{option}: folder {folder} does not exist")
        if not folder.is_dir():
            raise QuantkitError(f"{option}: {folder} is not a folder")
        try:
            probe_writable(folder)
        except OSError as exc:
            raise QuantkitError(f"{option}: folder {folder} is not writable ({exc.strerror})") from exc

    def _common(self, target: Path, option: str) -> Path:
        key = self._identity(target, option)
        self._writable(target.parent if str(target.parent) else Path("."), option)
        return key

    def file(self, target: Path, kind: OutputKind, option: str) -> Path:
        """Check a file output; returns ``target`` unchanged."""
        if target.exists() and not target.is_symlink():
            if target.is_dir():
                raise QuantkitError(f"{option} {target} is a folder, not a file")
            if not target.is_file():
                raise QuantkitError(f"{option} {target} exists and is not a regular file")
        self._common(target, option)
        if target.exists():
            self._may_replace(target, kind, option)
        return target

    def folder(self, target: Path, kind: OutputKind, option: str) -> Path:
        """Check a folder output that will be built aside and moved into place whole."""
        key = _key(target)
        if _inside(_key(Path(".")), key):  # replacing it would pull the floor from under the shell
            raise QuantkitError(
                f"{option} {target} is the current folder or one of its parents; choose another"
            )
        for item in self._inputs:
            if _inside(item, key):
                raise QuantkitError(
                    f"{option} {target} contains inputs of this command ({item}); choose another"
                )
        inode = _inode(target)
        if inode is not None and (inode in self._input_folders() or inode in self._input_inodes):
            raise QuantkitError(f"{option} {target} contains inputs of this command; choose another")
        if target.exists() and not target.is_symlink() and not target.is_dir():
            raise QuantkitError(f"{option} {target} exists and is not a folder")
        self._common(target, option)
        if target.is_dir() and any(target.iterdir()):
            self._may_replace(target, kind, option)
        return target

    def files_in(self, folder: Path, targets: list[Path], kind: OutputKind, option: str) -> bool:
        """Check one output per photo in ``folder``; True if the folder must be created."""
        if folder.is_symlink():
            raise QuantkitError(
                f"{option} {folder} is a symbolic link; quantkit does not write through links"
            )
        if folder.exists() and not folder.is_dir():
            raise QuantkitError(f"{option} {folder} exists and is not a folder")
        create = not folder.exists()
        self._writable(_nearest_existing(folder) if create else folder, option)
        for target in targets:
            self._identity(target, option)
            if target.exists():
                if not target.is_file():
                    raise QuantkitError(f"{option}: {target} exists and is not a regular file")
                self._may_replace(target, kind, option)
        return create

    def _may_replace(self, target: Path, kind: OutputKind, option: str) -> None:
        if not self.force:
            raise QuantkitError(f"{option} {target} already exists (use --force to replace it)")
        if not written_by_quantkit(target, kind):
            raise QuantkitError(
                f"{option} {target} exists and was not written by quantkit; refusing to replace it "
                "even with --force (move it away or choose another path)"
            )


def _nearest_existing(folder: Path) -> Path:
    """The closest ancestor of ``folder`` that exists (where ``mkdir -p`` would start)."""
    for parent in folder.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")
