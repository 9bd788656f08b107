"""Loading a model folder for the tools, checked before it is used.

`from_pretrained` is forgiving by design: a missing tensor is initialised at random (one line in a load report), a
config.json of another model_type builds a random model of that type. That suits fine-tuning from Python, which
keeps transformers' behaviour. A command that generates, evaluates or draws with a model must not run on such a
folder: `load_model` refuses it with a `ValueError` that names the file and what is wrong with it.
"""

import contextlib
import json
import math
import os

from huggingface_hub.errors import StrictDataclassError

from ..runfolder import read_run_record


def load_model(folder: str, rope_parameters: dict | None = None, **kwargs):
    """The model and tokenizer saved in `folder` (on the GPU when there is one), after checking every file they
    come from: config.json (readable, an hf_posattn config), the weights (readable, every tensor the model has and
    no other, each of its shape), tokenizer.json (readable, no more tokens than the model's vocabulary) and the run
    file if there is one.

    `rope_parameters` (e.g. `{"rope_type": "yarn", "factor": 4}`) rebuilds a rotary model's frequencies with one of
    transformers' rotary variants, without retraining: see `scaled_config`. Checked before the weights are read."""
    import torch

    config = load_model_config(folder, rope_parameters)
    check_json_files(folder)
    tokenizer = load_tokenizer(folder, config.vocab_size)
    model = load_weights(folder, config, **kwargs)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tokenizer


def load_model_config(folder: str, rope_parameters: dict | None = None):
    """The config of the model in `folder`, checked (and the run file, if any: a damaged one is named now, not when a
    card or a push needs it), with `rope_parameters` applied when given (`scaled_config`)."""
    check_model_folder(folder)
    config = load_config(folder)
    run = read_run_record(folder)
    if rope_parameters is None:
        return config
    trained_length = run["options"].get("seq_len") if run is not None else None
    return scaled_config(config, rope_parameters, trained_length or config.max_position_embeddings)


# The rotary variants that read the length they extend from as rope_parameters["original_max_position_embeddings"]
# (transformers' `standardize_rope_params` fills it from max_position_embeddings for these, and llama3 wants it below
# max_position_embeddings); "dynamic" reads it as max_position_embeddings itself.
EXTENDED_FROM_ORIGINAL_LENGTH = ("llama3", "yarn", "longrope")


def scaled_config(config, rope_parameters: dict, trained_length: int):
    """`config` with `rope_parameters` applied: the given rotary variant over the model's own `rope_theta`, extending
    from the length the model was trained at, where transformers reads that length (see
    `EXTENDED_FROM_ORIGINAL_LENGTH`; for the schemes that read rope parameters, `max_position_embeddings` sizes no
    weights). transformers then checks the parameters; what it refuses, or only warns about, is a ValueError naming
    `rope_parameters`."""
    from ..model.positional import POSITION_SCHEMES, schemes_reading

    scheme = config.position_embedding_type
    if "rope_parameters" not in POSITION_SCHEMES[scheme].config_fields:
        rotating = ", ".join(schemes_reading("rope_parameters"))
        raise ValueError(f"rope_parameters (--rope-scaling, --rope-parameters) change the rotation of queries and "
                         f"keys, which only {rotating} models have: this model uses {scheme} positions. Evaluate "
                         f"it as it is, without them.")
    check_rope_parameters(rope_parameters)
    merged = {"rope_theta": config.rope_parameters["rope_theta"], **rope_parameters}
    length = trained_length
    if merged.get("rope_type") in EXTENDED_FROM_ORIGINAL_LENGTH:
        merged.setdefault("original_max_position_embeddings", trained_length)
        length = max(config.max_position_embeddings, math.ceil(trained_length * merged.get("factor", 1)),
                     trained_length + 1)
    values = {**config.to_dict(), "rope_parameters": merged, "max_position_embeddings": length}
    try:
        with rope_warnings_raised():
            return type(config)(**values)
    except (ValueError, KeyError, TypeError, StrictDataclassError) as error:
        raise ValueError(f"{str(error).strip()} (given rope_parameters: {json.dumps(rope_parameters)}; see "
                         f"transformers' rope_parameters for what each rope_type takes).") from None


@contextlib.contextmanager
def rope_warnings_raised():
    """transformers' checks of rope parameters that only log a warning (a long_factor of the wrong length, a key its
    rope_type does not read) raise a ValueError instead: a model built from them would fail or ignore them later.
    Its once-only notices are advice, not findings, and stay notices."""
    import logging

    from transformers.utils import logging as transformers_logging

    logger = transformers_logging.get_logger("transformers.modeling_rope_utils")
    found = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: found.append(record) if record.funcName != "warning_once" else None
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # seen even when transformers' verbosity hides warnings
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if found:
        raise ValueError("; ".join(record.getMessage().strip() for record in found))


def check_rope_parameters(rope_parameters) -> None:
    """What transformers lets through with a warning only: a factor that is not a finite number >= 1."""
    if not isinstance(rope_parameters, dict) or not isinstance(rope_parameters.get("rope_type", "default"), str):
        raise ValueError(f"rope_parameters must be a JSON object with a rope_type, e.g. "
                         f'{{"rope_type": "yarn", "factor": 4}}; got {json.dumps(rope_parameters)}.')
    factor = rope_parameters.get("factor")
    if factor is None:
        return
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise ValueError(f"rope_parameters factor={factor!r} is invalid: it is how many times longer than the "
                         f"training length the inputs may be, a finite number >= 1 (e.g. 4).")


def check_model_folder(folder: str) -> None:
    if not os.path.exists(folder):
        raise ValueError(f"{folder} does not exist: give a model folder written by `posattn train`.")
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is a file, not a model folder: give a folder written by `posattn train`.")
    if os.path.isfile(os.path.join(folder, "config.json")):
        return
    run = read_run_record(folder)
    if run is not None and run["results"] is None:
        raise ValueError(f"{folder} holds a training run that has not finished (no model yet): finish it with "
                         f"`posattn train --output-dir {folder} --resume`.")
    raise ValueError(f"{folder} holds no model (no config.json): give a folder written by `posattn train`.")


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error}): the file is damaged.") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds no JSON object: the file is damaged.")
    return content


# The JSON files of a model folder that loading reads besides config.json (which `load_config` checks). Each one
# there is checked to be whole first: transformers would replace a damaged generation_config.json by its defaults
# (other sampling settings, silently), and a damaged tokenizer_config.json would surface as the tokenizer's error.
MODEL_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def check_json_files(folder: str) -> None:
    for name in MODEL_JSON_FILES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            read_json(path)


def load_config(folder: str):
    """The model's config, after checking that config.json describes an hf_posattn model (checked before building,
    as `from_pretrained` would build a random model of whatever type it names)."""
    from transformers import AutoConfig

    path = os.path.join(folder, "config.json")
    model_type = read_json(path).get("model_type")
    if model_type != "posattn":
        raise ValueError(f"{path} says model_type {model_type!r}, not 'posattn': {folder} holds no hf_posattn model "
                         f"(convert a GPT-2 one with `python -m hf_posattn.convert`).")
    try:
        return AutoConfig.from_pretrained(folder)
    except ValueError as error:  # the config's own checks name the file
        raise ValueError(str(error)) from None
    except (OSError, TypeError, KeyError) as error:
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}).") from None


def read_tokenizer(folder: str):
    """The tokenizer saved in `folder`; a ValueError naming the file when there is none, or it cannot be read."""
    from transformers import AutoTokenizer

    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no tokenizer (no tokenizer.json): give a folder written by `posattn "
                         f"train`.")
    for name in MODEL_JSON_FILES[:3]:  # the tokenizer's own files, checked whole first
        if os.path.exists(os.path.join(folder, name)):
            read_json(os.path.join(folder, name))
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as error:  # the Rust tokenizer's parse errors have no common Python type
        raise ValueError(f"{path} cannot be read as a tokenizer ({type(error).__name__}: {error}): the file is "
                         f"damaged or edited.") from None


def load_tokenizer(folder: str, vocab_size: int):
    tokenizer = read_tokenizer(folder)
    path = os.path.join(folder, "tokenizer.json")
    if len(tokenizer) > vocab_size:
        raise ValueError(f"{path} has {len(tokenizer)} tokens, more than the model's {vocab_size} (config.json "
                         f"vocab_size): it is not the model's tokenizer.")
    return tokenizer


@contextlib.contextmanager
def quiet_loading():
    """No "Loading weights" bar (a load takes milliseconds to seconds) and no load report (its findings are
    turned into an error below)."""
    from transformers.utils import logging

    bar, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()


def load_weights(folder: str, config, **kwargs):
    """The model with every tensor from the folder's weights; a ValueError naming the weights file when a tensor
    is missing, unexpected or of another shape, or the file cannot be read."""
    from transformers import AutoModelForCausalLM

    return load_checked(AutoModelForCausalLM, folder, config=config, **kwargs)


def load_checked(model_class, folder: str, **kwargs):
    """`model_class.from_pretrained(folder)`, refused with a ValueError naming the weights file when it cannot be
    read, or when a tensor is missing, unexpected or of another shape (instead of initialised at random)."""
    weights = weights_file(folder)
    try:
        with quiet_loading():
            model, report = model_class.from_pretrained(folder, output_loading_info=True,
                                                        ignore_mismatched_sizes=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as error:  # truncated or corrupted files: the message names them
        raise ValueError(str(error).strip() or f"{weights} cannot be read.") from None
    problems = [f"{kind}: {describe(keys)}" for kind, keys in (("missing tensors", report["missing_keys"]),
                                                               ("unexpected tensors", report["unexpected_keys"]),
                                                               ("tensors of another shape",
                                                                report["mismatched_keys"])) if keys]
    if problems:
        raise ValueError(f"{weights} does not match the model in config.json ({'; '.join(problems)}): the weights "
                         f"are damaged or from another model. Train, convert or download the model again.")
    return model


def weights_file(folder: str) -> str:
    """The folder's weights (safetensors only: a pickle can run code when loaded); a Hub id is named as it is."""
    if not os.path.isdir(folder):
        return folder
    for name in ("model.safetensors.index.json", "model.safetensors"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ValueError(f"{folder} holds no weights (no model.safetensors): the model was not saved whole. Train, "
                     f"convert or download it again.")


def describe(keys) -> str:
    """Tensor names (mismatched ones come with their shapes), at most five."""
    names = sorted(key if isinstance(key, str) else f"{key[0]} (file {tuple(key[1])}, model {tuple(key[2])})"
                   for key in keys)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


