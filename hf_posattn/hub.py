"""Share a trained model: push its folder (model, tokenizer, code, model card) to the Hugging Face Hub."""

import fnmatch
import os

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from transformers.dynamic_module_utils import get_relative_import_files

from .configuration_posattn import PosAttnConfig
from .loading import read_json
from .model_card import build_model_card
from .reporting import TRAINING_FIGURE, training_figure
from .runs import RUN_FILE, read_run


# What a model repo needs, from a folder written by `posattn train`: checkpoints, optimizer states and the
# Trainer's arguments stay local, and of the code only what config.json's auto_map loads (`code_files`).
PUSHED_FILES = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", RUN_FILE, TRAINING_FIGURE)
REQUIRED_FILES = ("config.json", "tokenizer.json", RUN_FILE)


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


def files_to_push(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder: give a model folder written by `posattn train`.")
    names = sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name))
                   and any(fnmatch.fnmatch(name, pattern) for pattern in PUSHED_FILES))
    missing = [name for name in REQUIRED_FILES if name not in names]
    if not any(name.endswith(".safetensors") for name in names):
        missing.append("model.safetensors")
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)}: give a model folder written by `posattn train` "
                         f"(a finished run).")
    return sorted(names + code_files(folder))


def push(folder: str, repo_id: str, private: bool = False, token: str | None = None,
         commit_message: str = "Upload hf_posattn model") -> str:
    """Upload the model in `folder` to the Hub repo `repo_id` (created if needed) in one commit, with its model card
    rendered for `repo_id`; returns the commit URL. Everything is checked before the first request, and nothing is
    written locally: offline, without a token, or when the Hub refuses, it raises a `ValueError` saying why."""
    names = files_to_push(folder)
    card = build_model_card(PosAttnConfig.from_pretrained(folder), read_run(folder), model_id=repo_id,
                            training_figure=training_figure(folder))
    if constants.is_offline_mode():
        raise ValueError("cannot push: offline mode is on (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE and connect to "
                         "the network, then push again.")
    token = token or get_token()
    if not token:
        raise ValueError("cannot push: not logged in to the Hugging Face Hub. Run `hf auth login`, or set HF_TOKEN, "
                         "or pass --token.")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name)) for name in names]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=commit_message)
    except Exception as error:  # HTTP errors, no network, a refused token: whichever, nothing was uploaded
        raise ValueError(f"cannot push to {repo_id}: {type(error).__name__}: {error}. Nothing was uploaded; check "
                         f"the repo id, your token's write access (`hf auth whoami`) and the network.") from None
    return commit.commit_url
