"""Find one subject's runs in a raw BIDS dataset and its fMRIPrep derivatives.

Why plain globbing and not pybids: a ``BIDSLayout`` indexes every file of both datasets
(seconds to minutes on a large study, and an SQL database on disk) before answering the one
question we ask, "which preprocessed BOLD runs of these subjects and tasks are in this space?".
Here the question is answered by globbing ``sub-*/[ses-*/]func/`` and parsing the names with a
strict parser; the metadata is then read with the BIDS inheritance principle (sidecars from the
top level down to the file's folder, more specific ones overriding less specific ones). That
takes milliseconds, needs no extra dependency, and every query that finds nothing says what it
searched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from glmflow.core.errors import InputFileError, ParameterError

#: BIDS entity order (the specification's table), used to write names in canonical order.
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain",
    "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space",
    "split", "recording", "chunk", "seg", "atlas", "roi", "label", "res", "den", "model",
    "subset", "desc", "contrast", "stat",
)  # fmt: skip

#: Entities fMRIPrep adds to raw names for its outputs; dropped to find the raw files.
DERIVATIVE_ENTITIES = ("hemi", "space", "res", "den", "cohort", "desc")

#: fMRIPrep's surface output spaces: GIFTI pairs (``*_hemi-<L|R>_space-<S>_bold.func.gii``)
#: on FreeSurfer meshes, and CIFTI-2 grayordinates (``*_space-fsLR_den-<D>_bold.dtseries.nii``).
GIFTI_SPACES = ("fsaverage", "fsaverage3", "fsaverage4", "fsaverage5", "fsaverage6", "fsnative")
CIFTI_SPACES = ("fsLR",)

_ENTITY_RE = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_SUFFIX_RE = re.compile(r"^[a-zA-Z0-9]+$")


@dataclass(frozen=True)
class BIDSFile:
    """A parsed BIDS file name: ``<key>-<value>_..._<suffix><extension>``."""

    path: Path
    entities: dict
    suffix: str
    extension: str

    @property
    def name(self):
        return self.path.name


def parse_bids_filename(path) -> BIDSFile:
    """Parse a BIDS file name into entities, suffix and extension.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    BIDSFile

    Raises
    ------
    InputFileError
        When the name is not ``key-value`` pairs joined by ``_`` followed by a suffix, or an
        entity is repeated.
    """
    path = Path(path)
    stem, dot, rest = path.name.partition(".")
    extension = dot + rest
    parts = stem.split("_")
    suffix = parts[-1]
    if len(parts) < 2 or not _SUFFIX_RE.match(suffix):
        raise InputFileError(
            f"{path.name} is not a BIDS file name: expected key-value pairs and a suffix, "
            "e.g. sub-01_task-rest_bold.nii.gz."
        )
    entities = {}
    for part in parts[:-1]:
        match = _ENTITY_RE.match(part)
        if match is None:
            raise InputFileError(
                f"{path.name} is not a BIDS file name: {part!r} is not a key-value pair "
                "(letters, '-', letters or digits)."
            )
        key, value = match.groups()
        if key in entities:
            raise InputFileError(f"{path.name} repeats the entity {key!r}.")
        entities[key] = value
    return BIDSFile(path=path, entities=entities, suffix=suffix, extension=extension)


def build_name(entities: dict, suffix: str, extension: str) -> str:
    """Write entities (canonical BIDS order, unknown keys last) + suffix + extension."""
    known = [key for key in ENTITY_ORDER if entities.get(key) not in (None, "")]
    extra = [key for key in entities if key not in ENTITY_ORDER and entities[key] not in (None, "")]
    parts = [f"{key}-{entities[key]}" for key in (*known, *extra)]
    return "_".join([*parts, suffix]) + extension


def find_associated(root, entities: dict, suffix: str, extension: str, *, start=None):
    """Files that apply to ``entities`` under the BIDS inheritance principle.

    Walk from ``start`` (the data file's folder) up to ``root``; in each folder keep the files
    with this suffix and extension whose entities are a subset of ``entities``.

    Returns
    -------
    list of Path
        Ordered from the least specific (top level) to the most specific, so that merging
        JSON sidecars in this order lets the specific ones win.
    """
    root = Path(root).resolve()
    folder = Path(start).resolve() if start is not None else root
    found = []
    depth = 0
    while True:
        level = []
        for candidate in folder.glob(f"*_{suffix}{extension}"):
            try:
                parsed = parse_bids_filename(candidate)
            except InputFileError:
                continue
            if parsed.suffix != suffix or parsed.extension != extension:
                continue
            if all(entities.get(key) == value for key, value in parsed.entities.items()):
                level.append((len(parsed.entities), candidate))
        # Within a folder, fewer entities = less specific.
        found.extend((depth, n, path) for n, path in level)
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
        depth += 1
    found.sort(key=lambda item: (-item[0], item[1], str(item[2])))
    return [path for _, _, path in found]


def read_metadata(paths) -> dict:
    """Merge JSON sidecars in order (later files override earlier keys)."""
    metadata = {}
    for path in paths:
        try:
            metadata.update(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"Cannot read the JSON sidecar {path}: {exc}") from exc
    return metadata


@dataclass
class RunFiles:
    """Everything the GLM of one preprocessed run needs, found on disk."""

    entities: dict  #: the raw entities (sub, ses, task, acq, run, ...) without space/desc
    bold: Path  #: the BOLD file (for a GIFTI pair: the left hemisphere's)
    mask: Path | None  #: fMRIPrep's brain mask; None on surfaces (fMRIPrep writes none)
    confounds: Path
    events: Path
    space: str | None = None
    res: str | None = None
    metadata: dict = field(default_factory=dict)  #: raw sidecars (inherited) + fMRIPrep's
    metadata_files: list = field(default_factory=list)
    den: str | None = None  #: CIFTI density (``91k``, ``170k``)
    kind: str = "volume"  #: ``"volume"``, ``"gifti"`` (a hemisphere pair) or ``"cifti"``
    bold_files: list = field(default_factory=list)  #: ``[left, right]`` GIFTI or ``[bold]``

    def __post_init__(self):
        if not self.bold_files:
            self.bold_files = [self.bold]

    @property
    def output_entities(self):
        """The entities naming this run's outputs: raw ones + space/res/den."""
        extra = (("space", self.space), ("res", self.res), ("den", self.den))
        return {**self.entities, **{key: value for key, value in extra if value}}

    @property
    def subject(self):
        return self.entities["sub"]

    @property
    def label(self):
        """Short human-readable run name for progress messages."""
        return build_name(self.entities, "bold", "").removesuffix("_bold")


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


def _strip_prefix(labels, prefix):
    return None if labels is None else [str(x).removeprefix(prefix) for x in labels]


def parse_space(space: str):
    """``"MNI152NLin2009cAsym:res-2"`` → ``("MNI152NLin2009cAsym", "2")`` (fMRIPrep syntax)."""
    name, _, modifiers = str(space).partition(":")
    res = None
    for modifier in filter(None, modifiers.split(",")):
        key, _, value = modifier.partition("-")
        if key != "res" or not value:
            raise ParameterError(
                f"--space {space!r}: the only modifier understood is res-<label> "
                "(e.g. MNI152NLin2009cAsym:res-2)."
            )
        res = value
    if not re.match(r"^[a-zA-Z0-9]+$", name):
        raise ParameterError(f"--space {space!r} is not a BIDS space label.")
    return name, res


def collect_runs(
    bids_dir,
    derivatives_dir,
    *,
    participant_label=None,
    task=None,
    space="MNI152NLin2009cAsym",
    session=None,
    run=None,
) -> list[RunFiles]:
    """Find the preprocessed runs to model and every file that goes with each.

    Parameters
    ----------
    bids_dir : str or Path
        The raw BIDS dataset (events and BOLD sidecars).
    derivatives_dir : str or Path
        The fMRIPrep output folder (``desc-preproc_bold``, ``desc-brain_mask``,
        ``desc-confounds_timeseries``).
    participant_label, task, session, run : str or list of str, optional
        Keep only these labels (``sub-``/``ses-``/``task-``/``run-`` prefixes accepted).
    space : str, default="MNI152NLin2009cAsym"
        Output space of fMRIPrep, optionally ``:res-<label>``. ``"T1w"`` and ``"func"``
        (fMRIPrep's boldref space, written without a ``space-`` entity) work too. Surface
        spaces (:data:`GIFTI_SPACES`: ``fsaverage5``, ...) give GIFTI runs
        (``RunFiles.bold_files`` = ``[hemi-L, hemi-R]``), ``fsLR`` (optionally
        ``:den-<label>``) CIFTI-2 runs; their ``mask`` is None. The confounds table is the
        one the volume runs of the same task/run use.

    Returns
    -------
    list of RunFiles
        Sorted by subject, session, task, run.

    Raises
    ------
    InputFileError
        A folder is missing, nothing matched (the message says what was searched), or a run
        lacks its mask, confounds or events file.
    """
    bids_dir = Path(bids_dir)
    derivatives_dir = Path(derivatives_dir)
    for what, folder in (("BIDS_DIR", bids_dir), ("--derivatives", derivatives_dir)):
        if not folder.is_dir():
            raise InputFileError(f"{what} {folder} is not a folder.")
    subjects = _strip_prefix(_as_list(participant_label), "sub-")
    tasks = _strip_prefix(_as_list(task), "task-")
    sessions = _strip_prefix(_as_list(session), "ses-")
    runs = _strip_prefix(_as_list(run), "run-")
    if space_kind(space) != "volume":
        return _collect_surface_runs(bids_dir, derivatives_dir, space, filters=(
            subjects, tasks, sessions, runs))
    space_name, res = parse_space(space)
    wanted_space = None if space_name == "func" else space_name

    pattern = "sub-*/**/func/*_desc-preproc_bold.nii*"
    candidates = sorted(derivatives_dir.glob(pattern))
    selected = []
    seen_res = {}
    for path in candidates:
        try:
            parsed = parse_bids_filename(path)
        except InputFileError:
            continue
        ent = parsed.entities
        if parsed.extension not in (".nii.gz", ".nii"):
            continue
        if ent.get("space") != wanted_space:
            continue
        if not _selected(ent, (subjects, tasks, sessions, runs)):
            continue
        if res is not None and ent.get("res") != res:
            continue
        key = tuple((k, v) for k, v in ent.items() if k != "res")
        seen_res.setdefault(key, []).append(path)
        selected.append(parsed)

    if not selected:
        searched = [f"space={space_name}" + (f", res={res}" if res else ""),
                    *_describe_filters((subjects, tasks, sessions, runs))]
        available = sorted(
            {
                f"space-{p.entities.get('space', '(none)')} task-{p.entities.get('task')}"
                for p in (_try_parse(c) for c in candidates)
                if p is not None
            }
        )
        hint = f" Found instead: {'; '.join(available)}." if available else (
            f" There is no {pattern} at all there: is it an fMRIPrep output folder?"
        )
        raise InputFileError(
            f"No preprocessed BOLD run in {derivatives_dir} matches {'; '.join(searched)} "
            f"(searched {pattern}).{hint}"
        )
    for paths in seen_res.values():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise InputFileError(
                f"Several resolutions of the same run: {names}. Choose one with "
                f"--space {space_name}:res-<label>."
            )
    return [_run_files(bids_dir, derivatives_dir, parsed) for parsed in selected]


def _selected(ent, filters):
    subjects, tasks, sessions, runs = filters
    if subjects is not None and ent.get("sub") not in subjects:
        return False
    if tasks is not None and ent.get("task") not in tasks:
        return False
    if sessions is not None and ent.get("ses") not in sessions:
        return False
    return runs is None or _run_number(ent.get("run")) in {_run_number(r) for r in runs}


def _describe_filters(filters):
    return [f"{key}={','.join(values)}" for key, values in zip(("sub", "task", "ses", "run"),
                                                               filters, strict=True) if values]


def space_kind(space) -> str:
    """``"gifti"`` (fsaverage*, fsnative), ``"cifti"`` (fsLR) or ``"volume"`` (the rest)."""
    name = str(space).partition(":")[0]
    if name in GIFTI_SPACES:
        return "gifti"
    return "cifti" if name in CIFTI_SPACES else "volume"


def parse_surface_space(space):
    """``"fsLR:den-91k"`` → ``("fsLR", "cifti", "91k")``; ``"fsaverage5"`` → ``(…, "gifti", None)``."""
    name, _, modifiers = str(space).partition(":")
    kind = space_kind(name)
    den = None
    for modifier in filter(None, modifiers.split(",")):
        key, _, value = modifier.partition("-")
        if kind != "cifti" or key != "den" or not value:
            raise ParameterError(
                f"--space {space!r}: the only modifier of a surface space is den-<label> for "
                "fsLR (e.g. fsLR:den-91k); fsaverage*/fsnative take none."
            )
        den = value
    return name, kind, den


def _collect_surface_runs(bids_dir, derivatives_dir, space, *, filters):
    """fMRIPrep's surface runs: GIFTI hemisphere pairs or CIFTI-2 dense time series.

    A GIFTI run is ``*_hemi-L_space-<S>_bold.func.gii`` with its ``hemi-R`` sibling (a run
    with one hemisphere only is an error, not a silent half analysis); a CIFTI run is
    ``*_space-fsLR[_den-<D>]_bold.dtseries.nii``. fMRIPrep writes no surface brain mask,
    so ``RunFiles.mask`` is None.
    """
    name, kind, den = parse_surface_space(space)
    extension = ".func.gii" if kind == "gifti" else ".dtseries.nii"
    pattern = f"sub-*/**/func/*_bold{extension}"
    candidates = sorted(derivatives_dir.glob(pattern))
    selected, by_run = [], {}
    for path in candidates:
        parsed = _try_parse(path)
        if parsed is None or parsed.extension != extension or parsed.suffix != "bold":
            continue
        ent = parsed.entities
        if ent.get("space") != name or not _selected(ent, filters):
            continue
        if kind == "cifti":
            if den is not None and ent.get("den") != den:
                continue
            key = tuple((k, v) for k, v in ent.items() if k != "den")
            by_run.setdefault(key, []).append(path)
            selected.append((parsed, [path]))
            continue
        hemi = ent.get("hemi")
        if hemi not in ("L", "R"):
            raise InputFileError(
                f"{path}: a surface BOLD file needs hemi-L or hemi-R in its name; found "
                f"hemi={hemi!r}."
            )
        # same name, other hemisphere (whatever the entity order: fMRIPrep < 21 wrote
        # space before hemi)
        other = "R" if hemi == "L" else "L"
        sibling = path.with_name(path.name.replace(f"_hemi-{hemi}_", f"_hemi-{other}_", 1))
        if not sibling.is_file():
            raise InputFileError(
                f"{path.name} has no other hemisphere: expected {sibling} (a surface run is "
                "a hemi-L / hemi-R pair)."
            )
        if hemi == "L":
            selected.append((parsed, [path, sibling]))
    if not selected:
        searched = [f"space={name}" + (f", den={den}" if den else ""),
                    *_describe_filters(filters)]
        available = sorted({
            f"space-{p.entities.get('space', '(none)')} task-{p.entities.get('task')}"
            for p in (_try_parse(c) for c in candidates) if p is not None
        })
        hint = (f" Found instead: {'; '.join(available)}." if available else
                f" There is no {pattern} at all there: did fMRIPrep run with "
                + ("--output-spaces " + name if kind == "gifti" else "--cifti-output") + "?")
        raise InputFileError(
            f"No surface BOLD run in {derivatives_dir} matches {'; '.join(searched)} "
            f"(searched {pattern}).{hint}"
        )
    for paths in by_run.values():
        if len(paths) > 1:
            raise InputFileError(
                f"Several CIFTI densities of the same run: {', '.join(p.name for p in paths)}. "
                f"Choose one with --space {name}:den-<label>."
            )
    return [_run_files(bids_dir, derivatives_dir, parsed, kind=kind, bold_files=files)
            for parsed, files in selected]


def _try_parse(path):
    try:
        return parse_bids_filename(path)
    except InputFileError:
        return None


def _run_number(value):
    # run-1 and run-01 are the same run.
    return None if value is None else (int(value) if str(value).isdigit() else value)


def _run_files(bids_dir, derivatives_dir, bold: BIDSFile, *, kind="volume",
               bold_files=None) -> RunFiles:
    ent = bold.entities
    raw_entities = {k: v for k, v in ent.items() if k not in DERIVATIVE_ENTITIES}
    folder = bold.path.parent

    mask_entities = {**ent, "desc": "brain"}
    mask = folder / build_name(mask_entities, "mask", ".nii.gz") if kind == "volume" else None
    if mask is not None and not mask.is_file():
        raise InputFileError(
            f"No brain mask for {bold.name}: expected {mask} (fMRIPrep's desc-brain_mask)."
        )

    confounds = folder / build_name({**raw_entities, "desc": "confounds"}, "timeseries", ".tsv")
    if not confounds.is_file():
        legacy = confounds.with_name(confounds.name.replace("_timeseries", "_regressors"))
        if not legacy.is_file():
            raise InputFileError(
                f"No confounds table for {bold.name}: expected {confounds} "
                "(fMRIPrep's desc-confounds_timeseries.tsv)."
            )
        confounds = legacy

    # Raw side: the data file's folder mirrors the derivatives folder.
    raw_folder = bids_dir / folder.relative_to(derivatives_dir)
    events_found = find_associated(bids_dir, raw_entities, "events", ".tsv", start=raw_folder)
    if not events_found:
        expected = raw_folder / build_name(raw_entities, "events", ".tsv")
        raise InputFileError(
            f"No events file for {bold.name}: searched {expected} and, by BIDS inheritance, "
            f"*_events.tsv with a subset of its entities up to {bids_dir}."
        )
    events = events_found[-1]

    raw_json = find_associated(bids_dir, raw_entities, "bold", ".json", start=raw_folder)
    deriv_json = bold.path.parent / (bold.path.name.split(".")[0] + ".json")
    metadata_files = [*raw_json, *([deriv_json] if deriv_json.is_file() else [])]
    # The raw sidecars are the authority on acquisition (RepetitionTime, SliceTiming); fMRIPrep's
    # own sidecar adds what preprocessing did (StartTime, SliceTimingCorrected).
    metadata = read_metadata([deriv_json] if deriv_json.is_file() else [])
    raw_metadata = read_metadata(raw_json)
    metadata = {**metadata, **raw_metadata, **{
        key: metadata[key] for key in ("StartTime", "SliceTimingCorrected") if key in metadata
    }}
    return RunFiles(
        entities=raw_entities,
        bold=bold.path,
        mask=mask,
        confounds=confounds,
        events=events,
        space=ent.get("space"),
        res=ent.get("res"),
        metadata=metadata,
        metadata_files=[str(p) for p in metadata_files],
        den=ent.get("den"),
        kind=kind,
        bold_files=list(bold_files or [bold.path]),
    )


def timing_from_metadata(metadata: dict, *, source="the BOLD sidecars", slice_time_ref=None):
    """Repetition time and ``slice_time_ref`` (fraction of a TR) from BOLD metadata.

    The rule, recorded in every output sidecar:

    1. ``StartTime`` (fMRIPrep writes it when it applied slice-timing correction; it is the
       time the corrected series refers to) → ``StartTime / RepetitionTime``;
    2. else ``SliceTiming`` present and ``SliceTimingCorrected`` not false (fMRIPrep corrects
       slice timing whenever ``SliceTiming`` exists) → fMRIPrep's default reference, the middle
       of the acquisition: ``(min + max) / 2 / RepetitionTime``;
    3. else 0 (the series is taken as sampled at the start of each TR, nilearn's default).

    An explicit ``slice_time_ref`` wins over all three.

    Returns
    -------
    t_r : float
    slice_time_ref : float
    explanation : str
    """
    t_r = metadata.get("RepetitionTime")
    if t_r is None:
        raise InputFileError(
            f"No RepetitionTime in {source}. It is required (BIDS: in the bold.json sidecar "
            "of the run or a top-level task-<label>_bold.json)."
        )
    t_r = float(t_r)
    if not t_r > 0:
        raise InputFileError(f"RepetitionTime in {source} must be positive; got {t_r}.")
    if slice_time_ref is not None:
        ref = float(slice_time_ref)
        if not 0 <= ref <= 1:
            raise ParameterError(f"--slice-time-ref must be within [0, 1]; got {ref}.")
        return t_r, ref, f"slice_time_ref={ref} given on the command line."
    if metadata.get("StartTime") is not None:
        start = float(metadata["StartTime"])
        if not 0 <= start < t_r:
            raise InputFileError(
                f"StartTime={start} in {source} is outside [0, RepetitionTime={t_r})."
            )
        return t_r, start / t_r, (
            f"slice_time_ref = StartTime / RepetitionTime = {start} / {t_r} "
            "(reference time of the slice-timing-corrected series)."
        )
    timing = metadata.get("SliceTiming")
    if timing and metadata.get("SliceTimingCorrected", True):
        middle = (min(timing) + max(timing)) / 2
        return t_r, middle / t_r, (
            f"slice_time_ref = (min+max of SliceTiming)/2 / RepetitionTime = {middle} / {t_r} "
            "(fMRIPrep's default slice-timing reference, no StartTime recorded)."
        )
    why = (
        "SliceTiming is present but SliceTimingCorrected is false"
        if timing
        else "no StartTime or SliceTiming in the sidecars"
    )
    return t_r, 0.0, f"slice_time_ref = 0 ({why}): each volume is taken at the start of its TR."
