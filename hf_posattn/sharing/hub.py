"""Share a trained model: push its folder (model, tokenizer, code, model card) to the Hugging Face Hub."""

import fnmatch
import json
import os

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from transformers.dynamic_module_utils import get_relative_import_files

from ..common import notice
from ..figures.training import TRAINING_FIGURE, training_figure
from ..model.configuration_posattn import PosAttnConfig
from ..runfolder import RUN_FILE, read_run
from .card import build_model_card
from .loading import read_json

# What a model repo needs, from a folder written by `posattn train`: checkpoints, optimizer states and the
# Trainer's arguments stay local, and of the code only what config.json's auto_map loads (`code_files`); of the
# weights, what the run wrote (`weight_files`).
PUSHED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", RUN_FILE, TRAINING_FIGURE)
REQUIRED_FILES = ("config.json", "tokenizer.json", RUN_FILE)
WEIGHTS_INDEX = "model.safetensors.index.json"
# Options and results that name files on the machine that trained the model: uploaded as their base names.
PATH_OPTIONS = ("output_dir", "tokenizer", "init_from")


def code_files(folder: str) -> list[str]:
    """The code files the model's auto_map names in config.json, and the flat modules they import relatively
    (positional.py): what `trust_remote_code=True` loads, and nothing else of the folder's *.py."""
    auto_map = read_json(os.path.join(folder, "config.json")).get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        raise ValueError(f"{folder}/config.json has no auto_map: the model cannot be loaded from the Hub without "
                         f"this package. Give a folder written by `posattn train`.")
    modules = {reference.split("--")[-1].rsplit(".", 1)[0] for reference in auto_map.values()
               if isinstance(reference, str)}
    names = set()
    for module in modules:
        path = os.path.join(folder, module + ".py")
        if not os.path.isfile(path):
            raise ValueError(f"{folder} lacks {module}.py, which config.json's auto_map names: give a model folder "
                             f"written by `posattn train` (a finished run).")
        try:
            imported = get_relative_import_files(path)
        except OSError as error:  # a relative import whose file is missing
            raise ValueError(f"{folder}: {error}: give a model folder written by `posattn train`.") from None
        names.update([module + ".py", *(os.path.basename(name) for name in imported)])
    return sorted(names)


def weight_files(folder: str) -> list[str]:
    """The weights a run writes: model.safetensors, or the index of sharded weights and the shards it names.
    Another *.safetensors in the folder is not one of them, and is left out (with a notice)."""
    if os.path.lexists(os.path.join(folder, WEIGHTS_INDEX)):
        weight_map = read_json(os.path.join(folder, WEIGHTS_INDEX)).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{folder}/{WEIGHTS_INDEX} has no weight_map: the file is damaged.")
        shards = sorted(set(map(str, weight_map.values())))
        if any(os.path.basename(shard) != shard for shard in shards):
            raise ValueError(f"{folder}/{WEIGHTS_INDEX} names shards outside the folder ({', '.join(shards)}): the "
                             f"file is damaged or edited.")
        names = [WEIGHTS_INDEX, *shards]
    else:
        names = ["model.safetensors"]
    others = sorted(set(fnmatch.filter(os.listdir(folder), "*.safetensors")) - set(names))
    if others:
        notice(f"not uploaded: {', '.join(others)} (not weights that the run wrote)")
    return names


def files_to_push(folder: str) -> list[str]:
    """The files of `folder` that `push` uploads, checked: each is a regular file, not a symbolic link (a link
    would upload whatever it points to, anywhere on this machine)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder: give a model folder written by `posattn train`.")
    present = set(os.listdir(folder))
    missing = [name for name in REQUIRED_FILES if name not in present]
    weights = weight_files(folder)
    missing += [name for name in weights if name not in present]
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)}: give a model folder written by `posattn train` "
                         f"(a finished run).")
    names = sorted({name for name in PUSHED_FILES if name in present} | set(weights))
    refuse_links(folder, names)  # before config.json is read for the code files
    names = sorted(set(names) | set(code_files(folder)))
    refuse_links(folder, names)
    not_files = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
    if not_files:
        raise ValueError(f"{folder}: {', '.join(not_files)} {'is' if len(not_files) == 1 else 'are'} not a file: give "
                         f"a model folder written by `posattn train`.")
    return names


def refuse_links(folder: str, names: list[str]) -> None:
    linked = [name for name in names if os.path.islink(os.path.join(folder, name))]
    if linked:
        what = "is a symbolic link" if len(linked) == 1 else "are symbolic links"
        raise ValueError(f"{folder}: {', '.join(linked)} {what}: push uploads only the files a run wrote, never what "
                         f"a link points to. Replace "
                         f"each link by a copy of its file (cp --remove-destination \"$(readlink -f LINK)\" LINK), "
                         f"then push again.")


def shared_path(value):
    """A path of this machine as a user elsewhere can read it: its base name (a Hub name, which is no absolute
    path, stays as it is)."""
    if isinstance(value, list):
        return [shared_path(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.basename(os.path.normpath(value))
    return value


def shared_run(run: dict) -> dict:
    """The run file as uploaded: the paths it records on this machine (`--data`, `--tokenizer`, `--init-from`,
    `--output-dir`, resolved so that `--resume` finds them here) as their base names. The local file keeps them."""
    options = {**run["options"], **{name: shared_path(run["options"].get(name)) for name in (*PATH_OPTIONS, "data")
                                    if name in run["options"]}}
    results = run["results"]
    if results is not None:
        results = dict(results)
        if "output_dir" in results:
            results["output_dir"] = shared_path(results["output_dir"])
        if options.get("data"):  # as training wrote it: the sources, joined
            results["data"] = ", ".join(options["data"])
    return {**run, "options": options, "results": results}


def push(folder: str, repo_id: str, private: bool = False, token: str | None = None,
         commit_message: str = "Upload hf_posattn model") -> str:
    """Upload the model in `folder` to the Hub repo `repo_id` (created if needed) in one commit, with its model card
    rendered for `repo_id`; returns the commit URL. Only the files a run writes are uploaded, never through a
    symbolic link, and the run file and card name this machine's paths by their base names (`shared_run`).
    Everything is checked before the first request, and nothing is written locally: offline, without a token, or
    when the Hub refuses, it raises a `ValueError` saying why."""
    names = files_to_push(folder)
    run = shared_run(read_run(folder))
    card = build_model_card(PosAttnConfig.from_pretrained(folder), run, model_id=repo_id,
                            training_figure=training_figure(folder))
    if constants.is_offline_mode():
        raise ValueError("cannot push: offline mode is on (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE and connect to "
                         "the network, then push again.")
    token = token or get_token()
    if not token:
        raise ValueError("cannot push: not logged in to the Hugging Face Hub. Run `hf auth login`, or set HF_TOKEN, "
                         "or pass --token.")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name)) for name in names
                  if name != RUN_FILE]
    operations.append(CommitOperationAdd(path_in_repo=RUN_FILE,
                                         path_or_fileobj=(json.dumps(run, indent=2) + "\n").encode("utf-8")))
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=commit_message)
    except Exception as error:  # HTTP errors, no network, a refused token: whichever, nothing was uploaded
        raise ValueError(f"cannot push to {repo_id}: {type(error).__name__}: {error}. Nothing was uploaded; check "
                         f"the repo id, your token's write access (`hf auth whoami`) and the network.") from None
    return commit.commit_url
