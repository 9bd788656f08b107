"""The one writer of files, and the one reader of paths, for every tool of the package.

- **Paths.** `resolve_path` turns the text of an option into the real, absolute path it names (symbolic links
  followed), once, when the options are resolved; empty text is refused, never read as "not given" (an unset shell
  variable gives empty text). What is recorded (the run file, the study) is that path, so a command run later from
  another folder reads the same files. `resolve_source` does the same for what may also be a Hub name.
- **Files appear whole.** `write_text`, `write_bytes`, `write_json` and `write_with` (a callback that writes a
  temporary path: figures, pages) write a temporary file beside the target (`.NAME.XXXXXXXX.tmp`) and rename it over
  the target: a failure at any point (a full disk, Ctrl-C) leaves the previous file as it was and no temporary file.
  `saved_whole` does the same for a folder's worth of files saved by a library (`save_pretrained`). Files get the
  mode an ordinary `open` gives (`normal_mode`: 0644 under umask 022), whatever the library made them.
- **Write failures are `OSError`s that say what.** safetensors raises `SafetensorError` and `torch.save` a
  `RuntimeError` when the disk is full: `writing` turns them, and plain `OSError`s, into `WriteFailed` (an
  `OSError`) naming what was being written and why.
- **No write through a link.** A symbolic link at a path a writer is given (a figure's default name in a model
  folder received from someone else, say) is refused with `LinkRefused`, never followed: following it would
  overwrite whatever file it points to. `resolve_output` resolves an output file's folder but keeps its own name, so
  that the link is still there for the writer to see.
- **One writer at a time.** `lock` holds `.NAME.lock` beside a target, keyed on its real path (a symbolic link and
  the folder it points to share one lock), and removes it on release: nothing is left beside the target.
"""

import contextlib
import fcntl
import fnmatch
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator

SAVING_DIR = ".saving"  # inside a folder: files saved by a library, before they are renamed into place
TEMPORARY_PATTERN = ".*.tmp"  # a temporary file of `write_with`, beside its target
LOCK_SUFFIX = ".lock"
# What a writer of this package leaves in a folder when it is killed: never a user's file.
LEFTOVERS = (SAVING_DIR, TEMPORARY_PATTERN)


# ---- paths ----

def resolve_path(text, flag: str) -> str:
    """The real absolute path that `text` (an option's value) names; a ValueError naming `flag` when it is empty."""
    path = os.fspath(text) if isinstance(text, os.PathLike) else text
    if not isinstance(path, str):
        raise ValueError(f"{flag}: expected a path, got {text!r}.")
    if not path.strip():
        raise ValueError(f"{flag} is empty: give a path (an unset shell variable gives empty text; leave the option "
                         f"out for its default).")
    return os.path.realpath(path)


def resolve_output(text, flag: str) -> str:
    """`resolve_path` for a file to be written: its folder resolved, its own name kept, so that a symbolic link of
    that name is refused by the writer (`refuse_link`) rather than silently followed here."""
    path = resolve_path(text, flag)  # the checks of the text; the path itself is resolved below
    folder, name = os.path.split(os.path.abspath(os.fspath(text)))
    return os.path.join(os.path.realpath(folder), name) if name else path


def resolve_source(text, flag: str) -> str:
    """`resolve_path` for something that exists here; else `text` as given (a Hub name, or a file the reader will
    say is missing)."""
    path = resolve_path(text, flag)
    return path if os.path.exists(path) else os.fspath(text)


def sibling(target: str, suffix: str) -> str:
    """`.NAME<suffix>` beside `target`."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}{suffix}")


def is_leftover(name: str) -> bool:
    """A name this package's writers leave behind when killed (`LEFTOVERS`)."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEFTOVERS)


def remove_leftovers(folder: str) -> None:
    """Remove what killed writers left in `folder` (its top level). Only under the folder's lock."""
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if is_leftover(name):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


# ---- no write through a link ----

class LinkRefused(ValueError):
    """A writer was given a path that is a symbolic link: it writes files, never through links."""


def refuse_link(path: str) -> None:
    """Raise `LinkRefused` when `path` is a symbolic link (dangling or not): writing there would write the file it
    points to, which may lie anywhere (a model folder can carry links out of itself)."""
    if os.path.islink(path):
        raise LinkRefused(f"{path} is a symbolic link (to {os.readlink(path)}): hf_posattn writes files, never "
                          f"through a link, which could overwrite any file you can write. Remove the link (rm "
                          f"{path}), or write elsewhere.")


def refuse_links_in(folder: str) -> None:
    """`refuse_link` for everything under `folder` (links not followed): a folder this package writes into, whose
    names it chooses (a run's checkpoints, its logs), holds no link of its own making, and writes through none."""
    for root, folders, names in os.walk(folder):
        for name in folders + names:
            refuse_link(os.path.join(root, name))


# ---- writing whole ----

def normal_mode() -> int:
    """The mode an ordinary `open` gives a new file: 0o666 less the process's umask (0644 under umask 022)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # where /proc is not: read it by setting it, at once set back
    os.umask(mask)
    return 0o666 & ~mask


def normal_modes(folder: str) -> None:
    """Give every file under `folder` the normal mode: libraries that write through temporary files of their own
    leave them 0600 (safetensors does)."""
    mode = normal_mode()
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, mode)


def reserve_temporary(path: str) -> str:
    """A new, empty temporary file beside `path` (its folder made if needed), created with the mode an ordinary
    `open` gives: the process's umask applies (mkstemp would make it 0600)."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    while True:
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temporary
        except FileExistsError:
            continue


def write_with(path: str, write: Callable[[str], object], what: str | None = None) -> str:
    """Write `path` whole: `write(temporary)` writes the file at the temporary path it is given (beside `path`),
    which is then flushed to disk and renamed over `path`. On any failure the temporary file is removed and `path`
    is as it was; a failure to write is an `OSError` naming `what` (default: `path`). A symbolic link at `path` is
    refused (`refuse_link`). Returns `path`."""
    refuse_link(path)
    temporary = reserve_temporary(path)
    try:
        with writing(what or path):
            write(temporary)
            os.chmod(temporary, normal_mode())  # the writer may have replaced the file we made
            descriptor = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return path


def write_bytes(path: str, data: bytes) -> str:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as file:
            file.write(data)

    return write_with(path, write)


def write_text(path: str, text: str) -> str:
    """`text` as UTF-8, ending with a line break."""
    return write_bytes(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))


def write_json(path: str, value) -> str:
    return write_text(path, json.dumps(value, indent=2))


@contextlib.contextmanager
def saved_whole(folder: str, what: str | None = None) -> Iterator[str]:
    """A temporary folder inside `folder` (`SAVING_DIR`) to save files in (e.g. with `save_pretrained`); once the
    block ends without error they are renamed into `folder` (each rename is atomic), else removed. A failure to
    write is an `OSError` naming `what` (default: `folder`); a symbolic link in `folder` under the name of a file
    saved is refused (`refuse_link`) before anything is moved."""
    temporary = os.path.join(folder, SAVING_DIR)
    refuse_link(temporary)
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    try:
        with writing(what or folder):
            yield temporary
            normal_modes(temporary)
            names = sorted(os.listdir(temporary))
            for name in names:
                refuse_link(os.path.join(folder, name))
            for name in names:
                target = os.path.join(folder, name)
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                os.replace(os.path.join(temporary, name), target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# ---- write failures ----

# How torch.save says that it could not write (a RuntimeError from its C++ zip writer).
TORCH_WRITE_FAILURE = re.compile(r"PytorchStreamWriter failed|file write failed|unexpected pos")


def write_failure(error: BaseException) -> str | None:
    """What went wrong, when `error` is a failure to write a file (an OSError, safetensors' SafetensorError,
    torch.save's RuntimeError), else None."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if type(error).__name__ == "SafetensorError" or (isinstance(error, RuntimeError)
                                                     and TORCH_WRITE_FAILURE.search(str(error))):
        code = re.search(r"(?:os error|code:|errno:?)\s*(\d+)", str(error), re.IGNORECASE)  # as Rust and C say it
        return os.strerror(int(code.group(1))) if code else str(error).strip().splitlines()[0]
    return None


class WriteFailed(OSError):
    """A file could not be written: the message names it and says why."""


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Failures to write inside the block, whichever library wrote, raised as `WriteFailed` (an `OSError`) naming
    `what`."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as error:
        reason = write_failure(error)
        if reason is None:
            raise
        raise WriteFailed(f"cannot write {what}: {reason}") from error


# ---- one writer ----

class Busy(Exception):
    """Another process holds the lock."""


def lock_path(target: str) -> str:
    """The lock of `target`: beside its real path, so that every spelling of it (a symbolic link, `a/../b`) shares
    it."""
    return sibling(os.path.realpath(target), LOCK_SUFFIX)


@contextlib.contextmanager
def lock(target: str) -> Iterator[str]:
    """Hold `target`'s lock (`lock_path`) for the block, or raise `Busy` at once when another process holds it.
    The lock file exists only while it is held: it is removed on release, and so are the folders made for it when
    nothing else was put in them.

    The protocol, free of races: open (creating) the lock file and `flock` it; if the path no longer names the
    file that was locked (its holder removed it on release in between), start again. A holder removes the file
    before it unlocks, so whoever locks a file that the path still names holds the lock."""
    path = lock_path(target)
    made = make_folders(os.path.dirname(path))
    try:
        descriptor = acquire(path)
    except BaseException:
        remove_empty(made)
        raise
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
        os.close(descriptor)  # unlocks
        remove_empty(made)


def acquire(path: str) -> int:
    while True:
        refuse_link(path)  # O_NOFOLLOW below makes it certain: a link planted in between fails to open
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise Busy(path) from None
        except BaseException:
            os.close(descriptor)
            raise
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        locked = os.fstat(descriptor)
        if named is not None and (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino):
            return descriptor
        os.close(descriptor)  # its holder removed it while we waited for it: lock the file the path names now


def make_folders(folder: str) -> list[str]:
    """`os.makedirs(folder)`; returns the folders it made, deepest first."""
    made = []
    while not os.path.isdir(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(made):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
    return made


def remove_empty(folders: list[str]) -> None:
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return
