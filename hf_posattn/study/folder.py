"""A study's folder: its study file, its shared tokenizer (with the record of what it was made for), one run folder
per run, and the tables and figures the gather writes. Built on the run-folder service (`runfolder`): the same
lock, the same "never write into a folder of other files".

A folder is a study's when it holds the study file; `posattn compare` writes into a free folder or a study's, never
into another.
"""

import os

from ..common import option
from ..files import refuse_link, saved_whole, write_json
from ..runfolder import entries, is_free, read_json_record

STUDY_FILE = "posattn_study.json"  # what makes a folder a study of `posattn compare` (its command and settings)
TOKENIZER_DIR = "tokenizer"  # one tokenizer for every run, so that all see the same tokens
TOKENIZER_SOURCE = "source.json"  # beside it: what it was made for (the data and vocabulary, or the task)
# A study made before the study file existed is known by the record beside its shared tokenizer, which only
# `posattn compare` writes.
EARLIER_STUDY_FILE = os.path.join(TOKENIZER_DIR, TOKENIZER_SOURCE)
LOGS_DIR = "logs"  # each run's output when it runs in another process of this machine
SLURM_DIR = "slurm"  # submitit's files, the jobs' logs, and the record of what was submitted


def study_path(study: str, name: str) -> str:
    """`name` inside the study's folder: the one place the study makes a path of its own (a run's folder, the
    tokenizer, the logs). A symbolic link there is refused, never followed: the study chose the name, and a link
    planted under it (in a study folder received from someone else) would send a run's files anywhere."""
    path = os.path.join(study, name)
    refuse_link(path)
    return path


def is_study(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in (STUDY_FILE, EARLIER_STUDY_FILE))


def plan_study(folder: str, flag: str | None = None) -> None:
    """Refuse, with the fix, a study folder that is neither free nor a study's: a folder of a user's own files
    (a compare.csv, a tokenizer/) is never written into, nor read as the study's, with or without --overwrite. Under
    the folder's lock (`runfolder.locked`, which has checked that it can be a folder of ours)."""
    flag = flag or option("output_dir")
    if is_free(folder) or is_study(folder):
        return
    names = entries(folder)
    raise ValueError(f"{flag} {folder} holds files that are not a posattn study ({', '.join(names[:5])}"
                     f"{', ...' if len(names) > 5 else ''}): nothing is written there or read from there, even with "
                     f"{option('overwrite', True)}. Choose another {flag} (or an empty folder).")


def tokenizer_dir(study: str) -> str:
    return study_path(study, TOKENIZER_DIR)


def check_study_tokenizer(study: str, source: dict, overwrite: bool) -> None:
    """The study's shared tokenizer, if its folder has one, must be the one made for `source` (what the study's kind
    records: `StudyKind.tokenizer_source`): a tokenizer the study did not make is not used, and one made for other
    data or another task means runs that are not these."""
    from ..data.tokenizers import has_tokenizer

    folder = tokenizer_dir(study)
    if overwrite or not has_tokenizer(folder):
        return
    recorded = read_json_record(os.path.join(folder, TOKENIZER_SOURCE))
    if recorded is None:
        raise ValueError(f"{folder} holds a tokenizer that this study did not make (it has no readable "
                         f"{TOKENIZER_SOURCE}): it is not used. Move it away, pass {option('overwrite', True)} to "
                         f"train the study's own, or choose another {option('output_dir')}.")
    if isinstance(recorded.get("data"), list):  # a --data recorded before studies recorded it resolved: from here
        from ..files import resolve_source

        recorded["data"] = [resolve_source(source, "--data") for source in recorded["data"]]
    if recorded != source:
        raise ValueError(f"{study} holds a study made with other data or vocabulary, or of another task ({recorded}), "
                         f"whose runs share its tokenizer. Give the same {option('task')}, {option('data')}, "
                         f"{option('text_column')} and {option('vocab_size')}, {option('overwrite', True)} to start "
                         f"the study again, or another {option('output_dir')}.")


def write_study_start(study: str, command: str | None, settings: dict, tokenizer, source: dict) -> None:
    """The study file (its command and settings), then the shared tokenizer with the record of what it was made
    for, each written whole."""
    write_json(study_path(study, STUDY_FILE), {"command": command, "settings": settings})
    folder = tokenizer_dir(study)
    os.makedirs(folder, exist_ok=True)
    with saved_whole(folder) as temporary:
        tokenizer.save_pretrained(temporary)
        write_json(os.path.join(temporary, TOKENIZER_SOURCE), source)
