"""Which delivered file is which contract source: every entry of the input folder accounted for.

:func:`scan` looks at the top of the input folder and inside each contract folder
(``reference/``, ``cohort/``, ``records/``, ``twic/``, ``programme/``, ``comparators/``) and
gives every entry one of these outcomes:

- **matched** to a source: its folder is the source's folder and its name is the source's
  name with one of the source's file types, compared case-insensitively (``RECRUITMENT.sav``
  and ``Survey_Wave_08.SAV`` match). Per-wave files are ``<stem>_<N>.<type>`` with ``N`` any
  number of digits (``survey_wave_9.sav`` is wave 9, as is ``survey_wave_09.sav``). Folder
  names also match case-insensitively (``Records/``).
- **extra**: one of :data:`EXTRA_FILES` (the synthetic world's ``truth.json`` at the top,
  README / manifest / checksum files, operating-system litter). Listed in the delivery
  manifest, never read.
- **refused**, which stops the ingest before anything is loaded:

  - a file or folder that matches no source (``survey_wave_08 (copy).sav``,
    ``records/recruitment.sav``, an ``archive/`` folder), a contract file with a type the
    contract does not accept (``records/deaths.xlsx``);
  - two files for one single-file source (``gp_contacts.parquet`` and ``gp_contacts.csv``),
    or two files giving one survey wave (``survey_wave_8.sav`` and ``survey_wave_08.sav``):
    every one of them is refused, since ingest cannot know which is meant;
  - a symbolic link, a hard link (a file with a second name, which could be anywhere on the
    file system), anything whose resolved path lies outside the input folder, and anything
    that is not a regular file (a pipe, a device). A link is never followed or read: the
    message names the link, never its target or the target's content.

Scanning reads directory entries only (no file content), so it is cheap enough to repeat for
every source.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sicp.contract import SOURCES, Source
from sicp.ingest.files import IngestError

#: Outcomes of a scanned entry (the delivery manifest adds ``ok``, ``failed``, ``skipped`` and
#: ``previous`` for what ingest then did with the matched files).
MATCHED, EXTRA, REFUSED = "matched", "extra", "refused"

#: Files a delivery may carry besides the contract's, never read by ingest and listed in the
#: delivery manifest as ``extra``: (where, regular expression for the whole name, matched
#: case-insensitively, the names in words, what they are). ``where`` is ``top`` (the top of
#: the input folder only) or ``any`` (the top or a contract folder). The one list of allowed
#: extras; the data contract document renders it.
EXTRA_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("top", r"truth\.json", "`truth.json`", "the synthetic world's answer key, from sicp synth"),
    (
        "any",
        r"readme(\.(txt|md|pdf|html?|docx?|rtf))?",
        "`README` (or .txt, .md, .pdf, .html, .docx, .rtf)",
        "a README",
    ),
    (
        "any",
        r"(delivery_)?manifest(\.(txt|md|csv|json|pdf))?",
        "`MANIFEST` or `delivery_manifest` (or .txt, .md, .csv, .json, .pdf)",
        "a sender's manifest",
    ),
    (
        "any",
        r"(sha256sums|sha1sums|md5sums|checksums)(\.txt)?|.+\.(sha256|sha1|md5)",
        "`SHA256SUMS`, `MD5SUMS`, `checksums.txt`, `<file>.sha256`",
        "checksums",
    ),
    (
        "any",
        r"\.ds_store|thumbs\.db|desktop\.ini|\.gitkeep",
        "`.DS_Store`, `Thumbs.db`, `desktop.ini`, `.gitkeep`",
        "operating-system and version-control litter",
    ),
)

_EXTRA_RE = tuple(
    (where, re.compile(pattern, re.IGNORECASE), what) for where, pattern, _, what in EXTRA_FILES
)


@dataclass(frozen=True)
class DeliveredFile:
    """One entry of the input folder and what discovery made of it."""

    #: Path relative to the input folder, as delivered (a folder ends in ``/``).
    rel: str
    path: Path
    outcome: str
    source: str | None = None
    wave: int | None = None
    reason: str | None = None
    #: Regular files only; a link or folder is never measured or read.
    size_bytes: int | None = None

    @property
    def regular(self) -> bool:
        return self.size_bytes is not None


@dataclass(frozen=True)
class Delivery:
    """Every entry of an input folder, sorted by relative path."""

    input_dir: Path
    files: tuple[DeliveredFile, ...]

    @property
    def refused(self) -> list[DeliveredFile]:
        return [f for f in self.files if f.outcome == REFUSED]

    def matched(self, source: Source) -> list[DeliveredFile]:
        return [f for f in self.files if f.outcome == MATCHED and f.source == source.name]

    def files_of(self, source: Source) -> list[DeliveredFile]:
        """The source's files, sorted by relative path; :class:`IngestError` naming them if
        any file named like the source was refused (a duplicate, a link, a wrong type)."""
        refused = [f for f in self.refused if f.source == source.name]
        if refused:
            raise refusal(refused)
        return self.matched(source)


def refusal(refused: list[DeliveredFile]) -> IngestError:
    """One error for refused entries, each reason once with the files it concerns (a
    duplicate's reason names every file of it): ``paths: reason``, or a list of them."""
    by_reason: dict[str, list[str]] = {}
    for f in refused:
        by_reason.setdefault(str(f.reason), []).append(f.rel)
    if len(by_reason) == 1:
        ((reason, paths),) = by_reason.items()
        return IngestError(", ".join(paths), reason)
    return IngestError(
        "the input folder",
        f"{len(refused)} files refused, so nothing was ingested:\n"
        + "\n".join(f"  - {', '.join(paths)}: {reason}" for reason, paths in by_reason.items()),
    )


def scan(input_dir: Path, *, ignore: Iterable[Path] = ()) -> Delivery:
    """Account for every entry of ``input_dir`` (see the module docstring). ``ignore``: paths
    that may lie inside the input folder but are not deliveries (the warehouse file itself,
    when someone keeps it there)."""
    root = Path(input_dir)
    if not root.is_dir():
        raise IngestError(str(root), "the input folder does not exist (set SICP_INPUT_DIR)")
    real_root = root.resolve()
    ignored = {Path(p).resolve() for p in ignore}
    folders = {s.folder.lower() for s in SOURCES.values()}
    found: list[DeliveredFile] = []
    for entry in _entries(root):
        rel = entry.name
        kind = _kind(entry)
        if kind in ("file", "dir") and Path(entry.path).resolve() in ignored:
            continue
        if kind == "dir" and entry.name.lower() in folders:
            found.extend(_scan_folder(Path(entry.path), rel, real_root, ignored))
        elif kind == "file":
            found.append(_top_file(entry, rel))
        else:
            found.append(
                _odd(
                    entry,
                    rel,
                    kind,
                    None,
                    real_root,
                    "a folder that is not part of the data contract (its folders "
                    f"are {', '.join(sorted(f + '/' for f in folders))}); move its "
                    "files into the right folder or remove it",
                )
            )
    found = _refuse_duplicates(found)
    return Delivery(root, tuple(sorted(found, key=lambda f: f.rel)))


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def _size(entry: os.DirEntry[str]) -> int:
    return entry.stat(follow_symlinks=False).st_size


def _link_reason(rel: str) -> str:
    return (
        f"is a symbolic link; ingest reads only regular files inside the input folder and "
        f"never follows a link. Replace {rel} by a copy of the file itself"
    )


def _odd(
    entry: os.DirEntry[str],
    rel: str,
    kind: str,
    source: str | None,
    real_root: Path,
    folder_reason: str,
) -> DeliveredFile:
    """A link, a folder where a file belongs, or a special file: refused, never read."""
    path = Path(entry.path)
    if kind == "link":
        return DeliveredFile(rel, path, REFUSED, source, reason=_link_reason(rel))
    if kind == "dir":
        return DeliveredFile(rel + "/", path, REFUSED, source, reason=folder_reason)
    if kind == "outside":  # a regular file whose resolved path leaves the input folder
        return DeliveredFile(
            rel,
            path,
            REFUSED,
            source,
            reason=(
                "lies outside the input folder once its path is resolved; ingest reads only files "
                f"inside {real_root}"
            ),
        )
    if kind == "hard_link":  # the other name may be anywhere on the file system
        return DeliveredFile(
            rel,
            path,
            REFUSED,
            source,
            reason=(
                "has another name on this file system (a hard link), which may lie outside the "
                f"input folder, so it is not read; replace {rel} by a copy of the file (cp, not ln)"
            ),
        )
    mode = entry.stat(follow_symlinks=False).st_mode
    what = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return DeliveredFile(
        rel, path, REFUSED, source, reason=f"is not a regular file ({what}); remove it"
    )


def _extra(name: str, top: bool) -> str | None:
    for where, pattern, what in _EXTRA_RE:
        if (where == "any" or top) and pattern.fullmatch(name):
            return what
    return None


def _top_file(entry: os.DirEntry[str], rel: str) -> DeliveredFile:
    path = Path(entry.path)
    what = _extra(entry.name, top=True)
    if what is not None:
        return DeliveredFile(rel, path, EXTRA, reason=f"not read: {what}", size_bytes=_size(entry))
    source = _source_named(entry.name)
    hint = (
        f"; {source.name} files belong in {source.folder}/"
        if source is not None
        else "; contract files belong in "
        + ", ".join(sorted({s.folder + "/" for s in SOURCES.values()}))
    )
    return DeliveredFile(
        rel,
        path,
        REFUSED,
        reason=(f"matches no source of the data contract{hint}; rename, move or remove it"),
        size_bytes=_size(entry),
    )


def _scan_folder(
    folder: Path, folder_rel: str, real_root: Path, ignored: set[Path]
) -> list[DeliveredFile]:
    sources = [s for s in SOURCES.values() if s.folder.lower() == folder_rel.lower()]
    found = []
    for entry in _entries(folder):
        rel = f"{folder_rel}/{entry.name}"
        kind = _kind(entry)
        if kind == "file" and Path(entry.path).resolve() in ignored:
            continue
        match = _match(entry.name, sources)
        source = match[0].name if match else None
        if kind == "file" and not Path(entry.path).resolve().is_relative_to(real_root):
            kind = "outside"
        if kind == "file" and entry.stat(follow_symlinks=False).st_nlink > 1:
            kind = "hard_link"
        if kind != "file":
            found.append(
                _odd(
                    entry,
                    rel,
                    kind,
                    source,
                    real_root,
                    f"a sub-folder; the data contract has none inside "
                    f"{folder_rel}/. Move its files up or remove it",
                )
            )
            continue
        size = _size(entry)
        if match is None:
            what = _extra(entry.name, top=False)
            if what is not None:
                found.append(
                    DeliveredFile(
                        rel, Path(entry.path), EXTRA, reason=f"not read: {what}", size_bytes=size
                    )
                )
                continue
            elsewhere = _source_named(entry.name)
            hint = (
                f"; {elsewhere.name} files belong in {elsewhere.folder}/"
                if elsewhere is not None and elsewhere.folder != folder_rel.lower()
                else ""
            )
            found.append(
                DeliveredFile(
                    rel,
                    Path(entry.path),
                    REFUSED,
                    reason=(
                        f"matches no source of the data contract{hint}; rename, move or remove it "
                        f"(expected names: {_expected(sources)})"
                    ),
                    size_bytes=size,
                )
            )
            continue
        src, wave, suffix = match
        if suffix not in src.formats:
            found.append(
                DeliveredFile(
                    rel,
                    Path(entry.path),
                    REFUSED,
                    src.name,
                    wave,
                    (
                        f"unsupported file type '.{suffix}' for {src.name}; the data contract accepts "
                        f"{', '.join('.' + f for f in src.formats)}"
                    ),
                    size,
                )
            )
            continue
        found.append(DeliveredFile(rel, Path(entry.path), MATCHED, src.name, wave, size_bytes=size))
    return found


def name_pattern(source: Source) -> re.Pattern[str]:
    """The file-name stem of ``source`` as a regular expression (case-insensitive): the stem
    itself, or for per-wave sources the stem's fixed part and ``(\\d+)``, the wave number."""
    if source.per_wave:
        fixed = source.stem.split("[", 1)[0]
        return re.compile(re.escape(fixed) + r"(\d+)", re.IGNORECASE)
    return re.compile(re.escape(source.stem), re.IGNORECASE)


def documented_patterns(source: Source) -> tuple[str, ...]:
    """The names of ``source``'s files as the contract document shows them."""
    stem = source.stem.split("[", 1)[0] + "<N>" if source.per_wave else source.stem
    return tuple(f"{source.folder}/{stem}.{fmt}" for fmt in source.formats)


def _match(name: str, sources: list[Source]) -> tuple[Source, int | None, str] | None:
    """(source, wave, lower-case suffix) when ``name``'s stem is a source's, whatever its type."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        return None
    for source in sources:
        m = name_pattern(source).fullmatch(stem)
        if m:
            return source, int(m.group(1)) if source.per_wave else None, suffix.lower()
    return None


def _source_named(name: str) -> Source | None:
    """A source of any folder that ``name`` would match (for the hint in a refusal)."""
    match = _match(name, list(SOURCES.values()))
    return match[0] if match and match[2] in match[0].formats else None


def _expected(sources: list[Source]) -> str:
    return ", ".join(p.split("/", 1)[1] for s in sources for p in documented_patterns(s))


def _refuse_duplicates(found: list[DeliveredFile]) -> list[DeliveredFile]:
    """Two or more matched files for one single-file source, or for one wave: all refused."""
    groups: dict[tuple[str, int | None], list[DeliveredFile]] = {}
    for f in found:
        if f.outcome == MATCHED and f.source is not None:
            groups.setdefault((f.source, f.wave), []).append(f)
    refused: dict[str, str] = {}
    for (name, wave), files in groups.items():
        if len(files) < 2:
            continue
        names = ", ".join(sorted(f.rel for f in files))
        what = (
            f"{len(files)} files give wave {wave} of {name} ({names})"
            if wave is not None
            else f"{len(files)} files for {name} ({names}), which takes one file"
        )
        for f in files:
            refused[f.rel] = (
                f"{what}; ingest cannot tell which is meant, so it loads none. "
                f"Keep one and remove the other(s)"
            )
    return [
        DeliveredFile(f.rel, f.path, REFUSED, f.source, f.wave, refused[f.rel], f.size_bytes)
        if f.rel in refused
        else f
        for f in found
    ]
